//! The flows API of the product reference, over real HTTP.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn create_get_list_and_filter_flows() {
    let api = Api::start().await;
    let t = target().await;
    let created = api.seed(&t.url).await;
    assert_eq!(created["_id"], "f1");
    assert!(created["createdAt"].is_string());
    assert!(created["lastModified"].is_string());

    // _id generated when not given
    let mut body = flow_body("");
    body.as_object_mut().unwrap().remove("_id");
    body["_integrationId"] = json!("int9");
    body["disabled"] = json!(true);
    let r = api.post("/flows", body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let generated = r.json["_id"].as_str().unwrap().to_string();
    assert_eq!(generated.len(), 24);

    let got = api.get("/flows/f1").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json["pageGenerators"][0]["_exportId"], "exp1");

    let all = api.get("/flows").await;
    assert_eq!(all.json.as_array().unwrap().len(), 2);
    let by_int = api.get("/flows?_integrationId=int9").await;
    let ids: Vec<_> = by_int
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(generated)]);
    let enabled = api.get("/flows?disabled=false").await;
    let ids: Vec<_> = enabled
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("f1")]);
    let disabled = api.get("/flows?disabled=true").await;
    assert_eq!(disabled.json.as_array().unwrap().len(), 1);

    let missing = api.get("/flows/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error().0, "not_found");
    assert_eq!(missing.error().2, "Flow not found: nope");

    let dup = api.post("/flows", flow_body("f1")).await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.error().0, "conflict");
}

