//! How Sluice reads JSON values where integrator.io users expect JavaScript's rules: as
//! text, as numbers, as true or false, and equal or not. One home for these so the
//! handlebars helpers and the filter rules agree (`"5" == 5`, `0` is false, `[]` is true).

use serde_json::Value;

/// A value as text, as templates write it: strings as they are, null as "", others as JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A number, or numeric text.
pub fn number_of(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is out of range")),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| format!("'{s}' is not a number")),
        other => Err(format!("{} is not a number", short(other))),
    }
}

/// A computed number as JSON: whole numbers without a fraction, others rounded to 10
/// decimals so binary noise (3 × 19.99 = 59.970000000000006) does not reach the output.
pub fn number_value(n: f64) -> Result<Value, String> {
    if !n.is_finite() {
        return Err(format!("the result ({n}) is not a number"));
    }
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        return Ok(Value::from(n as i64));
    }
    let rounded = (n * 1e10).round() / 1e10;
    Ok(serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number))
}

pub(crate) fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// Empty as integrator.io's `isEmpty` and `discardIfEmpty` mean it: null (or missing), "",
/// an empty list or an empty object.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// JavaScript's truth: null, false, 0 and "" are false; lists and objects, even empty, true.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `==`: numbers and numeric text compare as numbers, everything else as text.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    match (number_of(a), number_of(b)) {
        (Ok(x), Ok(y)) if a.is_number() || b.is_number() => x == y,
        _ => a == b || (a.is_string() || b.is_string()) && text_of(a) == text_of(b),
    }
}

/// The order of two values: as numbers when both are numbers (or one is and the other is
/// numeric text), else as text; none when either is null (nothing is more than missing).
pub fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if a.is_null() || b.is_null() {
        return None;
    }
    if a.is_number() || b.is_number() {
        if let (Ok(x), Ok(y)) = (number_of(a), number_of(b)) {
            return x.partial_cmp(&y);
        }
    }
    Some(text_of(a).cmp(&text_of(b)))
}
