//! Timestamps on the wire: RFC 3339, UTC with `Z`, millisecond precision
//! (`2026-11-22T10:15:00.123Z`), the form integrator.io's API shows. Every `DateTime` field
//! of the model serializes through here, so definitions, jobs, errors, audit entries and
//! `lastExportDateTime` read alike. Reading accepts any RFC 3339 time (any offset, any
//! precision), so older stored values and users' own stay readable.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// The one wire form of a time.
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Any RFC 3339 time, as UTC.
pub fn parse(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    Ok(DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc))
}

/// `#[serde(with = "crate::time::ms")]` for a `DateTime<Utc>`.
pub mod ms {
    use super::*;
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }
}

/// `#[serde(with = "crate::time::ms_opt")]` for an `Option<DateTime<Utc>>`.
pub mod ms_opt {
    use super::*;
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format(t)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_utc_z_with_milliseconds_and_reads_any_offset() {
        let t = parse("2026-11-22T11:15:00.123456789+01:00").unwrap();
        assert_eq!(format(&t), "2026-11-22T10:15:00.123Z");
        let whole = parse("2026-11-22T10:15:00Z").unwrap();
        assert_eq!(format(&whole), "2026-11-22T10:15:00.000Z");
    }
}
