//! Each mapping feature over a real template registry.

use super::*;
use crate::stages::translate::TemplateCache;
use serde_json::json;

fn map_with(mapping: Value, record: Value, strict: bool) -> Result<Value, String> {
    let m: Mapping = serde_json::from_value(mapping).unwrap();
    let compiled = m.compile("mapping").unwrap();
    let cache = TemplateCache::default();
    apply(
        &compiled,
        &record,
        Templates {
            cache: &cache,
            strict,
            now: None,
        },
    )
}

fn map(mapping: Value, record: Value) -> Result<Value, String> {
    map_with(mapping, record, false)
}

fn order() -> Value {
    json!({"id": 7, "first": "Ann", "last": "Lee", "customer": {"email": "ann@example.com"},
           "Customer Name": "Ann Lee", "total": "120.50", "paid": "yes", "note": "",
           "placed": "03/26/2025 14:05",
           "lines": [{"sku": "a-1", "qty": "2", "price": 9.5}, {"sku": "b-2", "qty": "1", "price": 20}]})
}

#[test]
fn extracts_paths_into_dotted_outputs_and_keeps_only_what_is_generated() {
    let out = map(
        json!({"fields": [
            {"extract": "customer.email", "generate": "contact.email"},
            {"extract": "id", "generate": "externalId"},
            {"extract": "Customer Name", "generate": "name"},
            {"extract": "lines[0].sku", "generate": "firstSku"},
            {"extract": "missing", "generate": "absent"}]}),
        order(),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"contact": {"email": "ann@example.com"}, "externalId": 7, "name": "Ann Lee",
               "firstSku": "a-1"}),
        "a path that finds nothing writes nothing"
    );
}

#[test]
fn star_paths_collect_lists() {
    let out = map(
        json!({"fields": [{"extract": "lines[*].sku", "generate": "skus"}]}),
        order(),
    )
    .unwrap();
    assert_eq!(out, json!({"skus": ["a-1", "b-2"]}));
}

#[test]
fn handlebars_expressions_and_hard_coded_values() {
    let out = map(
        json!({"fields": [
            {"extract": "{{record.first}} {{uppercase record.last}}", "generate": "name"},
            {"hardCodedValue": {"channel": "web"}, "generate": "source"},
            {"hardCodedValue": 3, "generate": "priority"}]}),
        order(),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"name": "Ann LEE", "source": {"channel": "web"}, "priority": 3})
    );
}

#[test]
fn default_and_discard_if_empty() {
    let out = map(
        json!({"fields": [
            {"extract": "note", "generate": "note", "default": "none"},
            {"extract": "missing", "generate": "region", "default": "EU"},
            {"extract": "note", "generate": "dropped", "discardIfEmpty": true},
            {"extract": "missing", "generate": "alsoDropped", "discardIfEmpty": true},
            {"extract": "note", "generate": "kept"}]}),
        order(),
    )
    .unwrap();
    assert_eq!(out, json!({"note": "none", "region": "EU", "kept": ""}));
}

#[test]
fn data_types_convert() {
    let out = map(
        json!({"fields": [
            {"extract": "total", "generate": "total", "dataType": "number"},
            {"extract": "id", "generate": "id", "dataType": "string"},
            {"extract": "paid", "generate": "paid", "dataType": "boolean"},
            {"extract": "lines[*].qty", "generate": "qtys", "dataType": "number"}]}),
        order(),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"total": 120.5, "id": "7", "paid": true, "qtys": [2, 1]})
    );
}

