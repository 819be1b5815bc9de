//! Logic helpers: inline they give true or false (`{{#if (and a b)}}`), as blocks they
//! choose their branch (`{{#compare a "==" b}}..{{else}}..{{/compare}}`). Truth is
//! JavaScript's, as in integrator.io: null, missing, false, 0 and "" are false; lists and
//! objects, even empty, are true.

use super::{text_of, Args};
use crate::values::{loose_eq, order, truthy};
use serde_json::Value;
use std::cmp::Ordering;

/// `{{#compare a operator b}}`: `==`, `===`, `!=`, `!==`, `<`, `>`, `<=`, `>=`.
pub fn compare(args: &Args) -> Result<bool, String> {
    let (a, op, b) = (args.get(0), args.text(1), args.get(2));
    Ok(match op.as_str() {
        "==" => loose_eq(a, b),
        "===" => a == b,
        "!=" => !loose_eq(a, b),
        "!==" => a != b,
        "<" => order(a, b) == Some(Ordering::Less),
        ">" => order(a, b) == Some(Ordering::Greater),
        "<=" => matches!(order(a, b), Some(Ordering::Less | Ordering::Equal)),
        ">=" => matches!(order(a, b), Some(Ordering::Greater | Ordering::Equal)),
        other => {
            return Err(format!(
                "unknown operator '{other}' (use ==, ===, !=, !==, <, >, <=, >=)"
            ))
        }
    })
}

/// `{{#contains collection value}}`: a list holding the value, or text holding it.
pub fn contains(args: &Args) -> Result<bool, String> {
    let needle = args.get(1);
    Ok(match args.get(0) {
        Value::Array(items) => items.iter().any(|i| loose_eq(i, needle)),
        Value::Object(m) => m.contains_key(&text_of(needle)),
        Value::Null => false,
        v => text_of(v).contains(&text_of(needle)),
    })
}

/// `{{#isEmpty v}}`: missing, null, "", an empty list or an empty object.
pub fn is_empty(args: &Args) -> Result<bool, String> {
    Ok(crate::values::is_empty(args.get(0)))
}

/// `{{#and a b ...}}`: every argument true.
pub fn and(args: &Args) -> Result<bool, String> {
    Ok(args.len() > 0 && args.all().iter().all(|v| truthy(v)))
}

/// `{{#or a b ...}}`: any argument true.
pub fn or(args: &Args) -> Result<bool, String> {
    Ok(args.all().iter().any(|v| truthy(v)))
}

/// `{{#not v}}`: the argument false.
pub fn not(args: &Args) -> Result<bool, String> {
    Ok(!truthy(args.get(0)))
}
