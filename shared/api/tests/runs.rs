//! Runs through the whole local pipeline, jobs and their errors, the watermark.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn run_delivers_records_and_jobs_latest_shows_the_job() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;

    let r = api
        .post(
            "/flows/f1/run",
            json!({"records": [{"id": 1}, {"id": 2}, {"id": 3}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let job_id = r.json["_jobId"].as_str().unwrap().to_string();
    assert!(r.json["flowExecutionGroupId"].is_string(), "{}", r.text);

    let job = api
        .runtime
        .wait_for_job(&job_id, Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(job.num_success, 3);
    assert_eq!(t.received.lock().unwrap().len(), 3);

    let latest = api.get("/flows/f1/jobs/latest").await;
    assert_eq!(latest.status, 200);
    let jobs = latest.json.as_array().unwrap();
    assert_eq!(jobs[0]["_id"], json!(job_id));
    assert_eq!(jobs[0]["status"], "completed");
    assert_eq!(jobs[0]["numSuccess"], 3);
    assert_eq!(jobs[0]["numError"], 0);
    assert!(jobs[0]["startedAt"].is_string());
    assert!(jobs[0]["endedAt"].is_string());

    let one = api.get(&format!("/jobs/{job_id}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json["_flowId"], "f1");
    let errors = api.get(&format!("/jobs/{job_id}/errors")).await;
    assert_eq!(errors.json, json!({"items": []}));
    assert_eq!(api.get("/jobs/nope").await.status, 404);
    assert_eq!(api.get("/flows/nope/jobs/latest").await.status, 404);
}

#[tokio::test]
async fn second_manual_run_while_running_is_409() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    // Someone holds the run lock (a run in progress elsewhere).
    let s = api.runtime.sluice();
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::seconds(600);
    assert!(s
        .store
        .acquire_lock("f1", "other-run", now, Duration::from_secs(600))
        .await
        .unwrap());
    let r = api
        .post("/flows/f1/run", json!({"records": [{"id": 1}]}))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error().0, "conflict");
    assert_eq!(
        r.error().2,
        format!(
            "Flow is currently running: its run lock is held by other-run until {}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        "names who holds the flow and until when"
    );
    s.store.release_lock("f1", "other-run").await.unwrap();
    let r = api
        .post("/flows/f1/run", json!({"records": [{"id": 1}]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn run_with_export_ids_and_date_range() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let r = api
        .post(
            "/flows/f1/run",
            json!({"_exportIds": ["exp1"], "startDate": "2026-01-01T00:00:00Z",
                   "endDate": "2026-01-02T00:00:00Z", "records": [{"id": 7}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["_exportId"], "exp1");
    let job_id = r.json["_jobId"].as_str().unwrap();
    let job = api
        .runtime
        .wait_for_job(job_id, Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(job.num_success, 1);

    let r = api
        .post("/flows/f1/run", json!({"_exportIds": ["exp-other"]}))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("_exportIds[0]"));
    let r = api
        .post("/flows/f1/run", json!({"startDate": "yesterday"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1.as_deref(), Some("startDate"));
    let r = api
        .post(
            "/flows/f1/run",
            json!({"startDate": "2026-02-01T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error().0, "validation_error");
    assert_eq!(r.error().1.as_deref(), Some("endDate"));
    let r = api.post("/flows/nope/run", json!({})).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn failed_records_are_listed_and_retried() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    // Every record fails with 404 at the target.
    let job_id = api.failed_run(2).await.id;
    let errors = api.get(&format!("/jobs/{job_id}/errors")).await;
    let list = errors.json["items"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", errors.text);
    assert!(!errors.text.contains(SECRET), "{}", errors.text);

    // fix the import, retry one named error
    api.put(
        "/imports/imp1",
        json!({"http": {"method": "POST", "relativeURI": "/items"}}),
    )
    .await;
    let first = list[0]["_id"].as_str().unwrap();
    let r = api
        .post(
            &format!("/jobs/{job_id}/retry"),
            json!({"errorIds": [first]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let retry_job = r.json["_jobId"].as_str().unwrap();
    let job = api
        .runtime
        .wait_for_job(retry_job, Duration::from_secs(20), |_| {})
        .await
        .unwrap();
    assert_eq!(job.num_success, 1);
    assert_eq!(t.received.lock().unwrap().len(), 1);
    let r = api
        .post(&format!("/jobs/{job_id}/retry"), json!({"bogus": 1}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1.as_deref(), Some("bogus"));
}

#[tokio::test]
async fn last_export_date_time_reads_the_watermark() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let r = api.get("/flows/f1/lastExportDateTime").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json,
        json!({"lastExportDateTime": null, "exports": {"exp1": null}})
    );
    let key = sluice_core::runs::watermark::key("f1", "exp1");
    api.runtime
        .sluice()
        .store
        .put_state(&key, &json!("2026-03-04T05:06:07Z"))
        .await
        .unwrap();
    let r = api.get("/flows/f1/lastExportDateTime").await;
    assert_eq!(
        r.json,
        json!({"lastExportDateTime": "2026-03-04T05:06:07.000Z",
               "exports": {"exp1": "2026-03-04T05:06:07.000Z"}}),
        "one time format everywhere: RFC 3339, UTC, milliseconds"
    );
    assert_eq!(api.get("/flows/nope/lastExportDateTime").await.status, 404);
}

#[tokio::test]
async fn manual_runs_are_audited_with_the_caller() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let r = api
        .send(
            reqwest::Method::POST,
            "/flows/f1/run",
            Some("k-bob"),
            Some(br#"{"records": [{"id": 1}]}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let audit = api.get("/flows/f1/audit").await;
    let last = audit.json.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "run");
    assert_eq!(last["actor"], "bob");
    assert_eq!(last["changes"]["_jobId"], r.json["_jobId"]);
}

#[tokio::test]
async fn preview_shows_each_step_and_sends_stores_and_counts_nothing() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    // preMap runs in a preview: the mapping reads what it made of the record.
    let script = "function preMap(o) { return o.data.map(d => ({data: Object.assign({}, d, {via: 'hook'})})); }";
    let r = api
        .post(
            "/scripts",
            json!({"_id": "s1", "name": "s1", "content": script}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = api
        .put(
            "/imports/imp1",
            json!({"mapping": {"fields": [{"extract": "id", "generate": "ref", "dataType": "string"},
                                          {"extract": "via", "generate": "via"}]},
                   "hooks": {"preMap": {"_scriptId": "s1", "function": "preMap"}},
                   "responseMapping": {"fields": [{"extract": "id", "generate": "itemId"}]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = api
        .put(
            "/flows/f1",
            json!({"routers": [{"id": "size", "branches": [
                {"name": "big", "inputFilter": {"type": "cel", "expression": "record.id > 1"},
                 "pageProcessors": [{"type": "import", "_importId": "imp1"}]},
                {"name": "rest"}]}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let body = json!({"records": [{"id": 1}, {"id": 2}],
                      "reply": {"status": 201, "body": {"id": "d-9"}}});
    let r = api.post("/flows/f1/preview", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        !r.text.contains(SECRET),
        "credentials are masked: {}",
        r.text
    );
    let records = r.json["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    let steps = records[1]["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "export",
            "pageProcessors[0]",
            "routers[0]",
            "routers[0].branches[0].pageProcessors[0]"
        ]
    );
    let first = &steps[1];
    assert_eq!(first["mapped"], json!({"ref": "2", "via": "hook"}));
    assert_eq!(first["request"]["url"], format!("{}/items", t.url));
    assert_eq!(first["request"]["body"], "{\"ref\":\"2\",\"via\":\"hook\"}");
    assert!(
        first["request"]["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["Authorization", "********"])),
        "{}",
        first["request"]
    );
    assert_eq!(first["extracted"], json!({"itemId": "d-9"}));
    assert_eq!(first["outcome"], json!({"outcome": "goesOn"}));
    assert_eq!(steps[2]["branches"], json!(["size: big"]));
    assert_eq!(steps[3]["outcome"], json!({"outcome": "succeeds"}));
    let small = records[0]["steps"].as_array().unwrap();
    assert_eq!(small[2]["outcome"]["outcome"], "ignored", "{}", r.text);

    // Without a reply the records stop at their first request.
    let r = api
        .post("/flows/f1/preview", json!({"records": [{"id": 3}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let steps = r.json["records"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{}", r.text);
    assert_eq!(steps[1]["outcome"], json!({"outcome": "awaitsReply"}));

    assert!(t.received.lock().unwrap().is_empty(), "nothing was sent");
    let jobs = api
        .runtime
        .sluice()
        .store
        .list_jobs("f1", 10)
        .await
        .unwrap();
    assert!(jobs.is_empty(), "no job was stored: {jobs:?}");
    assert_eq!(api.post("/flows/nope/preview", json!({})).await.status, 404);
}