#[test]
fn dates_convert_with_format_and_zone() {
    let out = map(
        json!({"fields": [
            {"extract": "placed", "generate": "placedAt", "dataType": "date",
             "extractDateFormat": "MM/DD/YYYY HH:mm", "extractDateTimezone": "America/New_York"},
            {"extract": "placed", "generate": "placedOn", "dataType": "date",
             "extractDateFormat": "MM/DD/YYYY HH:mm", "extractDateTimezone": "America/New_York",
             "generateDateFormat": "DD.MM.YYYY HH:mm", "generateDateTimezone": "Europe/Berlin"}]}),
        order(),
    )
    .unwrap();
    // 14:05 in New York (EDT, -4) is 18:05 UTC, 19:05 in Berlin (CET, +1).
    assert_eq!(
        out,
        json!({"placedAt": "2025-03-26T18:05:00.000Z", "placedOn": "26.03.2025 19:05"})
    );
}

#[test]
fn a_failed_conversion_is_an_error_naming_the_field() {
    let e = map(
        json!({"fields": [{"extract": "id", "generate": "id"},
                          {"extract": "first", "generate": "amount", "dataType": "number"}]}),
        order(),
    )
    .unwrap_err();
    assert_eq!(e, "mapping.fields[1] (amount): 'Ann' is not a number");
    let e = map(
        json!({"fields": [{"extract": "placed", "generate": "on", "dataType": "date",
                           "extractDateFormat": "YYYY-MM-DD"}]}),
        order(),
    )
    .unwrap_err();
    assert!(
        e.starts_with(
            "mapping.fields[0] (on): '03/26/2025 14:05' is not a date in the format 'YYYY-MM-DD'"
        ),
        "{e}"
    );
    let e = map(
        json!({"fields": [{"extract": "first", "generate": "ok", "dataType": "boolean"}]}),
        order(),
    )
    .unwrap_err();
    assert!(e.contains("(ok): 'Ann' is not true or false"), "{e}");
}

#[test]
fn lists_build_one_element_per_value() {
    let out = map(
        json!({"lists": [{"generate": "order.lines", "fields": [
            {"extract": "lines[*].sku", "generate": "item.sku"},
            {"extract": "lines[*].qty", "generate": "quantity", "dataType": "number"},
            {"extract": "id", "generate": "orderId"},
            {"extract": "{{index}}:{{lookup (lookup record.lines index) \"sku\"}}", "generate": "ref"},
            {"hardCodedValue": "EA", "generate": "unit"}]}]}),
        order(),
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"order": {"lines": [
            {"item": {"sku": "a-1"}, "quantity": 2, "orderId": 7, "ref": "0:a-1", "unit": "EA"},
            {"item": {"sku": "b-2"}, "quantity": 1, "orderId": 7, "ref": "1:b-2", "unit": "EA"}]}})
    );
    // An empty input list gives an empty output list, not one element of nothing.
    let out = map(
        json!({"lists": [{"generate": "lines", "fields": [{"extract": "lines[*].sku", "generate": "sku"}]}]}),
        json!({"lines": []}),
    )
    .unwrap();
    assert_eq!(out, json!({"lines": []}));
}

#[test]
fn a_list_element_that_fails_names_the_list_field() {
    let e = map(
        json!({"lists": [{"generate": "lines", "fields": [
            {"extract": "lines[*].sku", "generate": "price", "dataType": "number"}]}]}),
        order(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "mapping.lists[0].fields[0] (price): 'a-1' is not a number"
    );
}

#[test]
fn strict_mode_fails_a_template_on_a_missing_field() {
    let mapping = json!({"fields": [{"extract": "{{record.nickname}}", "generate": "nick"}]});
    assert_eq!(map(mapping.clone(), order()).unwrap(), json!({"nick": ""}));
    let e = map_with(mapping, order(), true).unwrap_err();
    assert!(e.starts_with("mapping.fields[0] (nick): "), "{e}");
    assert!(e.contains("nickname"), "{e}");
}

#[test]
fn writing_inside_a_value_is_an_error() {
    let e = map(
        json!({"fields": [{"extract": "id", "generate": "a"}, {"extract": "first", "generate": "a.b"}]}),
        order(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "mapping.fields[1] (a.b): 'a' is a value already, so nothing can go inside it"
    );
}
