//! Dates in integrator.io's terms: moment.js format tokens (`YYYY-MM-DD HH:mm`) read into
//! chrono format items once, and dates read and written with them in an IANA time zone.
//!
//! Invariant: a format that compiled can format every date; reading can still fail on input
//! that does not match it, with a message saying what was expected. Tokens chrono has no
//! equivalent for (localized `L`, ordinals `Do`, tenths `S`) are refused when compiled, not
//! written as letters.

use chrono::format::{Fixed, Item, Numeric, Pad, Parsed};
use chrono::{DateTime, NaiveTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;

/// A compiled moment.js format.
#[derive(Debug, Clone, PartialEq)]
pub struct DateFormat {
    source: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Chrono(Item<'static>),
    /// `x`: milliseconds since the epoch (chrono has seconds only).
    EpochMillis,
    /// `Q`: the quarter, 1 to 4.
    Quarter,
}

/// The piece a run of one letter stands for; `None` for letters that are no token (literal).
fn token(t: &str) -> Option<Result<Piece, &'static str>> {
    use Fixed as F;
    use Numeric as N;
    let n = |n: N, p: Pad| Ok(Piece::Chrono(Item::Numeric(n, p)));
    let f = |f: F| Ok(Piece::Chrono(Item::Fixed(f)));
    Some(match t {
        "YYYY" => n(N::Year, Pad::Zero),
        "YY" => n(N::YearMod100, Pad::Zero),
        "GGGG" => n(N::IsoYear, Pad::Zero),
        "MMMM" => f(F::LongMonthName),
        "MMM" => f(F::ShortMonthName),
        "MM" => n(N::Month, Pad::Zero),
        "M" => n(N::Month, Pad::None),
        "Q" => Ok(Piece::Quarter),
        "DDDD" => n(N::Ordinal, Pad::Zero),
        "DDD" => n(N::Ordinal, Pad::None),
        "DD" => n(N::Day, Pad::Zero),
        "D" => n(N::Day, Pad::None),
        "dddd" => f(F::LongWeekdayName),
        "ddd" => f(F::ShortWeekdayName),
        "d" => n(N::NumDaysFromSun, Pad::None),
        "E" => n(N::WeekdayFromMon, Pad::None),
        "WW" => n(N::IsoWeek, Pad::Zero),
        "W" => n(N::IsoWeek, Pad::None),
        "HH" => n(N::Hour, Pad::Zero),
        "H" => n(N::Hour, Pad::None),
        "hh" => n(N::Hour12, Pad::Zero),
        "h" => n(N::Hour12, Pad::None),
        "mm" => n(N::Minute, Pad::Zero),
        "m" => n(N::Minute, Pad::None),
        "ss" => n(N::Second, Pad::Zero),
        "s" => n(N::Second, Pad::None),
        "SSSSSSSSS" => strftime("%9f"),
        "SSSSSS" => strftime("%6f"),
        "SSS" => strftime("%3f"),
        "A" => f(F::UpperAmPm),
        "a" => f(F::LowerAmPm),
        "ZZ" => f(F::TimezoneOffset),
        "Z" => f(F::TimezoneOffsetColon),
        "X" => n(N::Timestamp, Pad::None),
        "x" => Ok(Piece::EpochMillis),
        "S" | "SS" | "SSSS" | "SSSSS" => Err("fractions of a second are SSS, SSSSSS or SSSSSSSSS"),
        _ if t.starts_with('L') || t.starts_with('l') => {
            Err("localized formats (L, LL, ...) are not supported; spell the format out")
        }
        _ if t.ends_with('o') && t.len() > 1 => Err("ordinals (Do, Mo, ...) are not supported"),
        _ if t.starts_with(['w', 'g', 'k', 'N', 'e']) => {
            Err("locale weeks (w, gggg), k and era tokens are not supported; use W and GGGG")
        }
        _ => return None,
    })
}

/// chrono keeps some items (fractions without a dot) to its strftime parser.
fn strftime(spec: &'static str) -> Result<Piece, &'static str> {
    chrono::format::StrftimeItems::new(spec)
        .next()
        .map(Piece::Chrono)
        .ok_or("unsupported")
}

impl DateFormat {
    /// Compiles a moment.js format: runs of one letter are tokens, `[text]` is literal text,
    /// anything else (and letters that are no token, such as the `T` of ISO 8601) is literal.
    pub fn compile(source: &str) -> Result<DateFormat, String> {
        let chars: Vec<char> = source.chars().collect();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '[' {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or_else(|| format!("'[' at {i} has no closing ']'"))?;
                literal.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
                continue;
            }
            let mut run = 1;
            while i + run < chars.len() && chars[i + run] == c {
                run += 1;
            }
            // `Do`, `Mo`: a token followed by the ordinal suffix.
            let mut text: String = chars[i..i + run].iter().collect();
            if c.is_ascii_alphabetic() && chars.get(i + run) == Some(&'o') && c != 'o' {
                text.push('o');
            }
            match c.is_ascii_alphabetic().then(|| token(&text)).flatten() {
                Some(Ok(piece)) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Chrono(Item::OwnedLiteral(
                            std::mem::take(&mut literal).into(),
                        )));
                    }
                    pieces.push(piece);
                }
                Some(Err(why)) => return Err(format!("'{text}' in '{source}': {why}")),
                None => literal.push_str(&chars[i..i + run].iter().collect::<String>()),
            }
            i += run;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Chrono(Item::OwnedLiteral(literal.into())));
        }
        Ok(DateFormat {
            source: source.to_string(),
            pieces,
        })
    }

    /// `date` written in this format, in `zone`.
    pub fn format(&self, date: DateTime<Utc>, zone: Tz) -> String {
        use std::fmt::Write;
        let local = date.with_timezone(&zone);
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Chrono(item) => {
                    let _ = write!(out, "{}", local.format_with_items(std::iter::once(item)));
                }
                Piece::EpochMillis => {
                    let _ = write!(out, "{}", date.timestamp_millis());
                }
                Piece::Quarter => {
                    use chrono::Datelike;
                    let _ = write!(out, "{}", (local.month() - 1) / 3 + 1);
                }
            }
        }
        out
    }

    /// Reads `text` in this format; a date without an offset in it is taken in `zone`, a
    /// date without a time of day at midnight.
    pub fn parse(&self, text: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
        let why = |e: &dyn std::fmt::Display| {
            format!(
                "'{text}' is not a date in the format '{}': {e}",
                self.source
            )
        };
        if let [Piece::EpochMillis] = self.pieces.as_slice() {
            let ms: i64 = text.trim().parse().map_err(|e| why(&e))?;
            return DateTime::from_timestamp_millis(ms).ok_or_else(|| why(&"out of range"));
        }
        let mut items = Vec::with_capacity(self.pieces.len());
        for piece in &self.pieces {
            match piece {
                Piece::Chrono(item) => items.push(item.clone()),
                _ => return Err(why(&"x and Q can only be written, not read")),
            }
        }
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text.trim(), items.iter()).map_err(|e| why(&e))?;
        if parsed.timestamp().is_some() || parsed.offset().is_some() {
            return parsed
                .to_datetime()
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| why(&e));
        }
        let day = parsed.to_naive_date().map_err(|e| why(&e))?;
        let time = parsed.to_naive_time().unwrap_or(NaiveTime::MIN);
        in_zone(day.and_time(time), zone)
            .ok_or_else(|| why(&format!("it does not exist in {zone}")))
    }
}

