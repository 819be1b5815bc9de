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
        r.error().2.contains(&format!("running job {job}")),
        "{}",
        r.text
    );
    for path in ["/exports/exp1", "/imports/imp1", "/connections/conn1"] {
        let r = api.delete(path).await;
        assert_eq!(r.status, 409, "{path}: {}", r.text);
    }

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
