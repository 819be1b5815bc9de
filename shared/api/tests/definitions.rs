//! CRUD for connections, exports, imports and integrations; secrets never shown.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn connection_secrets_are_masked_everywhere_and_kept_on_update() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;

    let mut texts = Vec::new();
    let one = api.get("/connections/conn1").await;
    assert_eq!(one.status, 200);
    assert_eq!(
        one.json["http"]["auth"]["token"]["token"],
        sluice_model::MASK
    );
    texts.push(one.text.clone());
    texts.push(api.get("/connections").await.text);

    // sending back what was shown keeps the stored secret
    let mut shown = one.json.clone();
    shown["name"] = json!("renamed");
    let r = api.put("/connections/conn1", shown).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["name"], "renamed");
    texts.push(r.text.clone());
    let stored = api.runtime.sluice().connection("conn1").await.unwrap();
    assert_eq!(
        stored
            .http
            .as_ref()
            .unwrap()
            .auth
            .as_ref()
            .unwrap()
            .token
            .as_ref()
            .unwrap()
            .token,
        SECRET
    );

    // a new secret replaces it, and the audit shows neither
    let r = api
        .put(
            "/connections/conn1",
            json!({"http": {"baseURI": t.url, "auth": {"type": "token", "token": {"token": "other-SECRET-77"}}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    texts.push(r.text.clone());
    let stored = api.runtime.sluice().connection("conn1").await.unwrap();
    assert_eq!(
        stored.http.unwrap().auth.unwrap().token.unwrap().token,
        "other-SECRET-77"
    );
    let audit = api
        .runtime
        .sluice()
        .store
        .list_audit("conn1")
        .await
        .unwrap();
    assert_eq!(audit.len(), 3);
    assert_eq!(
        audit[2].changes["http"]["newValue"]["auth"]["token"]["token"],
        sluice_model::MASK
    );
    texts.push(serde_json::to_string(&audit).unwrap());
    texts.push(api.get("/flows/f1/template").await.text);

    for text in texts {
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("other-SECRET-77"), "{text}");
    }
}

#[tokio::test]
async fn masked_secret_without_stored_value_is_refused() {
    let api = Api::start().await;
    let r = api
        .post(
            "/connections",
            json!({"type": "http", "http": {"baseURI": "http://127.0.0.1:9",
                   "auth": {"type": "basic", "basic": {"username": "u", "password": sluice_model::MASK}}}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().0, "validation_error");
}

#[tokio::test]
async fn references_are_checked_and_used_definitions_are_not_deleted() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;

    let r = api
        .post(
            "/imports",
            json!({"name": "i", "type": "http", "_connectionId": "nope", "http": {"relativeURI": "/x"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1.as_deref(), Some("_connectionId"));
    assert_eq!(r.error().2, "Connection not found: nope");

    let r = api.delete("/connections/conn1").await;
    assert_eq!(r.status, 409);
    assert!(r.error().2.contains("imp1"), "{}", r.text);
    let r = api.delete("/imports/imp1").await;
    assert_eq!(r.status, 409);

    assert_eq!(api.delete("/flows/f1").await.status, 204);
    assert_eq!(api.delete("/imports/imp1").await.status, 204);
    assert_eq!(api.delete("/exports/exp1").await.status, 204);
    assert_eq!(api.delete("/connections/conn1").await.status, 204);
    assert_eq!(api.get("/connections/conn1").await.status, 404);
    assert_eq!(api.get("/imports").await.json, json!([]));
}

#[tokio::test]
async fn exports_and_imports_update_by_merge_and_validate() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let r = api.put("/exports/exp1", json!({"pageSize": 5})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["pageSize"], 5);
    assert_eq!(r.json["type"], "webhook");
    let r = api.put("/exports/exp1", json!({"pageSize": 0})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1.as_deref(), Some("pageSize"));
    let r = api
        .put(
            "/imports/imp1",
            json!({"http": {"relativeURI": "/items/{{record.id"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("http.relativeURI"));
    // An upsert: the update request for records whose existingExtract has a value.
    let upsert = json!({"http": {"relativeURI": "/items", "existingExtract": "erpId",
        "update": {"relativeURI": "/items/{{record.erpId}}"}}});
    let r = api.put("/imports/imp1", upsert).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["http"]["update"]["method"], "PUT");
    let r = api
        .put(
            "/imports/imp1",
            json!({"ignoreExisting": true, "ignoreMissing": true}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let fields: Vec<_> = r.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap_or(""))
        .collect();
    assert!(fields.contains(&"ignoreMissing"), "{}", r.text);
    assert!(fields.contains(&"http.update"), "{}", r.text);
    let r = api
        .put(
            "/imports/imp1",
            json!({"http": {"relativeURI": "/items"}, "ignoreMissing": true}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("ignoreMissing"));
    let r = api.put("/imports/imp1", json!({"_id": "other"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1.as_deref(), Some("_id"));
}

#[tokio::test]
async fn integrations_are_free_form() {
    let api = Api::start().await;
    let r = api
        .post(
            "/integrations",
            json!({"name": "ERP sync", "description": "nightly"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["_id"].as_str().unwrap().to_string();
    let r = api
        .put(&format!("/integrations/{id}"), json!({"name": "ERP"}))
        .await;
    assert_eq!(r.json["name"], "ERP");
    assert_eq!(r.json["description"], "nightly");
    let r = api
        .post("/integrations", json!({"name": "x", "owner": "me"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1.as_deref(), Some("owner"));
    assert_eq!(
        api.get("/integrations")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(api.delete(&format!("/integrations/{id}")).await.status, 204);
    assert_eq!(api.get(&format!("/integrations/{id}")).await.status, 404);
}

#[tokio::test]
async fn import_header_credentials_are_masked_everywhere_and_kept_on_update() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let body = json!({"_connectionId": "conn1", "type": "http",
        "http": {"method": "POST", "relativeURI": "/items", "headers": [
            {"name": "X-Api-Key", "value": SECRET}, {"name": "X-Tenant", "value": "acme"}]}});
    let r = api.put("/imports/imp1", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["http"]["headers"][0]["value"], sluice_model::MASK);
    assert_eq!(
        r.json["http"]["headers"][1]["value"], "acme",
        "other headers are shown"
    );
    let mut texts = vec![r.text.clone()];
    let shown = api.get("/imports/imp1").await;
    texts.push(shown.text.clone());
    texts.push(api.get("/imports").await.text);
    texts.push(api.get("/flows/f1/template").await.text);

    // sending back what was shown keeps the stored key
    let r = api.put("/imports/imp1", shown.json.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    texts.push(r.text);
    let stored = api.runtime.sluice().import("imp1").await.unwrap();
    assert_eq!(stored.http.unwrap().headers[0].value, SECRET);
    let audit = api.runtime.sluice().store.list_audit("imp1").await.unwrap();
    texts.push(serde_json::to_string(&audit).unwrap());
    for text in texts {
        assert!(!text.contains(SECRET), "{text}");
    }

    // a mask with nothing stored behind it is refused, naming the field
    let r = api
        .post("/imports", json!({"_id": "imp2", "name": "imp2", "_connectionId": "conn1", "type": "http",
            "http": {"relativeURI": "/x", "headers": [{"name": "Authorization", "value": sluice_model::MASK}]}}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("http.headers[0].value"), "{}", r.text);
}

#[tokio::test]
async fn ftp_connections_and_exports_are_checked_naming_the_field_and_the_password_is_masked() {
    let api = Api::start().await;
    let r = api
        .post(
            "/connections",
            json!({"_id": "ftp1", "name": "ftp", "type": "ftp", "ftp": {"type": "ftps",
                   "hostURI": "ftp.example.com", "username": "u", "password": "ftp-SECRET-1"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["ftp"]["password"], sluice_model::MASK);
    assert!(!api
        .get("/connections/ftp1")
        .await
        .text
        .contains("ftp-SECRET-1"));
    for (ftp, field) in [
        (
            json!({"hostURI": "ftp.example.com", "username": "u", "password": "p", "useImplicitFtps": true}),
            "ftp.useImplicitFtps",
        ),
        (
            json!({"hostURI": "ftp://ftp.example.com", "username": "u", "password": "p"}),
            "ftp.hostURI",
        ),
        (
            json!({"hostURI": "h", "username": "u", "password": ""}),
            "ftp.password",
        ),
    ] {
        let r = api
            .post(
                "/connections",
                json!({"name": "bad", "type": "ftp", "ftp": ftp}),
            )
            .await;
        assert_eq!(
            (r.status, r.error().1.as_deref()),
            (400, Some(field)),
            "{}",
            r.text
        );
    }

    let export = |ftp: serde_json::Value, file: serde_json::Value| json!({"name": "pickup", "type": "ftp", "_connectionId": "ftp1", "ftp": ftp, "file": file});
    let r = api
        .post(
            "/exports",
            export(
                json!({"directoryPath": "out", "fileNameStartsWith": "ORDER_", "fileNameEndsWith": ".csv.gz", "backupDirectoryPath": "out/done"}),
                json!({"type": "csv", "compressionFormat": "gzip"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for (ftp, file, field) in [
        (
            json!({"directoryPath": ""}),
            json!({"type": "csv"}),
            "ftp.directoryPath",
        ),
        (
            json!({"directoryPath": "out", "fileNameStartsWith": "{{date}}"}),
            json!({"type": "csv"}),
            "ftp.fileNameStartsWith",
        ),
        (
            json!({"directoryPath": "out", "backupDirectoryPath": "out/"}),
            json!({"type": "csv"}),
            "ftp.backupDirectoryPath",
        ),
        (
            json!({"directoryPath": "out", "backupDirectoryPath": "done"}),
            json!({"type": "csv", "skipDelete": true}),
            "file.skipDelete",
        ),
    ] {
        let r = api.post("/exports", export(ftp, file)).await;
        assert_eq!(
            (r.status, r.error().1.as_deref()),
            (400, Some(field)),
            "{}",
            r.text
        );
    }
    let r = api
        .post(
            "/imports",
            json!({"name": "i", "type": "s3", "_connectionId": "ftp1", "s3": {"bucket": "b", "directoryPath": "d", "fileName": "x.csv"}, "file": {"type": "csv", "compressionFormat": "zip"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.error().1.as_deref()),
        (400, Some("file.compressionFormat")),
        "{}",
        r.text
    );
}