/// A wall-clock time in `zone` (the earlier one when a fall-back repeats it; none when a
/// spring-forward skips it).
pub fn in_zone(naive: chrono::NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.with_timezone(&Utc))
}

/// Reads a date without a format: RFC 3339 (`2026-01-02T03:04:05Z`), an ISO 8601 date and
/// time without an offset (taken in `zone`), a date alone (midnight in `zone`), or a number
/// of milliseconds since the epoch, as moment reads them.
pub fn parse_any(value: &serde_json::Value, zone: Tz) -> Result<DateTime<Utc>, String> {
    use serde_json::Value;
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(|ms| DateTime::from_timestamp_millis(ms as i64))
            .ok_or_else(|| format!("{n} is not a time in milliseconds since 1970")),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(d) = DateTime::parse_from_rfc3339(s) {
                return Ok(d.with_timezone(&Utc));
            }
            for f in [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ] {
                if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, f) {
                    return in_zone(n, zone)
                        .ok_or_else(|| format!("'{s}' does not exist in {zone}"));
                }
            }
            if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return in_zone(d.and_time(NaiveTime::MIN), zone)
                    .ok_or_else(|| format!("'{s}' does not exist in {zone}"));
            }
            Err(format!(
                "'{s}' is not an ISO 8601 date (give the format it is written in)"
            ))
        }
        other => Err(format!("{other} is not a date")),
    }
}