#[tokio::test]
async fn update_merges_enable_disable_and_schedule() {
    let api = Api::start().await;
    let t = target().await;
    let created = api.seed(&t.url).await;

    let r = api.put("/flows/f1", json!({"disabled": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["disabled"], true);
    // fields not given are kept
    assert_eq!(r.json["name"], "flow f1");
    assert_eq!(r.json["pageProcessors"][0]["_importId"], "imp1");
    assert_eq!(r.json["createdAt"], created["createdAt"]);

    let r = api.put("/flows/f1", json!({"disabled": false})).await;
    assert_eq!(r.json["disabled"], false);

    let r = api
        .put(
            "/flows/f1",
            json!({"schedule": "0 */2 * * *", "timezone": "Europe/Berlin"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["schedule"], "0 */2 * * *");
    // the schedule is recorded: the flow is due some time within the next two hours
    let store = &api.runtime.sluice().store;
    let soon = chrono::Utc::now() + chrono::Duration::hours(2) + chrono::Duration::minutes(1);
    let due = store.due_flows(soon).await.unwrap();
    assert!(due.iter().any(|(id, _)| id == "f1"), "{due:?}");

    let bad = api.put("/flows/f1", json!({"schedule": "every day"})).await;
    assert_eq!(bad.status, 400);
    let (code, field, message) = bad.error();
    assert_eq!(code, "validation_error");
    assert_eq!(field.as_deref(), Some("schedule"));
    assert!(message.starts_with("Invalid cron expression"), "{message}");

    // disabling clears the schedule
    api.put("/flows/f1", json!({"disabled": true})).await;
    let due = store.due_flows(soon).await.unwrap();
    assert!(!due.iter().any(|(id, _)| id == "f1"), "{due:?}");

    let missing = api.put("/flows/nope", json!({"disabled": true})).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn chained_flows_dependencies_descendants_and_delete() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let r = api.post("/flows", flow_body("f2")).await;
    assert_eq!(r.status, 201);

    let bad = api
        .put("/flows/f1", json!({"_runNextFlowIds": ["ghost"]}))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error().1.as_deref(), Some("_runNextFlowIds[0]"));
    assert_eq!(bad.error().2, "Flow not found: ghost");

    let r = api
        .put("/flows/f1", json!({"_runNextFlowIds": ["f2"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["_runNextFlowIds"], json!(["f2"]));

    let deps = api.get("/flows/f1/dependencies").await;
    assert_eq!(deps.status, 200);
    assert_eq!(
        deps.json,
        json!({"uses": {"exports": ["exp1"], "imports": ["imp1"], "connections": ["conn1"], "scripts": []},
               "usedBy": {"flows": []}})
    );
    let deps2 = api.get("/flows/f2/dependencies").await;
    assert_eq!(deps2.json["usedBy"]["flows"], json!(["f1"]));

    let desc = api.get("/flows/f1/descendants").await;
    assert_eq!(desc.status, 200);
    assert_eq!(desc.json["exports"][0]["_id"], "exp1");
    assert_eq!(desc.json["exports"][0]["type"], "webhook");
    assert_eq!(desc.json["imports"][0]["http"]["relativeURI"], "/items");
    assert!(!desc.text.contains(SECRET));

    // an export used by a flow cannot be deleted
    let r = api.delete("/exports/exp1").await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.error().2.contains("f1"), "{}", r.text);

    // nor a flow another flow chains to, until the chain is cut
    let r = api.delete("/flows/f2").await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        r.error().2,
        "Flow f2 is still used by flow f1 (_runNextFlowIds)"
    );
    let r = api.put("/flows/f1", json!({"_runNextFlowIds": []})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api.delete("/flows/f2").await;
    assert_eq!(r.status, 204);
    assert_eq!(api.get("/flows/f2").await.status, 404);
    assert_eq!(api.delete("/flows/f2").await.status, 404);
}

#[tokio::test]
async fn a_chain_that_would_loop_is_refused_naming_the_loop() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    for id in ["f2", "f3"] {
        assert_eq!(api.post("/flows", flow_body(id)).await.status, 201);
    }
    let r = api
        .put("/flows/f1", json!({"_runNextFlowIds": ["f2"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api
        .put("/flows/f2", json!({"_runNextFlowIds": ["f1"]}))
        .await;
    assert_eq!(r.status, 400, "A → B → A: {}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("_runNextFlowIds"));
    assert!(r.error().2.contains("f2 → f1 → f2"), "{}", r.text);

    let r = api
        .put("/flows/f2", json!({"_runNextFlowIds": ["f3"]}))
        .await;
    assert_eq!(r.status, 200, "a chain that goes on is fine: {}", r.text);
    let mut looping = flow_body("f4");
    looping["_runNextFlowIds"] = json!(["f1"]);
    assert_eq!(
        api.post("/flows", looping).await.status,
        201,
        "f4 → f1 → f2 → f3"
    );
    let r = api
        .put("/flows/f3", json!({"_runNextFlowIds": ["f4"]}))
        .await;
    assert_eq!(r.status, 400, "a longer loop: {}", r.text);
    assert!(r.error().2.contains("f3 → f4 → f1 → f2 → f3"), "{}", r.text);
    let stored = api.get("/flows/f3").await;
    assert_eq!(
        stored.json.get("_runNextFlowIds"),
        None,
        "nothing was saved"
    );
}

#[tokio::test]
async fn audit_records_who_changed_what() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    api.put("/flows/f1", json!({"disabled": true})).await;
    let r = api.get("/flows/f1/audit").await;
    assert_eq!(r.status, 200);
    let entries = r.json.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{}", r.text);
    assert_eq!(entries[0]["action"], "create");
    assert_eq!(entries[1]["action"], "update");
    assert_eq!(entries[1]["actor"], "alice");
    assert_eq!(
        entries[1]["changes"]["disabled"],
        json!({"oldValue": false, "newValue": true})
    );
    assert!(entries[1]["changes"].get("name").is_none());
}

#[tokio::test]
async fn template_round_trip_keeps_ids_and_drops_secrets() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let r = api.get("/flows/f1/template").await;
    assert_eq!(r.status, 200);
    assert!(!r.text.contains(SECRET), "{}", r.text);
    assert_eq!(r.json["flows"][0]["_id"], "f1");
    assert_eq!(r.json["connections"][0]["_id"], "conn1");
    assert_eq!(
        r.json["connections"][0]["http"]["auth"]["token"]["token"],
        sluice_model::MASK
    );

    // into an empty installation the masked secret must be supplied
    let other = Api::start().await;
    let refused = other.post("/flows/import-template", r.json.clone()).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.error().1.as_deref(), Some("connections[0]"));
    let mut supplied = r.json.clone();
    supplied["connections"][0]["http"]["auth"]["token"]["token"] = json!("new-secret");
    let ok = other.post("/flows/import-template", supplied).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    assert_eq!(ok.json["flows"], json!(["f1"]));
    assert_eq!(other.get("/flows/f1").await.json["name"], "flow f1");

    // back into the same installation the stored secret is kept
    let again = api.post("/templates/import", r.json.clone()).await;
    assert_eq!(again.status, 201, "{}", again.text);
    let stored = api.runtime.sluice().connection("conn1").await.unwrap();
    assert_eq!(
        stored.http.unwrap().auth.unwrap().token.unwrap().token,
        SECRET
    );
}

#[tokio::test]
async fn callback_credentials_in_flows_are_masked_and_kept() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let hook = json!([{"url": "http://127.0.0.1:9/done",
                       "headers": [{"name": "Authorization", "value": format!("Bearer {SECRET}")}]}]);
    let r = api.put("/flows/f1", json!({"afterProcess": hook})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut texts = vec![r.text.clone()];
    let got = api.get("/flows/f1").await;
    assert_eq!(
        got.json["afterProcess"][0]["headers"][0]["value"],
        sluice_model::MASK
    );
    texts.push(got.text.clone());
    texts.push(api.get("/flows").await.text);
    texts.push(api.get("/flows/f1/audit").await.text);
    let template = api.get("/flows/f1/template").await;
    texts.push(template.text.clone());
    // sending back what was shown keeps the header
    let r = api.put("/flows/f1", got.json.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    texts.push(r.text);
    let stored = api.runtime.sluice().flow("f1").await.unwrap();
    assert_eq!(
        stored.after_process[0].headers[0].value,
        format!("Bearer {SECRET}")
    );
    // the template goes back in, keeping the stored header
    let r = api
        .post("/flows/import-template", template.json.clone())
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let stored = api.runtime.sluice().flow("f1").await.unwrap();
    assert_eq!(
        stored.after_process[0].headers[0].value,
        format!("Bearer {SECRET}")
    );
    for text in texts {
        assert!(!text.contains(SECRET), "{text}");
    }
}
