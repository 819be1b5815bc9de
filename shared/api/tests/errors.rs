//! Bad input and bad keys: the error shape, named fields, status codes.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn missing_or_wrong_bearer_is_401_but_open_routes_are_open() {
    let api = Api::start().await;
    for key in [None, Some("wrong-key"), Some("")] {
        let r = api.send(reqwest::Method::GET, "/flows", key, None).await;
        assert_eq!(r.status, 401, "{key:?}");
        assert_eq!(r.error().0, "unauthorized");
    }
    let r = api
        .send(
            reqwest::Method::POST,
            "/flows",
            Some("k-alic"),
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        api.send(reqwest::Method::GET, "/flows", Some("k-bob"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        api.send(reqwest::Method::GET, "/healthz", None, None)
            .await
            .status,
        200
    );
    let doc = api
        .send(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(doc.status, 200);
    assert!(doc.json["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc.json["paths"]["/flows/{id}/run"]["post"].is_object());
    assert!(doc.json["paths"]["/connections/{id}"]["put"].is_object());
}

#[tokio::test]
async fn no_keys_configured_refuses_everything_protected() {
    let dir = tempfile::tempdir().unwrap();
    let rt = sluice_embedded::LocalRuntime::in_memory(
        dir.path(),
        std::sync::Arc::new(sluice_core::ports::MapSecrets::default()),
    )
    .unwrap();
    let app = sluice_api::router(rt.sluice(), sluice_api::ApiConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = reqwest::Client::new();
    let r = c
        .get(format!("http://{addr}/flows"))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn api_keys_from_env_form() {
    let c = sluice_api::ApiConfig::parse("ci:abc, ops:def ,bare");
    assert_eq!(
        c.api_keys,
        vec![
            ("ci".into(), "abc".into()),
            ("ops".into(), "def".into()),
            ("key3".into(), "bare".into())
        ]
    );
    assert!(sluice_api::ApiConfig::parse("").api_keys.is_empty());
}

#[tokio::test]
async fn malformed_json_names_line_and_column() {
    let api = Api::start().await;
    let r = api.post_raw("/flows", "{\"name\": \"x\",\n  oops}").await;
    assert_eq!(r.status, 400);
    let (code, field, message) = r.error();
    assert_eq!(code, "validation_error");
    assert_eq!(field, None);
    assert!(message.contains("line 2 column"), "{message}");
}

#[tokio::test]
async fn unknown_fields_are_refused_by_name() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let mut body = flow_body("f9");
    body["colour"] = json!("blue");
    let r = api.post("/flows", body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("colour"));
    assert!(r.error().2.contains("unknown field `colour`"));

    // nested, and on a merge
    let r = api
        .put(
            "/flows/f1",
            json!({"pageGenerators": [{"_exportId": "exp1", "oops": 1}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("pageGenerators[0].oops"));
}

#[tokio::test]
async fn wrong_type_names_the_path() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let r = api.put("/flows/f1", json!({"disabled": "yes"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1.as_deref(), Some("disabled"));
    let r = api
        .post("/flows", json!({"pageGenerators": [{"_exportId": 5}]}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1.as_deref(), Some("pageGenerators[0]._exportId"));
    let r = api.post("/flows", json!([1, 2])).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn unknown_export_is_named() {
    let api = Api::start().await;
    let r = api
        .post(
            "/flows",
            json!({"name": "x", "pageGenerators": [{"_exportId": "exp123"}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let (code, field, message) = r.error();
    assert_eq!(code, "validation_error");
    assert_eq!(field.as_deref(), Some("pageGenerators[0]._exportId"));
    assert_eq!(message, "Export not found: exp123");
    // nothing was stored
    assert_eq!(api.get("/flows").await.json, json!([]));
}

#[tokio::test]
async fn every_validation_problem_is_listed() {
    let api = Api::start().await;
    let r = api
        .post(
            "/flows",
            json!({"schedule": "61 * * * *", "timezone": "Mars/Olympus", "pageGenerators": []}),
        )
        .await;
    assert_eq!(r.status, 400);
    let fields: Vec<_> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect();
    for f in ["schedule", "timezone", "pageGenerators"] {
        assert!(fields.contains(&f.to_string()), "{fields:?}");
    }
}

#[tokio::test]
async fn huge_body_is_413() {
    let api = Api::start().await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let r = api.post_raw("/flows", &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error().0, "payload_too_large");
    assert!(r.error().2.starts_with("Request body too large"));
}

#[tokio::test]
async fn unknown_route_uses_the_error_shape() {
    let api = Api::start().await;
    let r = api.get("/nothing-here").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error().0, "not_found");
}

#[tokio::test]
async fn bad_query_and_method_use_the_error_shape() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let r = api.get("/flows?disabled=maybe").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().0, "validation_error");
    let r = api.get("/flows/f1/jobs/latest?limit=lots").await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = api
        .send(reqwest::Method::PATCH, "/flows/f1", Some(KEY), None)
        .await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert_eq!(r.error().0, "method_not_allowed");
}

#[tokio::test]
async fn wrong_types_name_the_field_in_words() {
    let api = Api::start().await;
    let r = api
        .post(
            "/exports",
            json!({"_id": "e1", "name": "e", "type": "webhook", "pageSize": "10"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let (code, field, message) = r.error();
    assert_eq!(code, "validation_error");
    assert_eq!(field.as_deref(), Some("pageSize"));
    assert_eq!(
        message,
        "invalid type: string \"10\", expected a whole number ≥ 1"
    );
    let r = api
        .post(
            "/connections",
            json!({"name": "c", "type": "http", "http": {"baseURI": "http://h", "retry": {"baseDelayMs": -5}}}),
        )
        .await;
    let (_, field, message) = r.error();
    assert_eq!(field.as_deref(), Some("http.retry.baseDelayMs"));
    assert!(
        message.ends_with("expected a whole number (0 or more)"),
        "{message}"
    );
}
