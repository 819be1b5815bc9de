//! Input hardening: nosniff on every answer (checked by the test client on every reply),
//! safe ids with the field named, JSON objects only, JSON bodies only, and error codes of
//! their own for 405 and 413.

mod common;
use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn unsafe_ids_are_refused_naming_the_field() {
    let api = Api::start().await;
    let long = "x".repeat(5000);
    for id in ["a/b", "..", ".env", "a b", long.as_str()] {
        let r = api
            .post("/integrations", json!({"_id": id, "name": "g"}))
            .await;
        assert_eq!(r.status, 400, "{id}: {}", r.text);
        assert_eq!(r.error().1.as_deref(), Some("_id"), "{id}");
    }
    let r = api.get(&format!("/flows/{long}")).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("id"));
    assert!(r.error().2.contains("5000"), "{}", r.error().2);
    let r = api.get("/flows/..%2Fetc").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("id"));
    let r = api.get("/jobs/j1/errors/a%20b").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("errorId"));
    // ids inside a bundle too
    let r = api
        .post(
            "/flows/import-template",
            json!({"connections": [], "flows": [
            {"_id": "a/b", "name": "f", "pageGenerators": [{"_exportId": "e"}]}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let fields = r.fields();
    assert!(fields.contains(&"flows[0]._id".to_string()), "{fields:?}");
}

#[tokio::test]
async fn arrays_where_an_object_is_expected_are_refused() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    for (method, path) in [
        (Method::POST, "/flows"),
        (Method::PUT, "/flows/f1"),
        (Method::POST, "/flows/f1/run"),
        (Method::POST, "/flows/import-template"),
        (Method::POST, "/connections"),
    ] {
        let r = api
            .send(
                method.clone(),
                path,
                Some(KEY),
                Some(b"[{\"name\": \"x\"}]".to_vec()),
            )
            .await;
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text);
        assert_eq!(
            r.error().2,
            "The body must be a JSON object, not an array",
            "{method} {path}"
        );
    }
    // nothing ran
    assert!(api.get("/jobs").await.json["items"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let api = Api::start().await;
    for ct in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "text/html; charset=utf-8",
    ] {
        let r = api
            .send_with(
                Method::POST,
                "/integrations",
                &[("content-type", ct)],
                r#"{"name": "g"}"#,
            )
            .await;
        assert_eq!(r.status, 415, "{ct}: {}", r.text);
        assert_eq!(r.error().0, "unsupported_media_type");
        assert!(r.error().2.contains("application/json"), "{}", r.error().2);
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let r = api
            .send_with(
                Method::POST,
                "/integrations",
                &[("content-type", ct)],
                &format!(r#"{{"name": "g {ct}"}}"#),
            )
            .await;
        assert_eq!(r.status, 201, "{ct}: {}", r.text);
    }
    // no body, any type: nothing to refuse
    let r = api
        .send_with(
            Method::POST,
            "/integrations",
            &[("content-type", "text/plain")],
            "",
        )
        .await;
    assert_eq!(r.status, 400, "an empty body is not an object: {}", r.text);
}

#[tokio::test]
async fn method_not_allowed_and_too_large_have_codes_of_their_own() {
    let api = Api::start().await;
    let r = api.send(Method::PATCH, "/flows", Some(KEY), None).await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert_eq!(r.error().0, "method_not_allowed");
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let r = api.post_raw("/flows", &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error().0, "payload_too_large");
}

#[tokio::test]
async fn every_definition_kind_needs_a_name() {
    let api = Api::start().await;
    for (path, body) in [
        ("/integrations", json!({})),
        ("/connections", json!({"type": "s3", "s3": {"bucket": "b"}})),
        ("/exports", json!({"type": "webhook"})),
        (
            "/imports",
            json!({"type": "s3", "_connectionId": "c", "s3": {"fileName": "x"}}),
        ),
        ("/flows", json!({"pageGenerators": [{"_exportId": "e"}]})),
    ] {
        let r = api.post(path, body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        let fields = r.fields();
        assert!(fields.contains(&"name".to_string()), "{path}: {fields:?}");
    }
    let r = api.post("/integrations", json!({"name": "   "})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn a_body_with_a_utf8_byte_order_mark_is_read() {
    // What some Windows editors write at the start of a saved bundle, sent with
    // `curl --data-binary @bundle.json`.
    let api = Api::start().await;
    let r = api
        .post_raw(
            "/integrations",
            "\u{feff}{\"_id\": \"bom\", \"name\": \"g\"}",
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["_id"], "bom");
}
