//! Automatic retry (a flow's `autoRetry`) end to end over the local runtime, against an HTTP
//! target on loopback that declines some records with 503 for their first requests: the
//! retry jobs run on the schedule (one-second delays; the test drives the minute tick once
//! each is due), records that succeeded are never sent again, the chain stops at the
//! maximum, and records that may have arrived (or are wrong) are not retried by themselves.

use serde_json::{json, Value};
use sluice_core::stages::trigger::schedule;
use sluice_e2e::{http_bundle, merge, orders, Answer, Harness, TestServer};
use sluice_model::{Job, JobStatus, RunKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Requests the target got, per record name.
type Counts = Arc<Mutex<HashMap<String, usize>>>;

/// A target that answers 503 to the first `fails` requests of each record `declined` picks,
/// 200 to the rest.
async fn flaky_target(declined: fn(&Value) -> bool, fails: usize) -> (TestServer, Counts) {
    let counts: Counts = Arc::default();
    let seen = counts.clone();
    let server = TestServer::start(move |_, r| {
        let body = r.json();
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let n = {
            let mut c = seen.lock().unwrap();
            let n = c.entry(name).or_default();
            *n += 1;
            *n
        };
        if declined(&body) && n <= fails {
            Answer::json(503, json!({"error": "busy"}))
        } else {
            Answer::json(200, json!({"ok": true}))
        }
    })
    .await;
    (server, counts)
}

/// The http bundle with one attempt per request (so a 503 is the record's error at once) and
/// the flow's `autoRetry` set to `auto_retry`.
async fn harness(base: &str, import: Value, auto_retry: Value) -> Harness {
    let mut bundle = http_bundle(base, import, json!({"http": {"retry": {"maxAttempts": 1}}}));
    merge(&mut bundle["flows"][0], json!({"autoRetry": auto_retry}));
    let h = Harness::new();
    h.load(bundle).await;
    h
}

/// Waits until the automatic retry of `job` is due, runs the tick, and waits for the retry
/// job it started. `None` when no retry of `job` is pending.
async fn next_retry(h: &Harness, job: &Job) -> Option<Job> {
    let sluice = h.sluice();
    let due = sluice.store.retry_at(&job.id).await.unwrap()?;
    let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let started = schedule::tick(&sluice).await.unwrap();
    assert_eq!(started.len(), 1, "one retry started: {started:?}");
    Some(h.wait(&started[0].job_id).await)
}

fn odd(record: &Value) -> bool {
    record["qty"].as_u64().is_some_and(|q| q % 2 == 1)
}

#[tokio::test]
async fn declined_records_are_retried_on_the_schedule_and_successes_are_never_sent_again() {
    let (server, counts) = flaky_target(odd, 2).await;
    let h = harness(
        &server.base_url,
        json!({}),
        json!({"scheduleSeconds": [1], "maxAttempts": 5}),
    )
    .await;
    let first = h.run("f", orders(6)).await;
    assert_eq!((first.num_success, first.num_error), (3, 3), "{first:?}");

    let one = next_retry(&h, &first).await.expect("a retry is pending");
    assert_eq!(one.trigger, RunKind::AutoRetry);
    assert_eq!(one.retry_of.as_deref(), Some(first.id.as_str()));
    let attempt = one
        .auto_retry
        .clone()
        .expect("an automatic retry says its attempt");
    assert_eq!(
        (
            attempt.attempt,
            attempt.max_attempts,
            attempt.original_job_id.as_str()
        ),
        (1, 5, first.id.as_str())
    );
    assert_eq!((one.num_success, one.num_error), (0, 3), "still declined");
    assert!(
        h.errors(&first.id).await.iter().all(|e| e.resolved),
        "the retried errors are resolved"
    );

    let two = next_retry(&h, &one)
        .await
        .expect("a second retry is pending");
    assert_eq!((two.num_success, two.num_error), (3, 0), "{two:?}");
    assert_eq!(two.status, JobStatus::Completed);
    assert_eq!(two.retry_of.as_deref(), Some(one.id.as_str()));
    assert_eq!(two.auto_retry.as_ref().map(|a| a.attempt), Some(2));
    assert_eq!(
        two.auto_retry.as_ref().map(|a| a.original_job_id.as_str()),
        Some(first.id.as_str()),
        "the chain keeps its first job"
    );
    assert!(
        next_retry(&h, &two).await.is_none(),
        "nothing left to retry"
    );

    let counts = counts.lock().unwrap().clone();
    for (i, record) in orders(6).iter().enumerate() {
        let want = if odd(record) { 3 } else { 1 };
        assert_eq!(
            counts.get(&format!("order {i}")).copied(),
            Some(want),
            "order {i}: {counts:?}"
        );
    }
}

#[tokio::test]
async fn automatic_retries_stop_at_the_maximum() {
    let (server, counts) = flaky_target(odd, usize::MAX).await;
    let h = harness(
        &server.base_url,
        json!({}),
        json!({"scheduleSeconds": [1], "maxAttempts": 2}),
    )
    .await;
    let mut job = h.run("f", orders(2)).await;
    let mut retries = Vec::new();
    while let Some(next) = next_retry(&h, &job).await {
        assert!(retries.len() < 2, "past the maximum: {next:?}");
        retries.push(next.id.clone());
        job = next;
    }
    assert_eq!(retries.len(), 2);
    assert_eq!(job.auto_retry.as_ref().map(|a| a.attempt), Some(2));
    assert_eq!(job.num_error, 1, "the last retry still failed");
    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.get("order 0"), Some(&1));
    assert_eq!(counts.get("order 1"), Some(&3), "the run and two retries");
}

