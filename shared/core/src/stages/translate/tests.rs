use super::*;
use serde_json::json;
use sluice_model::{FileFormat, FileType};

#[test]
fn json_helper_cannot_be_broken_by_values() {
    let cache = TemplateCache::default();
    let nasty = "He said \"hi\"}, \"admin\": true, \"x\": {\n\\";
    let body = cache.render_value(r#"{"name": {{json record.name}}, "n": {{json record.n}}, "missing": {{json record.nope}}}"#, &json!({"record": {"name": nasty, "n": 5}})).unwrap();
    let parsed: Value = serde_json::from_str(&body).expect("still valid JSON");
    assert_eq!(parsed, json!({"name": nasty, "n": 5, "missing": null}));
    assert_eq!(parsed.as_object().unwrap().len(), 3, "no injected keys");
}

#[test]
fn whole_record_default_body_and_no_html_escaping() {
    let cache = TemplateCache::default();
    let rec = json!({"a": "<b>&", "list": [1, 2]});
    let out = cache
        .render_value("{{json record}}", &json!({ "record": rec }))
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), rec);
    assert_eq!(
        cache
            .render_value("{{record.a}}", &json!({ "record": rec }))
            .unwrap(),
        "<b>&"
    );
}

#[test]
fn urlencode_and_text_helpers() {
    let cache = TemplateCache::default();
    let ctx = json!({"record": {"q": "a b/c?d=e&f", "name": "Ada", "empty": ""}});
    assert_eq!(
        cache
            .render_value("/search?q={{urlencode record.q}}", &ctx)
            .unwrap(),
        "/search?q=a%20b%2Fc%3Fd%3De%26f"
    );
    assert_eq!(
        cache
            .render_value("{{lowercase record.name}}-{{uppercase record.name}}", &ctx)
            .unwrap(),
        "ada-ADA"
    );
    assert_eq!(
        cache
            .render_value("{{default record.empty \"none\"}}", &ctx)
            .unwrap(),
        "none"
    );
}

#[test]
fn templates_compile_once() {
    let cache = TemplateCache::default();
    for i in 0..100 {
        cache
            .render_value("/orders/{{record.id}}", &json!({"record": {"id": i}}))
            .unwrap();
    }
    cache.render_value("/other", &json!({})).unwrap();
    assert_eq!(cache.compiled(), 2);
    assert!(cache
        .render_value("{{#if}}", &json!({}))
        .unwrap_err()
        .contains("invalid template"));
}

#[test]
fn urls_join_and_stay_under_the_base() {
    assert_eq!(
        join_url("http://h:1/api/", "/orders").unwrap(),
        "http://h:1/api/orders"
    );
    assert_eq!(
        join_url("http://h:1/api", "orders?x=1").unwrap(),
        "http://h:1/api/orders?x=1"
    );
    assert_eq!(
        join_url("http://h:1/api", "http://h:1/api/x").unwrap(),
        "http://h:1/api/x"
    );
    assert!(join_url("http://h:1/api", "http://evil.example/x")
        .unwrap_err()
        .contains("outside"));
}

#[test]
fn files_as_csv_json_and_ndjson() {
    let a = json!({"id": 1, "name": "Smith, J", "customer": {"tier": "gold"}});
    let b = json!({"id": 2, "name": "Q \"uote\"", "customer": {"tier": "blue"}});
    let recs = vec![&a, &b];
    let csv = render_file(&recs, None).unwrap();
    assert_eq!(csv, "id,name,customer\n1,\"Smith, J\",\"{\"\"tier\"\":\"\"gold\"\"}\"\n2,\"Q \"\"uote\"\"\",\"{\"\"tier\"\":\"\"blue\"\"}\"\n");
    let fmt = FileFormat {
        kind: FileType::Csv,
        csv: Some(sluice_model::CsvOptions {
            column_delimiter: ";".into(),
            has_header_row: true,
            columns: vec!["id".into(), "customer.tier".into()],
        }),
    };
    assert_eq!(
        render_file(&recs, Some(&fmt)).unwrap(),
        "id;customer.tier\n1;gold\n2;blue\n"
    );
    let nd = render_file(
        &recs,
        Some(&FileFormat {
            kind: FileType::Ndjson,
            csv: None,
        }),
    )
    .unwrap();
    assert_eq!(nd.lines().count(), 2);
    let js: Value = serde_json::from_str(
        &render_file(
            &recs,
            Some(&FileFormat {
                kind: FileType::Json,
                csv: None,
            }),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(js, json!([a, b]));
}
