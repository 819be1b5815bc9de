//! Faults and limits: dead letters, limits shared across concurrent runs, callbacks.

use serde_json::json;
use sluice_core::ports::Kind;
use sluice_core::runs::start_run;
use sluice_e2e::*;
use sluice_model::FailureCode;
use sluice_model::JobStatus;
use sluice_model::{RunKind, RunRequest};
use std::time::Duration;

#[tokio::test]
async fn a_page_that_fails_every_attempt_becomes_dead_letter_errors() {
    let server = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({})))
        .await;
    // The connection disappears after the flow was saved: translate cannot load it, the
    // runtime redelivers the page, then dead-letters it.
    h.sluice()
        .store
        .delete_definition(Kind::Connection, "conn")
        .await
        .unwrap();
    let job = h.run("f", orders(3)).await;
    assert_eq!(job.status, JobStatus::CompletedWithErrors);
    assert_eq!((job.num_success, job.num_error), (0, 3));
    let errors = h.errors(&job.id).await;
    assert_eq!(errors.len(), 3);
    assert!(
        errors.iter().all(|e| e.code == FailureCode::DeadLetter
            && e.message.contains("Connection not found: conn")),
        "{:?}",
        errors[0]
    );
    assert!(server.received().is_empty());
    // Once the connection is back, the errors can be retried.
    h.sluice()
        .store
        .put_definition(
            Kind::Connection,
            "conn",
            &json!({"_id": "conn", "name": "conn", "type": "http", "http": {"baseURI": server.base_url}}),
        )
        .await
        .unwrap();
    let retry = sluice_core::runs::retry_errors(&h.sluice(), &job.id, None)
        .await
        .unwrap();
    let again = h.wait(&retry.job_id).await;
    assert_eq!(again.num_success, 3);
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn concurrency_is_shared_by_concurrent_runs_of_one_connection() {
    let server = TestServer::start(|_, _| Answer::Slow {
        delay: Duration::from_millis(80),
        then: Box::new(Answer::json(200, json!({}))),
    })
    .await;
    let h = Harness::new();
    let mut bundle = http_bundle(&server.base_url, json!({}), json!({"concurrencyLevel": 3}));
    bundle["flows"].as_array_mut().unwrap().push(json!({"_id": "f2", "name": "f2", "pageGenerators": [{"_exportId": "exp"}], "pageProcessors": [{"type": "import", "_importId": "imp"}]}));
    h.load(bundle).await;
    let s = h.sluice();
    let a = start_run(
        &s,
        "f",
        RunRequest {
            records: Some(orders(15)),
            ..Default::default()
        },
        RunKind::Manual,
    )
    .await
    .unwrap()
    .unwrap();
    let b = start_run(
        &s,
        "f2",
        RunRequest {
            records: Some(orders(15)),
            ..Default::default()
        },
        RunKind::Manual,
    )
    .await
    .unwrap()
    .unwrap();
    let (ja, jb) = (h.wait(&a.job_id).await, h.wait(&b.job_id).await);
    assert_eq!((ja.num_success, jb.num_success), (15, 15));
    assert!(
        server.max_in_flight() <= 3,
        "{} in flight at once",
        server.max_in_flight()
    );
}

#[tokio::test]
async fn rate_limit_spaces_requests_at_the_server() {
    let server = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    h.load(http_bundle(
        &server.base_url,
        json!({}),
        json!({"rateLimit": {"requestsPerSecond": 20, "burst": 1}}),
    ))
    .await;
    let job = h.run("f", orders(6)).await;
    assert_eq!(job.num_success, 6);
    let got = server.received();
    // 6 requests at 20/s with a burst of 1 get their turns at least 50 ms apart. The first
    // also opens the connection, so it can reach the server as late as the second (seen: 67
    // ms between its turn and its arrival): count the 4 gaps after the second, and allow 50
    // ms of jitter on a loaded machine. Without the limit the 6 arrive within a few ms.
    let span = got.last().unwrap().at.duration_since(got[1].at);
    assert!(
        span >= Duration::from_millis(150),
        "requests 2 to 6 spanned only {span:?}"
    );
}