#[tokio::test]
async fn records_that_may_have_arrived_or_are_refused_are_not_retried_automatically() {
    // qty 0: refused (400); qty 1: a 500 to a POST that does not send again after one;
    // qty 2: no reply in time (it may have arrived). None is retryable.
    let server = TestServer::start(|_, r| match r.json()["qty"].as_u64() {
        Some(0) => Answer::json(400, json!({"error": "bad order"})),
        Some(1) => Answer::json(500, json!({"error": "oops"})),
        _ => Answer::Slow {
            delay: Duration::from_secs(2),
            then: Box::new(Answer::json(200, json!({}))),
        },
    })
    .await;
    let import = json!({"http": {"retryAmbiguous": false}});
    let mut bundle = http_bundle(
        &server.base_url,
        import,
        json!({"http": {"requestTimeoutMs": 300, "retry": {"maxAttempts": 1}}}),
    );
    merge(
        &mut bundle["flows"][0],
        json!({"autoRetry": {"scheduleSeconds": [1]}}),
    );
    let h = Harness::new();
    h.load(bundle).await;
    let job = h.run("f", orders(3)).await;
    assert_eq!(job.num_error, 3, "{job:?}");
    let mut codes: Vec<String> = h
        .errors(&job.id)
        .await
        .iter()
        .map(|e| e.code.to_string())
        .collect();
    codes.sort();
    assert_eq!(codes, ["evaluator", "evaluator", "maybe_delivered"]);
    assert_eq!(
        h.sluice().store.retry_at(&job.id).await.unwrap(),
        None,
        "no automatic retry is pending"
    );
}

#[tokio::test]
async fn turning_auto_retry_off_drops_the_pending_retry_when_it_comes_due() {
    let (server, counts) = flaky_target(odd, usize::MAX).await;
    let h = harness(&server.base_url, json!({}), json!({"scheduleSeconds": [1]})).await;
    let job = h.run("f", orders(2)).await;
    let sluice = h.sluice();
    let due = sluice
        .store
        .retry_at(&job.id)
        .await
        .unwrap()
        .expect("pending");
    let mut flow = sluice.flow("f").await.unwrap();
    flow.auto_retry.as_mut().unwrap().on = false;
    let flow = serde_json::to_value(flow).unwrap();
    sluice
        .store
        .put_definition(sluice_core::ports::Kind::Flow, "f", &flow)
        .await
        .unwrap();
    tokio::time::sleep((due - chrono::Utc::now()).to_std().unwrap_or_default()).await;
    assert!(schedule::tick(&sluice).await.unwrap().is_empty());
    assert_eq!(sluice.store.retry_at(&job.id).await.unwrap(), None);
    assert_eq!(counts.lock().unwrap().get("order 1"), Some(&1));
}

/// A crash between arming a retry and closing the job leaves the entry and an open job: the
/// tick starts nothing for it and looks again a minute later.
#[tokio::test]
async fn an_armed_retry_of_a_job_still_open_waits_for_its_close() {
    let (server, _counts) = flaky_target(odd, 0).await;
    let h = harness(&server.base_url, json!({}), json!({"scheduleSeconds": [1]})).await;
    let sluice = h.sluice();
    sluice_e2e::open_job(&sluice, "open-job").await;
    let now = chrono::Utc::now();
    sluice
        .store
        .set_retry_at("open-job", Some(now))
        .await
        .unwrap();
    assert!(schedule::tick(&sluice).await.unwrap().is_empty());
    let later = sluice
        .store
        .retry_at("open-job")
        .await
        .unwrap()
        .expect("still pending");
    assert!(
        later > now + chrono::Duration::seconds(50),
        "{later} vs {now}"
    );
    assert!(
        sluice.store.list_jobs("f", 10).await.unwrap().len() == 1,
        "no retry job"
    );
}
