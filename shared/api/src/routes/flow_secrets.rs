//! Flows may carry credentials too: headers of the afterProcess, notifyRequest and
//! notifyResponse callbacks (`Authorization`, `X-Api-Key`, ...). They are masked like
//! connection secrets, and a masked value sent back keeps the stored one.

use serde_json::Value;
use sluice_model::{is_secret_header, ValidationErrors, MASK};
use std::collections::HashMap;

/// Calls `f(field, value)` for every secret header value of the flow document.
fn for_each_secret(doc: &mut Value, mut f: impl FnMut(&str, &mut Value)) {
    for key in ["afterProcess", "notifyRequest", "notifyResponse"] {
        let callbacks: Vec<(String, &mut Value)> = match doc.get_mut(key) {
            Some(Value::Array(list)) => list
                .iter_mut()
                .enumerate()
                .map(|(i, c)| (format!("{key}[{i}]"), c))
                .collect(),
            Some(c @ Value::Object(_)) => vec![(key.to_string(), c)],
            _ => continue,
        };
        for (at, callback) in callbacks {
            let Some(Value::Array(headers)) = callback.get_mut("headers") else {
                continue;
            };
            for (j, header) in headers.iter_mut().enumerate() {
                let name = header.get("name").and_then(Value::as_str).unwrap_or("");
                if !is_secret_header(name) {
                    continue;
                }
                if let Some(value) = header.get_mut("value") {
                    f(&format!("{at}.headers[{j}].value"), value);
                }
            }
        }
    }
}

/// A copy fit to show. `secret:NAME` references are kept, since they hold no secret.
pub fn masked(doc: &Value) -> Value {
    let mut doc = doc.clone();
    for_each_secret(&mut doc, |_, v| {
        if let Some(s) = v.as_str() {
            if !s.is_empty() && !s.starts_with("secret:") {
                *v = Value::String(MASK.into());
            }
        }
    });
    doc
}

/// Puts the stored value back wherever `doc` holds the mask at the same place; a mask with
/// nothing to restore is an error naming the field.
pub fn restore(doc: &mut Value, stored: Option<&Value>) -> Result<(), ValidationErrors> {
    let mut old = HashMap::new();
    if let Some(stored) = stored {
        for_each_secret(&mut stored.clone(), |field, v| {
            old.insert(field.to_string(), v.clone());
        });
    }
    let mut e = ValidationErrors::new();
    for_each_secret(doc, |field, v| {
        if v.as_str() == Some(MASK) {
            match old.get(field) {
                Some(kept) => *v = kept.clone(),
                None => e.add(
                    field,
                    format!(
                        "reads '{MASK}' but there is no stored value to keep: send the real value"
                    ),
                ),
            }
        }
    });
    e.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flow(value: &str) -> Value {
        json!({"_id": "f", "afterProcess": [{"url": "http://x", "headers": [
            {"name": "Authorization", "value": value}, {"name": "X-Trace", "value": "t1"}]}],
            "notifyRequest": {"url": "http://y", "headers": [{"name": "X-Api-Key", "value": value}]}})
    }

    #[test]
    fn masks_secret_headers_only() {
        let m = masked(&flow("Bearer abc"));
        assert_eq!(m["afterProcess"][0]["headers"][0]["value"], MASK);
        assert_eq!(m["afterProcess"][0]["headers"][1]["value"], "t1");
        assert_eq!(m["notifyRequest"]["headers"][0]["value"], MASK);
        assert_eq!(masked(&flow("secret:HOOK")), flow("secret:HOOK"));
    }

    #[test]
    fn restores_from_stored_or_names_the_field() {
        let stored = flow("Bearer abc");
        let mut sent = masked(&stored);
        restore(&mut sent, Some(&stored)).unwrap();
        assert_eq!(sent, stored);
        let mut sent = masked(&stored);
        let err = restore(&mut sent, None).unwrap_err();
        assert_eq!(err.0[0].field, "afterProcess[0].headers[0].value");
        assert_eq!(err.0.len(), 2);
    }
}