/// Two `sluice` processes on one database file, each running its own flow over the same
/// connection at once.
async fn two_processes_run_one_connection(
    connection: serde_json::Value,
    each: usize,
) -> TestServer {
    let server = TestServer::start(|_, _| Answer::Slow {
        delay: Duration::from_millis(60),
        then: Box::new(Answer::json(200, json!({}))),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Harness::on_disk(dir.path()), Harness::on_disk(dir.path()));
    let mut bundle = http_bundle(&server.base_url, json!({}), connection);
    bundle["flows"].as_array_mut().unwrap().push(json!({"_id": "f2", "name": "f2", "pageGenerators": [{"_exportId": "exp"}], "pageProcessors": [{"type": "import", "_importId": "imp"}]}));
    a.load(bundle).await;
    let start = |h: &Harness, flow: &'static str| {
        let s = h.sluice();
        async move {
            let request = RunRequest {
                records: Some(orders(each)),
                ..Default::default()
            };
            start_run(&s, flow, request, RunKind::Manual)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let (ra, rb) = tokio::join!(start(&a, "f"), start(&b, "f2"));
    let (ja, jb) = tokio::join!(a.wait(&ra.job_id), b.wait(&rb.job_id));
    assert_eq!((ja.num_success, jb.num_success), (each as u64, each as u64));
    assert_counts(&ja, each as u64);
    assert_counts(&jb, each as u64);
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_shared_by_processes_sharing_a_store() {
    let server = two_processes_run_one_connection(json!({"concurrencyLevel": 2}), 12).await;
    assert_eq!(server.received().len(), 24);
    // Each process alone may have 2 out; together they still may not have more.
    assert!(
        server.max_in_flight() <= 2,
        "{} in flight at once across two processes",
        server.max_in_flight()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_shared_by_processes_sharing_a_store() {
    let server = two_processes_run_one_connection(
        json!({"rateLimit": {"requestsPerSecond": 20, "burst": 1}}),
        6,
    )
    .await;
    let mut at: Vec<_> = server.received().iter().map(|r| r.at).collect();
    at.sort();
    let span = at.last().unwrap().duration_since(at[0]);
    // 12 requests at 20/s overall: at least 11 gaps of 50 ms, less 100 ms for arrival jitter
    // (two separate limiters, 5 gaps each, finish in about 250 ms).
    assert!(
        span >= Duration::from_millis(450),
        "12 requests spanned only {span:?}"
    );
}

#[tokio::test]
async fn after_process_callbacks_and_notifications_are_posted() {
    let hooks = TestServer::always(200, json!({})).await;
    let target = TestServer::always(201, json!({"id": "x"})).await;
    let h = Harness::new();
    let mut bundle = http_bundle(
        &target.base_url,
        json!({}),
        json!({"http": {"headers": [{"name": "Authorization", "value": "Bearer hidden"}]}}),
    );
    bundle["flows"][0]["afterProcess"] = json!([{"url": format!("{}/done", hooks.base_url)}]);
    bundle["flows"][0]["notifyRequest"] = json!({"url": format!("{}/req", hooks.base_url)});
    bundle["flows"][0]["notifyResponse"] = json!({"url": format!("{}/resp", hooks.base_url)});
    h.load(bundle).await;
    let job = h.run("f", orders(2)).await;
    assert_eq!(job.num_success, 2);
    let got = hooks.received();
    let done: Vec<_> = got.iter().filter(|r| r.path == "/done").collect();
    assert_eq!(done.len(), 1, "one after-process call per run");
    assert_eq!(done[0].json()["_id"], job.id);
    assert_eq!(done[0].json()["numSuccess"], 2);
    let reqs: Vec<_> = got.iter().filter(|r| r.path == "/req").collect();
    assert_eq!(reqs.len(), 2);
    assert!(
        !reqs[0].body.contains("Bearer hidden"),
        "credentials masked in notifications"
    );
    assert_eq!(got.iter().filter(|r| r.path == "/resp").count(), 2);
}

#[tokio::test]
async fn a_job_whose_process_died_is_closed_as_abandoned_by_the_next_run() {
    let server = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({})))
        .await;
    let s = h.sluice();
    // What a killed process leaves behind: a running job holding the flow's run lock, which
    // nobody renews.
    let then = chrono::Utc::now() - chrono::Duration::minutes(20);
    let dead = sluice_model::Job::new(
        sluice_model::new_id(),
        "f".into(),
        sluice_model::RunKind::Manual,
        then,
    );
    s.store.create_job(&dead).await.unwrap();
    assert!(s
        .store
        .acquire_lock("f", &dead.id, then, s.settings.lock_lease)
        .await
        .unwrap());

    let job = h.run("f", orders(2)).await;
    assert_eq!(
        job.num_success, 2,
        "the lapsed lock does not block the next run"
    );
    let old = s.store.get_job(&dead.id).await.unwrap().unwrap();
    assert_eq!(old.status, JobStatus::Failed);
    let message = old.message.unwrap_or_default();
    assert!(
        message.starts_with("abandoned: no progress for 15 min"),
        "{message}"
    );
    assert!(old.ended_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_slower_than_the_lock_lease_keeps_its_lock() {
    // A 2 s lease and a page that takes about 4 s to deliver under its rate limit.
    let h = Harness::with_settings(sluice_core::Settings {
        lock_lease: Duration::from_secs(2),
        ..local_settings()
    });
    let server = TestServer::always(200, json!({})).await;
    let mut bundle = http_bundle(
        &server.base_url,
        json!({}),
        json!({"rateLimit": {"requestsPerSecond": 5, "burst": 1}}),
    );
    bundle["exports"][0]["pageSize"] = json!(20);
    h.load(bundle).await;
    let s = h.sluice();
    let request = RunRequest {
        records: Some(orders(20)),
        ..Default::default()
    };
    let first = start_run(&s, "f", request, RunKind::Manual)
        .await
        .unwrap()
        .unwrap();
    // Past the first lease, a scheduled run of the same flow finds the flow still running
    // and queues behind it, rather than taking a lapsed lock and closing the first job.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = start_run(&s, "f", RunRequest::default(), RunKind::Schedule)
        .await
        .unwrap();
    assert!(second.is_none(), "the first run still holds its lock");
    let job = h.wait(&first.job_id).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(job.num_success, 20);
}
