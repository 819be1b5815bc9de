//! Math helpers: numbers or numeric text in, a number out (whole numbers without a
//! fraction; others rounded to 10 decimals), except `toFixed`, which writes text.

use super::{number_of, number_value, Args};
use serde_json::Value;

/// The numbers of all arguments, a single list argument standing for its elements.
fn numbers(a: &Args) -> Result<Vec<f64>, String> {
    let values: Vec<&Value> = match a.all() {
        [Value::Array(items)] => items.iter().collect(),
        all => all.to_vec(),
    };
    values.into_iter().map(number_of).collect()
}

fn two(a: &Args) -> Result<(f64, f64), String> {
    if a.len() != 2 {
        return Err(format!("takes two numbers, got {}", a.len()));
    }
    Ok((a.number(0)?, a.number(1)?))
}

/// `{{add a b ...}}`
pub fn add(a: &Args) -> Result<Value, String> {
    number_value(numbers(a)?.iter().sum())
}
/// `{{subtract a b}}`
pub fn subtract(a: &Args) -> Result<Value, String> {
    let (x, y) = two(a)?;
    number_value(x - y)
}
/// `{{multiply a b ...}}`
pub fn multiply(a: &Args) -> Result<Value, String> {
    number_value(numbers(a)?.iter().product())
}
/// `{{divide a b}}`: dividing by zero is an error, not infinity.
pub fn divide(a: &Args) -> Result<Value, String> {
    let (x, y) = two(a)?;
    if y == 0.0 {
        return Err(format!("cannot divide {x} by zero"));
    }
    number_value(x / y)
}
/// `{{modulo a b}}`
pub fn modulo(a: &Args) -> Result<Value, String> {
    let (x, y) = two(a)?;
    if y == 0.0 {
        return Err(format!("cannot take {x} modulo zero"));
    }
    number_value(x % y)
}
/// `{{round x [digits]}}`: halves away from zero.
pub fn round(a: &Args) -> Result<Value, String> {
    let scale = 10f64.powi(a.count(1, 0)? as i32);
    number_value((a.number(0)? * scale).round() / scale)
}
/// `{{floor x}}`
pub fn floor(a: &Args) -> Result<Value, String> {
    number_value(a.number(0)?.floor())
}
/// `{{ceil x}}`
pub fn ceil(a: &Args) -> Result<Value, String> {
    number_value(a.number(0)?.ceil())
}
/// `{{abs x}}`
pub fn abs(a: &Args) -> Result<Value, String> {
    number_value(a.number(0)?.abs())
}
/// `{{toFixed x digits}}`: text with exactly `digits` decimals (`"12.50"`).
pub fn to_fixed(a: &Args) -> Result<Value, String> {
    let digits = a.count(1, 0)?.clamp(0, 20) as usize;
    Ok(Value::String(format!("{:.*}", digits, a.number(0)?)))
}
/// `{{sum a b ...}}` or `{{sum list}}`
pub fn sum(a: &Args) -> Result<Value, String> {
    add(a)
}
/// `{{avg a b ...}}` or `{{avg list}}`; of nothing is an error.
pub fn avg(a: &Args) -> Result<Value, String> {
    let n = numbers(a)?;
    if n.is_empty() {
        return Err("takes at least one number".into());
    }
    number_value(n.iter().sum::<f64>() / n.len() as f64)
}
