//! The `scripts` resource: CRUD, audit, references from hooks (checked on save, refused on
//! delete while used), dependencies, and templates that carry the scripts a flow calls.

mod common;
use common::*;
use serde_json::json;

const CONTENT: &str = "function preMap(options) { return options.data.map(d => ({data: d})); }";

#[tokio::test]
async fn scripts_are_created_read_updated_audited_and_deleted() {
    let api = Api::start().await;
    let r = api
        .post(
            "/scripts",
            json!({"_id": "s1", "name": "hooks", "content": CONTENT}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.json["createdAt"].is_string());
    assert_eq!(api.get("/scripts/s1").await.json["content"], CONTENT);
    assert_eq!(api.get("/scripts").await.json.as_array().unwrap().len(), 1);

    let r = api
        .put("/scripts/s1", json!({"content": "function f() {}"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["name"], "hooks", "fields not given stay");

    let r = api
        .post(
            "/scripts",
            json!({"_id": "s2", "name": "empty", "content": " "}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1.as_deref(), Some("content"), "{}", r.text);
    let r = api
        .post(
            "/scripts",
            json!({"_id": "s3", "name": "x", "content": CONTENT, "lang": "js"}),
        )
        .await;
    assert_eq!(r.status, 400, "unknown fields are refused: {}", r.text);

    let audit = api.runtime.sluice().store.list_audit("s1").await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["create", "update"]);
    assert_eq!(audit[1].changes["content"]["newValue"], "function f() {}");

    assert_eq!(api.delete("/scripts/s1").await.status, 204);
    assert_eq!(api.get("/scripts/s1").await.status, 404);
}

#[tokio::test]
async fn hooks_must_name_stored_scripts_and_a_used_script_cannot_be_deleted() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let hook = json!({"_scriptId": "s1", "function": "preMap"});
    let r = api
        .put("/imports/imp1", json!({"hooks": {"preMap": hook}}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error().1.as_deref(),
        Some("hooks.preMap._scriptId"),
        "{}",
        r.text
    );
    assert!(r.text.contains("Script not found: s1"), "{}", r.text);
    let bad = json!({"_scriptId": "s1", "function": "pre map"});
    let r = api
        .put("/imports/imp1", json!({"hooks": {"preMap": bad}}))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.fields().contains(&"hooks.preMap.function".to_string()),
        "{}",
        r.text
    );

    let r = api
        .post(
            "/scripts",
            json!({"_id": "s1", "name": "hooks", "content": CONTENT}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api
        .put("/imports/imp1", json!({"hooks": {"preMap": hook}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut flow = flow_body("f1");
    flow["pageProcessors"][0]["hooks"] =
        json!({"postResponseMap": {"_scriptId": "s1", "function": "prm"}});
    let r = api.put("/flows/f1", flow).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = api.delete("/scripts/s1").await;
    assert_eq!(r.status, 409);
    assert!(
        r.text.contains("import imp1") && r.text.contains("flow f1"),
        "{}",
        r.text
    );

    let deps = api.get("/flows/f1/dependencies").await;
    assert_eq!(deps.status, 200, "{}", deps.text);
    assert_eq!(deps.json["uses"]["scripts"], json!(["s1"]));
}

#[tokio::test]
async fn a_flow_template_carries_its_scripts_and_imports_them_back() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    api.post(
        "/scripts",
        json!({"_id": "s1", "name": "hooks", "content": CONTENT}),
    )
    .await;
    let hook = json!({"_scriptId": "s1", "function": "preMap"});
    let r = api
        .put("/imports/imp1", json!({"hooks": {"preMap": hook}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let template = api.get("/flows/f1/template").await;
    assert_eq!(template.status, 200, "{}", template.text);
    assert_eq!(template.json["scripts"][0]["content"], CONTENT);

    let other = Api::start().await;
    let mut bundle = template.json.clone();
    bundle["connections"][0]["http"]["auth"]["token"]["token"] = json!("tok");
    let r = other.post("/flows/import-template", bundle.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["scripts"], json!(["s1"]));
    assert_eq!(other.get("/scripts/s1").await.json["content"], CONTENT);

    // A template whose hook names a script it does not carry is refused, naming the field.
    bundle["scripts"] = json!([]);
    let third = Api::start().await;
    let r = third.post("/flows/import-template", bundle).await;
    assert_eq!(r.status, 400);
    assert!(
        r.fields()
            .contains(&"imports[0].hooks.preMap._scriptId".to_string()),
        "{}",
        r.text
    );
}
