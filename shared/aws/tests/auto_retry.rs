//! Automatic retry on the AWS adapters (DynamoDB, SQS on moto): the due time kept in the
//! table, the retry started by the trigger function's EventBridge tick, the records the
//! target declined (503) sent again until they succeed, the others never again, and the
//! chain stopping at the maximum.

mod common;

use serde_json::{json, Value};
use sluice_core::ports::Kind;
use sluice_core::Sluice;
use sluice_model::{Job, RunKind};
use sluice_testkit::http::{Answer, TestServer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A target answering 503 to the first `fails` requests of each odd record, 200 otherwise;
/// with the requests it got per record `n`.
async fn flaky_target(fails: usize) -> (TestServer, Arc<Mutex<HashMap<u64, usize>>>) {
    let counts: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
    let seen = counts.clone();
    let server = TestServer::start(move |_, r| {
        let n = r.json()["n"].as_u64().unwrap_or_default();
        let times = {
            let mut c = seen.lock().unwrap();
            let t = c.entry(n).or_default();
            *t += 1;
            *t
        };
        if n % 2 == 1 && times <= fails {
            Answer::json(503, json!({"error": "busy"}))
        } else {
            Answer::json(200, json!({"ok": true}))
        }
    })
    .await;
    (server, counts)
}

async fn define(env: &common::Env, base: &str, max_attempts: u32) {
    let sluice = &env.harness.sluice;
    common::define_flow(
        sluice,
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": base, "retry": {"maxAttempts": 1}}}),
        json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": 10}),
    )
    .await;
    env.harness
        .define([(
            Kind::Flow,
            "f",
            json!({"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "e"}],
                   "pageProcessors": [{"type": "import", "_importId": "i"}],
                   "autoRetry": {"scheduleSeconds": [1], "maxAttempts": max_attempts}}),
        )])
        .await;
}

/// Once `job`'s automatic retry is due, the EventBridge tick through the trigger function;
/// the retry job it started, run through the queues. `None` when none is pending.
async fn next_retry(env: &common::Env, sluice: &Sluice, job: &Job) -> Option<Job> {
    let due = sluice.store.retry_at(&job.id).await.unwrap()?;
    let wait = (due - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let tick = json!({"version": "0", "id": "e", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-22T10:00:00Z",
        "region": "us-east-1", "resources": [], "detail": {}});
    let answer = sluice_aws::trigger_handler(sluice, tick).await.unwrap();
    let started = answer["started"].as_array().expect("started runs listed");
    assert_eq!(started.len(), 1, "{answer}");
    let id = started[0]["_jobId"].as_str().unwrap();
    Some(
        env.harness
            .wait_for_job(id, Duration::from_secs(60))
            .await
            .unwrap(),
    )
}

/// A manual run of `f` with `records`, through the queues.
async fn run(env: &common::Env, records: Vec<Value>) -> Job {
    let id = common::start(&env.harness.sluice, "f", records).await;
    env.harness
        .wait_for_job(&id, Duration::from_secs(60))
        .await
        .unwrap()
}

fn records(n: u64) -> Vec<Value> {
    (0..n).map(|n| json!({"n": n})).collect()
}

#[tokio::test]
async fn declined_records_are_retried_by_the_tick_until_they_succeed() {
    let Some(env) = common::env("declined_records_are_retried_by_the_tick").await else {
        return;
    };
    let (server, counts) = flaky_target(1).await;
    define(&env, &server.base_url, 5).await;
    let sluice = env.harness.sluice.clone();
    let first = run(&env, records(4)).await;
    assert_eq!((first.num_success, first.num_error), (2, 2), "{first:?}");
    let retry = next_retry(&env, &sluice, &first)
        .await
        .expect("a retry is pending");
    assert_eq!(retry.trigger, RunKind::AutoRetry);
    assert_eq!(retry.retry_of.as_deref(), Some(first.id.as_str()));
    assert_eq!(retry.auto_retry.as_ref().map(|a| a.attempt), Some(1));
    assert_eq!((retry.num_success, retry.num_error), (2, 0), "{retry:?}");
    assert!(next_retry(&env, &sluice, &retry).await.is_none());
    let counts = counts.lock().unwrap().clone();
    assert_eq!(
        counts,
        HashMap::from([(0, 1), (1, 2), (2, 1), (3, 2)]),
        "successes sent once, declined records once more"
    );
}

#[tokio::test]
async fn automatic_retries_on_aws_stop_at_the_maximum() {
    let Some(env) = common::env("automatic_retries_on_aws_stop_at_the_maximum").await else {
        return;
    };
    let (server, counts) = flaky_target(usize::MAX).await;
    define(&env, &server.base_url, 1).await;
    let sluice = env.harness.sluice.clone();
    let first = run(&env, records(2)).await;
    let retry = next_retry(&env, &sluice, &first).await.expect("one retry");
    assert_eq!(retry.num_error, 1);
    assert!(
        next_retry(&env, &sluice, &retry).await.is_none(),
        "maxAttempts 1: no second retry"
    );
    assert_eq!(counts.lock().unwrap().get(&1), Some(&2));
}