/// `date` in `format`, or without one ISO 8601 with milliseconds: in UTC as Sluice writes
/// times (`...T10:00:00.000Z`), in another zone with its offset (`...T12:00:00.000+02:00`).
pub fn write(date: DateTime<Utc>, format: Option<&DateFormat>, zone: Tz) -> String {
    static WITH_OFFSET: std::sync::LazyLock<DateFormat> = std::sync::LazyLock::new(|| {
        DateFormat::compile("YYYY-MM-DDTHH:mm:ss.SSSZ").expect("a valid format")
    });
    match format {
        Some(f) => f.format(date, zone),
        None if zone == Tz::UTC => iso(date),
        None => WITH_OFFSET.format(date, zone),
    }
}

/// A date written as Sluice writes times: RFC 3339, UTC, milliseconds.
pub fn iso(date: DateTime<Utc>) -> String {
    date.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An IANA zone by name, with the message the definitions use.
pub fn zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("Unknown time zone '{name}' (use an IANA name such as Europe/Berlin)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn formats_moment_tokens_in_a_zone() {
        let d = at("2020-07-09T19:59:39.156Z");
        let f = |s: &str, z: &str| DateFormat::compile(s).unwrap().format(d, zone(z).unwrap());
        assert_eq!(
            f("YYYY-MM-DD HH:mm:ss.SSS", "UTC"),
            "2020-07-09 19:59:39.156"
        );
        assert_eq!(f("M/D/YY h:mm A", "UTC"), "7/9/20 7:59 PM");
        assert_eq!(
            f("dddd, MMMM D [at] HH:mm Z", "Europe/Berlin"),
            "Thursday, July 9 at 21:59 +02:00"
        );
        assert_eq!(
            f("YYYY-MM-DDTHH:mm:ssZZ", "Asia/Tokyo"),
            "2020-07-10T04:59:39+0900"
        );
        assert_eq!(f("ddd DDDD Q WW E", "UTC"), "Thu 191 3 28 4");
        assert_eq!(f("X x", "UTC"), "1594324779 1594324779156");
    }

    #[test]
    fn parses_in_the_format_and_the_zone() {
        let ny = zone("America/New_York").unwrap();
        let p = |f: &str, s: &str| DateFormat::compile(f).unwrap().parse(s, ny);
        assert_eq!(
            p("MM/DD/YYYY", "03/26/2025").unwrap(),
            at("2025-03-26T04:00:00Z")
        );
        assert_eq!(
            p("M/D/YYYY h:mm a", "3/6/2025 1:05 pm").unwrap(),
            at("2025-03-06T18:05:00Z")
        );
        assert_eq!(
            p("YYYY-MM-DD HH:mm Z", "2025-03-26 10:00 +01:00").unwrap(),
            at("2025-03-26T09:00:00Z")
        );
        assert_eq!(p("X", "1594324779").unwrap(), at("2020-07-09T19:59:39Z"));
        assert_eq!(
            p("x", "1594324779156").unwrap(),
            at("2020-07-09T19:59:39.156Z")
        );
        let e = p("MM/DD/YYYY", "2025-03-26").unwrap_err();
        assert!(
            e.contains("'2025-03-26' is not a date in the format 'MM/DD/YYYY'"),
            "{e}"
        );
        // 02:30 on 2025-03-09 does not exist in New York (spring forward).
        assert!(p("YYYY-MM-DD HH:mm", "2025-03-09 02:30")
            .unwrap_err()
            .contains("does not exist"));
    }

    #[test]
    fn refuses_tokens_it_cannot_honour() {
        for f in ["LL", "Do MMMM", "YYYY-MM-DD HH:mm:ss.S", "gggg", "[open"] {
            assert!(DateFormat::compile(f).is_err(), "{f}");
        }
    }

    #[test]
    fn reads_iso_dates_and_epoch_millis_without_a_format() {
        let berlin = zone("Europe/Berlin").unwrap();
        let v = |j: serde_json::Value| parse_any(&j, berlin);
        assert_eq!(
            v("2025-01-02T03:04:05Z".into()).unwrap(),
            at("2025-01-02T03:04:05Z")
        );
        assert_eq!(
            v("2025-01-02T03:04:05".into()).unwrap(),
            at("2025-01-02T02:04:05Z")
        );
        assert_eq!(v("2025-01-02".into()).unwrap(), at("2025-01-01T23:00:00Z"));
        assert_eq!(
            v(1594324779156u64.into()).unwrap(),
            at("2020-07-09T19:59:39.156Z")
        );
        assert!(v("yesterday".into()).is_err());
        assert!(v(true.into()).is_err());
        assert_eq!(iso(at("2025-01-02T03:04:05Z")), "2025-01-02T03:04:05.000Z");
    }
}
