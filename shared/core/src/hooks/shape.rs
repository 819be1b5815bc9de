//! Reading hook answers: the shapes integrator.io's contracts allow, and the words for the
//! ones they do not.

use serde_json::Value;

/// What a preMap or postMap answer says of one record.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RecordAnswer {
    /// `{data}`: go on with this data.
    Data(Value),
    /// `{errors}` (or `{data, errors}`): the record fails with these messages.
    Errors(String),
    /// `{}`: the record is ignored.
    Ignore,
}

/// An answer that must be an array with one element per record given.
pub(super) fn one_per_record(answer: Value, given: usize) -> Result<Vec<Value>, String> {
    match answer {
        Value::Array(items) if items.len() == given => Ok(items),
        Value::Array(items) => Err(format!(
            "returned {} elements for {given} records: return one per record, in order",
            items.len()
        )),
        other => Err(format!(
            "returned {} where an array of {given} elements was expected",
            kind_of(&other)
        )),
    }
}

/// One element of a preMap/postMap answer: `{data}`, `{errors}`, `{data, errors}` or `{}`.
pub(super) fn record_answer(item: Value, index: usize) -> Result<RecordAnswer, String> {
    let Value::Object(mut m) = item else {
        return Err(format!(
            "element {index} is {}, not an object ({{data}}, {{errors}}, {{data, errors}} or {{}})",
            kind_of(&item)
        ));
    };
    if let Some(errors) = m.remove("errors").filter(|e| !is_empty(e)) {
        return Ok(RecordAnswer::Errors(error_messages(&errors)));
    }
    Ok(match m.remove("data") {
        Some(Value::Null) | None => RecordAnswer::Ignore,
        Some(data) => RecordAnswer::Data(data),
    })
}

fn is_empty(errors: &Value) -> bool {
    match errors {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// integrator.io errors (`{code, message}` objects, or strings), one list or one error, as
/// one message.
pub(super) fn error_messages(errors: &Value) -> String {
    let one = |e: &Value| match e {
        Value::String(s) => s.clone(),
        Value::Object(m) => {
            let message = m.get("message").and_then(Value::as_str);
            let code = m.get("code").map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            match (code, message) {
                (Some(c), Some(msg)) => format!("{c}: {msg}"),
                (None, Some(msg)) => msg.to_string(),
                _ => e.to_string(),
            }
        }
        other => other.to_string(),
    };
    match errors {
        Value::Array(items) => items.iter().map(one).collect::<Vec<_>>().join("; "),
        other => one(other),
    }
}

/// "an object", "a string", "nothing" (undefined or null), ...
pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (undefined or null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_answers_follow_the_contract() {
        assert_eq!(
            record_answer(json!({"data": {"a": 1}}), 0),
            Ok(RecordAnswer::Data(json!({"a": 1})))
        );
        assert_eq!(record_answer(json!({}), 0), Ok(RecordAnswer::Ignore));
        assert_eq!(
            record_answer(
                json!({"data": {"a": 1}, "errors": [{"code": "x", "message": "bad"}]}),
                0
            ),
            Ok(RecordAnswer::Errors("x: bad".into()))
        );
        assert_eq!(
            record_answer(json!({"data": 1, "errors": []}), 0),
            Ok(RecordAnswer::Data(json!(1)))
        );
        let e = record_answer(json!(3), 2).unwrap_err();
        assert!(e.contains("element 2 is a number"), "{e}");
    }

    #[test]
    fn an_answer_of_the_wrong_length_or_kind_says_so() {
        let e = one_per_record(json!([{}]), 2).unwrap_err();
        assert!(e.contains("returned 1 elements for 2 records"), "{e}");
        let e = one_per_record(Value::Null, 2).unwrap_err();
        assert!(e.contains("returned nothing"), "{e}");
    }
}
