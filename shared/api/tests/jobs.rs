//! The operator's jobs and errors workflow: jobs across flows with filters and paging; a
//! job's errors paged and filtered, naming their step; resolved and unresolved by id or in
//! bulk, tagged, their retry data edited before a retry; downloaded as CSV. And a disabled
//! flow: never on schedule, still by hand.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn errors_page_filter_and_name_their_step() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let job = api.failed_run(7).await.id;

    let mut seen = Vec::new();
    let mut path = format!("/jobs/{job}/errors?limit=3");
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(page.json["items"].as_array().unwrap().len() <= 3);
        seen.extend(ids(&page.json));
        match page.json["nextCursor"].as_str() {
            Some(c) => path = format!("/jobs/{job}/errors?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    let all = api.get(&format!("/jobs/{job}/errors?limit=100")).await;
    let first = &all.json["items"][0];
    assert_eq!(first["processorIndex"], 0);
    assert_eq!(first["_importId"], "imp1");
    assert_eq!(first["stepName"], "post items", "the error names its step");

    let by = |q: &str| format!("/jobs/{job}/errors?{q}");
    assert_eq!(ids(&api.get(&by("processorIndex=0")).await.json).len(), 7);
    assert_eq!(ids(&api.get(&by("processorIndex=1")).await.json).len(), 0);
    let code = first["code"].as_str().unwrap();
    assert_eq!(
        ids(&api.get(&by(&format!("code={code}"))).await.json).len(),
        7
    );
    assert_eq!(ids(&api.get(&by("code=template")).await.json).len(), 0);
    assert_eq!(ids(&api.get(&by("resolved=true")).await.json).len(), 0);
    let r = api.get(&by("limit=0")).await;
    assert_eq!((r.status, r.error().1.as_deref()), (400, Some("limit")));
    let r = api.get(&by("code=http_500")).await;
    assert_eq!(r.status, 400, "a code there is not is refused: {}", r.text);
    assert!(
        r.text.contains("delivery_unknown"),
        "naming the codes: {}",
        r.text
    );
    let r = api.get(&by("colour=red")).await;
    assert_eq!(r.status, 400, "unknown filters are refused: {}", r.text);
}

#[tokio::test]
async fn errors_are_resolved_tagged_edited_and_the_retry_sends_the_edit() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let job = api.failed_run(3).await.id;
    let list = ids(&api.get(&format!("/jobs/{job}/errors")).await.json);

    // one by id, then all, then open again
    let r = api
        .post(
            &format!("/jobs/{job}/errors/resolve"),
            json!({"errorIds": [list[0]]}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["updated"].clone()),
        (200, json!(1)),
        "{}",
        r.text
    );
    let resolved = api.get(&format!("/jobs/{job}/errors?resolved=true")).await;
    assert_eq!(ids(&resolved.json), [list[0].clone()]);
    let r = api
        .send(
            reqwest::Method::POST,
            &format!("/jobs/{job}/errors/resolve"),
            Some(KEY),
            None,
        )
        .await;
    assert_eq!(r.json["updated"], 3, "{}", r.text);
    let r = api
        .post(&format!("/jobs/{job}/errors/unresolve"), json!({}))
        .await;
    assert_eq!(r.json["updated"], 3, "{}", r.text);
    let r = api
        .post(
            &format!("/jobs/{job}/errors/resolve"),
            json!({"errorIds": [list[1], "nope"]}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.error().1.as_deref(), Some("errorIds[1]"));
    assert_eq!(
        ids(&api
            .get(&format!("/jobs/{job}/errors?resolved=true"))
            .await
            .json)
        .len(),
        0,
        "a refused bulk change changes nothing"
    );

    // edit the retry data and tag it
    let path = format!("/jobs/{job}/errors/{}", list[0]);
    let r = api
        .put(
            &path,
            json!({"record": {"id": 0, "fixed": true}, "tags": ["fixed-by-ops"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["record"], json!({"id": 0, "fixed": true}));
    let stored = api.get(&path).await;
    assert_eq!(stored.json["tags"], json!(["fixed-by-ops"]));
    assert_eq!(stored.json["record"]["fixed"], true);
    let r = api.put(&path, json!({"recrod": {}})).await;
    assert_eq!((r.status, r.error().1.as_deref()), (400, Some("recrod")));
    assert_eq!(
        api.get(&format!("/jobs/{job}/errors/nope")).await.status,
        404
    );

    // fix the import; retrying the edited error sends the edited record
    api.put(
        "/imports/imp1",
        json!({"http": {"method": "POST", "relativeURI": "/items"}}),
    )
    .await;
    let r = api
        .post(
            &format!("/jobs/{job}/retry"),
            json!({"errorIds": [list[0]]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let done = api.wait(r.json["_jobId"].as_str().unwrap()).await;
    assert_eq!(done.num_success, 1);
    assert_eq!(
        *t.received.lock().unwrap(),
        vec![json!({"id": 0, "fixed": true})]
    );
}

#[tokio::test]
async fn errors_download_as_csv() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let job = api.failed_run(4).await.id;
    let r = api
        .get(&format!("/jobs/{job}/errors?format=csv&limit=1"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.content_type.as_deref(), Some("text/csv; charset=utf-8"));
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, sluice_api::routes::errors_csv::COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4, "every error, not one page");
    let record: Value = serde_json::from_str(&rows[0][12]).unwrap();
    assert!(record["id"].is_number());
    assert_eq!(&rows[0][2], "imp1");
    assert_eq!(&rows[0][13], "404");
    let r = api.get(&format!("/jobs/{job}/errors?format=xml")).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn jobs_of_every_flow_are_listed_newest_first_with_filters_and_paging() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let r = api.post("/flows", flow_body("f2")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut started = Vec::new();
    for flow in ["f1", "f2", "f1", "f2", "f1"] {
        let id = api.run_and_wait(flow, json!([{"id": 1}])).await.id;
        started.push(id);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let newest_first: Vec<String> = started.iter().rev().cloned().collect();
    let mut seen = Vec::new();
    let mut path = "/jobs?limit=2".to_string();
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        seen.extend(ids(&page.json));
        match page.json["nextCursor"].as_str() {
            Some(c) => path = format!("/jobs?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    let f2 = ids(&api.get("/jobs?_flowId=f2").await.json);
    assert_eq!(f2, [started[3].clone(), started[1].clone()]);
    assert_eq!(ids(&api.get("/jobs?status=completed").await.json).len(), 5);
    assert_eq!(ids(&api.get("/jobs?status=failed").await.json).len(), 0);
    let job: Value = api.get(&format!("/jobs/{}", started[2])).await.json;
    let created = job["createdAt"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && created.len() == 24,
        "RFC 3339 UTC ms: {created}"
    );
    let since = api.get(&format!("/jobs?since={created}")).await;
    assert_eq!(ids(&since.json), newest_first[..3]);
    let until = api.get(&format!("/jobs?until={created}")).await;
    assert_eq!(ids(&until.json), newest_first[3..]);
    let r = api.get("/jobs?status=sleeping").await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn a_disabled_flow_runs_by_hand_but_not_on_schedule() {
    let api = Api::start().await;
    let t = target().await;
    api.seed(&t.url).await;
    let r = api
        .put(
            "/flows/f1",
            json!({"disabled": true, "schedule": "* * * * *"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = api.runtime.sluice();
    // A due time stored before it was disabled must not start a run.
    s.store
        .set_next_run(
            "f1",
            Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
        )
        .await
        .unwrap();
    let started = sluice_core::stages::trigger::schedule::tick(&s)
        .await
        .unwrap();
    assert!(started.is_empty(), "{started:?}");
    assert!(ids(&api.get("/jobs").await.json).is_empty());

    let r = api
        .post("/flows/f1/run", json!({"records": [{"id": 7}]}))
        .await;
    assert_eq!(
        r.status, 201,
        "a disabled flow still runs by hand: {}",
        r.text
    );
    let done = api.wait(r.json["_jobId"].as_str().unwrap()).await;
    assert_eq!(done.num_success, 1);
}

#[tokio::test]
async fn a_jobs_pending_automatic_retry_is_shown_and_can_be_canceled() {
    let api = Api::start().await;
    let busy = sluice_testkit::http::TestServer::always(503, json!({"error": "busy"})).await;
    api.seed(&busy.base_url).await;
    let r = api
        .put(
            "/flows/f1",
            json!({"autoRetry": {"scheduleSeconds": [0], "maxAttempts": 0}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("autoRetry.scheduleSeconds[0]") && r.text.contains("autoRetry.maxAttempts"),
        "the fields are named: {}",
        r.text
    );
    let r = api
        .put(
            "/flows/f1",
            json!({"autoRetry": {"scheduleSeconds": [3600], "maxAttempts": 3}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["autoRetry"]["on"], true);

    let job = api.run_and_wait("f1", json!([{"id": 1}, {"id": 2}])).await;
    assert_eq!(job.num_error, 2, "{job:?}");
    let shown = api.get(&format!("/jobs/{}", job.id)).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    let next: chrono::DateTime<chrono::Utc> = shown.json["nextRetryAt"]
        .as_str()
        .expect("nextRetryAt shown")
        .parse()
        .unwrap();
    let ended = job.ended_at.unwrap();
    assert!(
        next > ended + chrono::Duration::minutes(59)
            && next <= ended + chrono::Duration::minutes(61),
        "an hour after the job: {next} vs {ended}"
    );

    let canceled = api
        .post(&format!("/jobs/{}/cancel", job.id), json!({}))
        .await;
    assert_eq!(canceled.status, 200, "{}", canceled.text);
    assert!(
        canceled.json.get("nextRetryAt").is_none(),
        "{}",
        canceled.text
    );
    assert_eq!(canceled.json["status"], "completed_with_errors");
    let again = api
        .post(&format!("/jobs/{}/cancel", job.id), json!({}))
        .await;
    assert_eq!(again.status, 409, "nothing left to cancel: {}", again.text);
}
