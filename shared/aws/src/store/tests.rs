use super::attrs::{from_av, to_av};
use serde_json::json;

#[test]
fn json_survives_attribute_values() {
    let doc =
        json!({"a": 1, "b": -2.5, "c": "x", "d": [true, null, {"e": 18446744073709551615u64}]});
    assert_eq!(from_av(&to_av(&doc)), doc);
}

#[test]
fn schedule_sort_keys_sort_by_time() {
    use chrono::{TimeZone, Utc};
    let a = super::stamp(Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap());
    let b = super::stamp(Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap());
    assert!(a < b && a.len() == b.len());
}
