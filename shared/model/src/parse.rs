//! Reading definitions from JSON so that a person can act on the error.
//!
//! Invariant: a shape error names the field (`exports[0].pageSize`, from the path serde was
//! at) and says what was expected in everyday words — "a whole number ≥ 1", "a number",
//! "a list", "an object" — never Rust's names for types (`usize`, `u32`, `struct Export`).
//! A count that must be at least 1 says so when it is not a whole number at all (`count`);
//! a 0 is read, and refused by the definition's validation with every other problem.

use crate::FieldError;
use serde::de::{self, DeserializeOwned, Deserializer, Unexpected, Visitor};
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;

/// `value` as a `T`; the error names the field and says what was expected.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(field_error)
}

/// A definition (`what`: "a bundle", "a flow", ...) from a JSON document, which must be an
/// object: serde would otherwise read a list as the struct's fields in order, so `[]` would
/// pass as an empty bundle.
pub fn definition<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, FieldError> {
    if !value.is_object() {
        return Err(FieldError {
            field: String::new(),
            message: format!("{what} must be a JSON object, not {}", kind_of(&value)),
        });
    }
    from_value(value)
}

/// What a JSON value is, in words.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A path-tracked serde error as a [`FieldError`] in words. An unknown field is named itself
/// (serde's path stops at the object holding it).
pub fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let message = e.inner().to_string();
    let field = match unknown_field(&message) {
        Some(name) if path.is_empty() => name.to_string(),
        Some(name) if !path.ends_with(name) => format!("{path}.{name}"),
        _ => path,
    };
    FieldError {
        field,
        message: in_words(&message),
    }
}

/// `unknown field `x`, expected ...` -> `x`.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// serde's vocabulary in words: `invalid type: string "5", expected u32` becomes
/// `invalid type: string "5", expected a whole number (0 or more)`.
pub fn in_words(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected an object"),
        ("expected struct variant", "expected an object"),
        ("expected a borrowed string", "expected a string"),
        ("invalid type: sequence", "invalid type: a list"),
        ("invalid type: map", "invalid type: an object"),
        ("invalid type: floating point", "invalid type: the number"),
        ("invalid type: integer", "invalid type: the number"),
        ("invalid value: integer", "invalid value: the number"),
        ("invalid type: boolean", "invalid type:"),
    ];
    let mut out = message.to_string();
    for (rust, words) in WORDS {
        out = replace_word(&out, rust, words);
    }
    // `expected struct Export`, `expected tuple struct ...`: an object either way.
    while let Some(i) = out.find("expected struct ") {
        let end = out[i + 16..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(out.len(), |j| i + 16 + j);
        out.replace_range(i..end, "expected an object");
    }
    out
}

/// Replaces `from` where it ends at a word boundary (`u32` but not `u32x`).
fn replace_word(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        let boundary = after
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        out.push_str(&rest[..i]);
        out.push_str(if boundary { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `#[serde(deserialize_with = "count")]` for an optional count that must be ≥ 1
/// (`pageSize`, `concurrencyLevel`, ...): `null` or absent is `None`; `-1`, `1.5` or `"10"`
/// are refused with "expected a whole number ≥ 1". A 0 is read, for validation to refuse
/// along with the definition's other problems.
pub fn count<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_any(Count(PhantomData))
}

/// As [`count`] for a count that is always there (with a serde default).
pub fn required_count<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    count(deserializer)?
        .ok_or_else(|| de::Error::invalid_type(Unexpected::Unit, &Count::<T>(PhantomData)))
}

struct Count<T>(PhantomData<T>);

impl<'de, T: TryFrom<u64>> Visitor<'de> for Count<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number ≥ 1")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        T::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &"a smaller whole number"))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // serde_json reads `2.0` as a float: a whole number all the same.
        if v.fract() == 0.0 && v >= 0.0 && v <= u64::MAX as f64 {
            return self.visit_u64(v as u64);
        }
        Err(E::invalid_value(Unexpected::Float(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bundle, Connection, Export};
    use serde_json::json;

    fn error_of<T: DeserializeOwned + fmt::Debug>(v: Value) -> FieldError {
        from_value::<T>(v).unwrap_err()
    }

    #[test]
    fn counts_say_whole_number_at_least_one_and_name_the_field() {
        for bad in [json!("10"), json!(-1), json!(1.5), json!(true)] {
            let e = error_of::<Export>(
                json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": bad}),
            );
            assert_eq!(e.field, "pageSize", "{bad}: {e:?}");
            assert!(e.message.contains("a whole number ≥ 1"), "{bad}: {e:?}");
            assert!(!e.message.contains("usize"), "{e:?}");
        }
        let ok: Export =
            from_value(json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": 20}))
                .unwrap();
        assert_eq!(ok.page_size, Some(20));
        let zero: Export =
            from_value(json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": 0})).unwrap();
        let refused = zero.validate().unwrap_err();
        assert_eq!(
            refused.0[0].field, "pageSize",
            "validation refuses 0 with the rest"
        );
        let e = error_of::<Connection>(
            json!({"type": "http", "http": {"baseURI": "http://h", "retry": {"maxAttempts": "3"}}}),
        );
        assert_eq!(e.field, "http.retry.maxAttempts");
        assert!(e.message.contains("a whole number ≥ 1"), "{e:?}");
    }

    #[test]
    fn rust_type_names_become_words() {
        let e = error_of::<Connection>(
            json!({"type": "http", "http": {"baseURI": "http://h", "retry": {"baseDelayMs": "fast"}}}),
        );
        assert_eq!(e.field, "http.retry.baseDelayMs");
        assert_eq!(
            e.message,
            "invalid type: string \"fast\", expected a whole number (0 or more)"
        );
        let e = error_of::<Connection>(
            json!({"type": "http", "http": {"baseURI": "http://h"}, "rateLimit": {"requestsPerSecond": "5"}}),
        );
        assert!(e.message.ends_with("expected a number"), "{e:?}");
        let e = error_of::<Bundle>(json!({"connections": {"a": 1}}));
        assert_eq!(e.field, "connections");
        assert_eq!(e.message, "invalid type: an object, expected a list");
        let e = definition::<Bundle>("a bundle", json!([])).unwrap_err();
        assert_eq!(e.message, "a bundle must be a JSON object, not a list");
        assert_eq!(
            in_words("invalid type: sequence, expected struct Bundle"),
            "invalid type: a list, expected an object"
        );
        let e = error_of::<Bundle>(
            json!({"flows": [{"_id": "f", "name": "f", "pageGenerators": [], "disabled": "no"}]}),
        );
        assert_eq!(e.field, "flows[0].disabled");
        assert!(e.message.ends_with("expected true or false"), "{e:?}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = error_of::<Connection>(json!({"type": "http", "http": {"baseURL": "x"}}));
        assert_eq!(e.field, "http.baseURL");
        let e = error_of::<Connection>(json!({"type": "http", "colour": 1}));
        assert_eq!(e.field, "colour");
    }

    #[test]
    fn words_replace_whole_type_names_only() {
        assert_eq!(replace_word("expected u32", "expected u32", "X"), "X");
        assert_eq!(
            replace_word("expected u32x", "expected u32", "X"),
            "expected u32x"
        );
        assert_eq!(in_words("expected struct Export"), "expected an object");
    }
}
