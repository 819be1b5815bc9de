//! `dateFormat`, `dateAdd`, `timestamp`: moment.js tokens and IANA zones
//! (`sluice_model::moment`), as integrator.io's helpers take them.

use super::{number_of, Args, Compiled};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use sluice_model::moment::{self, DateFormat};
use std::sync::Arc;

static FORMATS: Compiled<DateFormat> = Compiled::new();

fn format(source: &str) -> Result<Arc<DateFormat>, String> {
    FORMATS.get(source, || DateFormat::compile(source))
}

fn zone(args: &Args, i: usize) -> Result<Tz, String> {
    args.opt_text(i).map_or(Ok(Tz::UTC), |z| moment::zone(&z))
}

/// Reads a date argument: with `in_format` as written there, else ISO 8601 or epoch ms;
/// without an offset, in `zone`.
fn read(value: &Value, in_format: Option<String>, zone: Tz) -> Result<DateTime<Utc>, String> {
    match in_format {
        Some(f) => format(&f)?.parse(&super::text_of(value), zone),
        None => moment::parse_any(value, zone),
    }
}

/// `date` in `out_format` (ISO 8601 when empty), in `zone`.
fn write(date: DateTime<Utc>, out_format: Option<String>, zone: Tz) -> Result<Value, String> {
    let format = out_format.map(|f| format(&f)).transpose()?;
    Ok(Value::String(moment::write(date, format.as_deref(), zone)))
}

/// `{{dateFormat outFormat date [inFormat] [timezone]}}`: `date` (read with `inFormat`, else
/// ISO 8601 or epoch ms; taken in `timezone` when it has no offset) written with
/// `outFormat` in `timezone` (default UTC).
pub fn date_format(a: &Args) -> Result<Value, String> {
    let zone = zone(a, 3)?;
    let date = read(a.get(1), a.opt_text(2), zone)?;
    write(date, a.opt_text(0), zone)
}

/// `{{dateAdd date offset [timezone]}}`: `date` moved by `offset` milliseconds (negative
/// to go back), as an ISO 8601 UTC time.
pub fn date_add(a: &Args) -> Result<Value, String> {
    let date = read(a.get(0), None, zone(a, 2)?)?;
    let offset = match a.get(1) {
        Value::Null => 0.0,
        v => number_of(v)?,
    };
    let moved = date
        .checked_add_signed(Duration::milliseconds(offset as i64))
        .ok_or("the date is out of range")?;
    write(moved, None, Tz::UTC)
}

/// `{{timestamp [format] [timezone]}}`: the time the page is rendered (the template's
/// `now`), in `format` (ISO 8601 when empty) and `timezone` (default UTC).
pub fn timestamp(a: &Args) -> Result<Value, String> {
    let now = match a.now() {
        Some(v) => moment::parse_any(v, Tz::UTC)?,
        None => Utc::now(),
    };
    write(now, a.opt_text(0), zone(a, 1)?)
}
