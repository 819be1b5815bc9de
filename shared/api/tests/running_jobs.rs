//! What the API does with a flow while its job runs: a delete of the flow is refused naming
//! the job (and so are deletes of what it uses), and the job can be canceled, after which no
//! record of it is sent and its counts still cover every record.

mod common;

use common::*;
use serde_json::json;
use sluice_core::runs::start_run;
use sluice_model::{JobStatus, RunKind, RunRequest};
use sluice_testkit::http::{Answer, TestServer};
use std::time::{Duration, Instant};

/// Conn1 points at `sink`, which answers each record after `delay`, one at a time.
async fn seed_slow(api: &Api, delay: Duration) -> TestServer {
    let sink = TestServer::start(move |_, _| Answer::Slow {
        delay,
        then: Box::new(Answer::json(201, json!({}))),
    })
    .await;
    api.seed(&sink.base_url).await;
    let r = api
        .put("/connections/conn1", json!({"concurrencyLevel": 1}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    sink
}

async fn run(api: &Api, n: usize) -> String {
    let records: Vec<_> = (0..n).map(|i| json!({"n": i})).collect();
    let r = api
        .post("/flows/f1/run", json!({ "records": records }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["_jobId"].as_str().unwrap().to_string()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_flow_or_what_it_uses_is_refused_naming_the_job() {
    let api = Api::start().await;
    let sink = seed_slow(&api, Duration::from_millis(150)).await;
    let job = run(&api, 6).await;
    until("the first send", || !sink.received().is_empty()).await;

    let r = api.delete("/flows/f1").await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error().0, "conflict");
    assert!(
        r.error()
            .2
            .contains(&format!("Flow is currently running: job {job}")),
        "{}",
        r.text
    );
    assert_deletes_refused_naming(&api, &job).await;

    api.runtime
        .wait_for_job(&job, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    api.runtime
        .wait_idle(Duration::from_secs(30))
        .await
        .unwrap();
    let done = api.get(&format!("/jobs/{job}")).await;
    assert_eq!(
        (
            done.json["status"].clone(),
            done.json["numSuccess"].clone(),
            done.json["numError"].clone()
        ),
        (json!("completed"), json!(6), json!(0)),
        "every delivered record counted a success: {}",
        done.text
    );
    let r = api.delete("/flows/f1").await;
    assert_eq!(r.status, 204, "once the job ended: {}", r.text);
}

/// Deleting exp1, imp1 or conn1 is a 409 that names running job `job`.
async fn assert_deletes_refused_naming(api: &Api, job: &str) {
    for path in ["/exports/exp1", "/imports/imp1", "/connections/conn1"] {
        let r = api.delete(path).await;
        assert_eq!(r.status, 409, "{path}: {}", r.text);
        assert!(
            r.error().2.contains(&format!("running job {job}")),
            "{path}: {}",
            r.text
        );
    }
}

/// The flow is changed mid-run to read another export into another import over another
/// connection: what the running job started with still cannot be deleted until it ends, and
/// every record it delivered counts as a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_running_job_started_with_is_not_deleted_even_once_the_flow_moved_on() {
    let api = Api::start().await;
    let sink = seed_slow(&api, Duration::from_millis(150)).await;
    let job = run(&api, 6).await;
    until("the first send", || !sink.received().is_empty()).await;
    for (path, body) in [
        (
            "/connections",
            json!({"_id": "conn2", "name": "other", "type": "http",
            "http": {"baseURI": sink.base_url}}),
        ),
        (
            "/exports",
            json!({"_id": "exp2", "name": "other in", "type": "webhook"}),
        ),
        (
            "/imports",
            json!({"_id": "imp2", "name": "other out", "type": "http",
            "_connectionId": "conn2", "http": {"method": "POST", "relativeURI": "/items"}}),
        ),
    ] {
        let r = api.post(path, body).await;
        assert_eq!(r.status, 201, "{path}: {}", r.text);
    }
    let r = api
        .put(
            "/flows/f1",
            json!({"pageGenerators": [{"_exportId": "exp2"}],
                   "pageProcessors": [{"type": "import", "_importId": "imp2"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_deletes_refused_naming(&api, &job).await;

    let done = api.wait(&job).await;
    api.runtime
        .wait_idle(Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        (done.status, done.num_success, done.num_error),
        (JobStatus::Completed, 6, 0),
        "{done:?}"
    );
    assert_eq!(sink.received().len(), 6);
    for path in ["/imports/imp1", "/exports/exp1", "/connections/conn1"] {
        let r = api.delete(path).await;
        assert_eq!(r.status, 204, "{path}, once the job ended: {}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_job_sends_nothing_more_and_its_counts_stay_exact() {
    let api = Api::start().await;
    let sink = seed_slow(&api, Duration::from_millis(200)).await;
    let job = run(&api, 20).await;
    until("three sends", || sink.received().len() >= 3).await;
    // The flow's schedule comes due meanwhile: that run waits for this job.
    let sluice = api.runtime.sluice();
    let waiting = start_run(&sluice, "f1", RunRequest::default(), RunKind::Schedule)
        .await
        .unwrap();
    assert!(
        waiting.is_none(),
        "the flow is busy: the scheduled run waits"
    );

    let r = api.post(&format!("/jobs/{job}/cancel"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "canceled");
    let sent_by_then = sink.received().len();
    api.runtime
        .wait_idle(Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        sink.received().len(),
        sent_by_then,
        "no record of the canceled job was sent after the cancel"
    );
    let after = api.get(&format!("/jobs/{job}")).await.json;
    assert_eq!(after["status"], "canceled");
    let (s, e, i) = (
        after["numSuccess"].as_u64().unwrap(),
        after["numError"].as_u64().unwrap(),
        after["numIgnore"].as_u64().unwrap(),
    );
    assert_eq!(
        s as usize, sent_by_then,
        "each record sent counted once: {after}"
    );
    assert_eq!(
        (e, s + e + i),
        (0, 20),
        "the rest count as not sent: {after}"
    );

    // The waiting scheduled run started once the cancel freed the flow.
    let jobs = sluice.store.list_jobs("f1", 10).await.unwrap();
    assert!(
        jobs.iter()
            .any(|j| j.trigger == RunKind::Schedule && j.status == JobStatus::Completed),
        "{jobs:#?}"
    );

    let r = api.post(&format!("/jobs/{job}/cancel"), json!({})).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.error().2.contains("already finished"), "{}", r.text);
    assert_eq!(api.post("/jobs/nope/cancel", json!({})).await.status, 404);
    // The flow is free again at once.
    let again = run(&api, 1).await;
    api.runtime
        .wait_for_job(&again, Duration::from_secs(30), |_| {})
        .await
        .unwrap();
    let audit = api.get("/flows/f1/audit").await;
    assert!(
        audit
            .json
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "cancel"),
        "{}",
        audit.text
    );
}
