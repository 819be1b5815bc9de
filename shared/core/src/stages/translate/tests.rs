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

/// A page keeps every record's rendered request until deliver is done with it: a rendered
/// string holding handlebars' 8 KiB output buffer for a 30-byte body made the pages in flight
/// (64 pages of 200) weigh about 100 MB.
#[test]
fn a_rendered_string_holds_about_what_it_says() {
    let cache = TemplateCache::default();
    for escape in [
        Escape::None,
        Escape::JsonString,
        Escape::UriComponent,
        Escape::Xml,
    ] {
        let out = cache
            .render_escaped(
                r#"{"n": {{record.n}}}"#,
                &handlebars::Context::wraps(json!({"record": {"n": 7}})).unwrap(),
                escape,
            )
            .unwrap();
        assert_eq!(out, r#"{"n": 7}"#);
        assert!(
            out.capacity() < 64,
            "{escape:?}: {} bytes held for {}",
            out.capacity(),
            out.len()
        );
    }
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
        ..FileFormat::of(FileType::Csv)
    };
    assert_eq!(
        render_file(&recs, Some(&fmt)).unwrap(),
        "id;customer.tier\n1;gold\n2;blue\n"
    );
    let nd = render_file(&recs, Some(&FileFormat::of(FileType::Ndjson))).unwrap();
    assert_eq!(nd.lines().count(), 2);
    let js: Value =
        serde_json::from_str(&render_file(&recs, Some(&FileFormat::of(FileType::Json))).unwrap())
            .unwrap();
    assert_eq!(js, json!([a, b]));
}

#[test]
fn values_in_quoted_json_cannot_add_keys() {
    let cache = TemplateCache::default();
    let nasty = "x\", \"admin\": true, \"y\": \"\\\n";
    let data = json!({"record": {"name": nasty, "qty": 3, "ok": true}});
    let template = r#"{"name": "{{record.name}}", "qty": {{record.qty}}, "ok": {{record.ok}}, "raw": {{json record.name}}, "low": "{{lowercase record.name}}"}"#;
    let body = cache
        .render_value_escaped(template, &data, Escape::JsonString)
        .unwrap();
    let parsed: Value = serde_json::from_str(&body).expect("still valid JSON");
    assert_eq!(
        parsed,
        json!({"name": nasty, "qty": 3, "ok": true, "raw": nasty, "low": nasty.to_lowercase()})
    );
    // Without JSON escaping the same template is injectable: this is what the escaping stops.
    let sneaky = json!({"record": {"name": "x\", \"admin\": \"yes"}});
    let plain = cache
        .render_value(r#"{"name": "{{record.name}}"}"#, &sneaky)
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&plain).unwrap()["admin"],
        "yes"
    );
    let escaped = cache
        .render_value_escaped(
            r#"{"name": "{{record.name}}"}"#,
            &sneaky,
            Escape::JsonString,
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&escaped).unwrap(),
        json!({"name": "x\", \"admin\": \"yes"})
    );
    // Triple-stash is the explicit way to write raw text into a body.
    let raw = cache
        .render_value_escaped(
            r#"{"inner": {{{record.payload}}}}"#,
            &json!({"record": {"payload": "{\"a\": 1}"}}),
            Escape::JsonString,
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&raw).unwrap(),
        json!({"inner": {"a": 1}})
    );
}

#[test]
fn bodies_are_json_escaped_unless_declared_otherwise() {
    let none: [(&str, &str); 0] = [];
    assert_eq!(body_escape(none.into_iter()), Escape::JsonString);
    assert_eq!(
        body_escape([("Content-Type", "application/vnd.api+json")].into_iter()),
        Escape::JsonString
    );
    assert_eq!(
        body_escape([("X-A", "1"), ("content-type", "text/xml")].into_iter()),
        Escape::None
    );
}

#[test]
fn the_helpers_validation_allows_are_the_helpers_templates_have() {
    let cache = TemplateCache::default();
    let render = |t: &str| cache.render_value(t, &json!({"x": [1], "y": "a"}));
    for name in sluice_model::validate::TEMPLATE_HELPERS {
        let outcome = render(&format!("{{{{{name} x y}}}}"));
        assert!(
            !matches!(&outcome, Err(e) if e.contains("Helper not found")),
            "{name}: {outcome:?}"
        );
    }
    assert!(render("{{formatDate y}}")
        .unwrap_err()
        .contains("Helper not found"));
}
