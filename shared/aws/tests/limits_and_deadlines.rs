//! Limits and deadlines across Lambda instances and invocations: a connection's
//! concurrencyLevel holds across two instances (its slots live in DynamoDB, not in either
//! instance's memory), and deliver and trigger work within the invocation's deadline,
//! continuing in a new message instead of timing out.

mod common;

use serde_json::json;
use sluice_aws::harness::Harness;
use sluice_core::Stage;
use sluice_model::Job;
use sluice_testkit::http::{Answer, TestServer};
use std::time::Duration;

/// Waits for the job, then checks records `0..n` were each POSTed to `sink` exactly once and
/// all succeeded.
async fn assert_each_sent_once(h: &Harness, job_id: &str, sink: &TestServer, n: i64) -> Job {
    let job = h
        .wait_for_job(job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((job.num_success, job.num_error), (n as u64, 0), "{job:?}");
    let mut sent: Vec<i64> = sink
        .received()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.json()["n"].as_i64().unwrap())
        .collect();
    sent.sort();
    assert_eq!(sent, (0..n).collect::<Vec<_>>(), "each record sent once");
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_holds_across_lambda_instances() {
    let Some(env) = common::env("concurrency_holds_across_lambda_instances").await else {
        return;
    };
    let a = &env.harness;
    let b = a.another_instance().await.unwrap();
    let sink = TestServer::start(|_, _| Answer::Slow {
        delay: Duration::from_millis(100),
        then: Box::new(Answer::json(200, json!({}))),
    })
    .await;
    common::define_flow(
        &a.sluice,
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url}, "concurrencyLevel": 2}),
        json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": 6}),
    )
    .await;
    let records: Vec<_> = (0..12).map(|n| json!({"n": n})).collect();
    let job_id = common::start(&a.sluice, "f", records).await;
    a.poll(Stage::Trigger).await.unwrap();
    assert_eq!(a.poll(Stage::Translate).await.unwrap(), 2, "two pages of 6");

    // Each instance takes one page (a batch size of 1) and delivers it at the same time.
    let (got_a, got_b) = tokio::join!(
        a.poll_batch(Stage::Deliver, 1),
        b.poll_batch(Stage::Deliver, 1)
    );
    assert_eq!((got_a.unwrap(), got_b.unwrap()), (1, 1));
    assert_eq!(sink.received().len(), 12);
    assert!(
        sink.max_in_flight() <= 2,
        "{} requests in flight across two instances with concurrencyLevel 2",
        sink.max_in_flight()
    );

    assert_each_sent_once(a, &job_id, &sink, 12).await;
}

/// A page slower than one invocation (a tight rateLimit): deliver stops starting requests
/// when the invocation's time runs short and re-queues the rest of the page, so it finishes
/// over several invocations with nothing lost, nothing sent twice and no `delivery_unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_slower_than_an_invocation_continues_in_the_next() {
    let Some(mut env) = common::env("a_page_slower_than_an_invocation_continues_in_the_next").await
    else {
        return;
    };
    // A request needs its 1 s timeout plus 3 s of reserve: a 5 s invocation may start
    // requests during its first second only, and 4 a second are allowed.
    env.harness.invocation_budget = Some(Duration::from_secs(5));
    let h = &env.harness;
    let sink = TestServer::always(200, json!({})).await;
    common::define_flow(
        &h.sluice,
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url, "requestTimeoutMs": 1000}, "rateLimit": {"requestsPerSecond": 4, "burst": 1}}),
        json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": 12}),
    )
    .await;
    let records: Vec<_> = (0..12).map(|n| json!({"n": n})).collect();
    let job_id = common::start(&h.sluice, "f", records).await;
    h.poll(Stage::Trigger).await.unwrap();
    assert_eq!(h.poll(Stage::Translate).await.unwrap(), 1, "one page of 12");

    let deliver_invocations = h.drain(Stage::Deliver).await.unwrap();
    assert!(
        deliver_invocations >= 2,
        "the page took {deliver_invocations} invocation(s)"
    );
    assert_each_sent_once(h, &job_id, &sink, 12).await;
}

/// A paged http export longer than one trigger invocation: the trigger stops reading before
/// its deadline and queues a continuation with the paging cursor and the records not yet cut
/// into a page, so the run reads every record once and cuts the same pages as in one go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_longer_than_an_invocation_continues_in_the_next() {
    let Some(mut env) =
        common::env("an_export_longer_than_an_invocation_continues_in_the_next").await
    else {
        return;
    };
    // 1 s request timeout + 3 s reserve: a 5 s invocation reads for about a second, and each
    // of the 10 source pages takes 250 ms.
    env.harness.invocation_budget = Some(Duration::from_secs(5));
    let h = &env.harness;
    let server = TestServer::start(|_, r| {
        if r.method == "POST" {
            return Answer::json(200, json!({}));
        }
        let page: i64 = r.query.trim_start_matches("page=").parse().unwrap_or(0);
        let records: Vec<_> = if (1..=10).contains(&page) {
            (0..5).map(|i| json!({"n": (page - 1) * 5 + i})).collect()
        } else {
            vec![]
        };
        Answer::Slow {
            delay: Duration::from_millis(250),
            then: Box::new(Answer::json(200, json!(records))),
        }
    })
    .await;
    common::define_flow(
        &h.sluice,
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": server.base_url, "requestTimeoutMs": 1000}}),
        json!({"_id": "e", "name": "e", "type": "http", "_connectionId": "c", "pageSize": 7,
               "http": {"relativeURI": "/items?page={{export.http.paging.page}}", "paging": {"method": "page"}}}),
    )
    .await;
    let job_id = common::start_export(&h.sluice, "f").await;

    let trigger_invocations = h.drain(Stage::Trigger).await.unwrap();
    assert!(
        trigger_invocations >= 2,
        "the export took {trigger_invocations} invocation(s)"
    );
    let job = assert_each_sent_once(h, &job_id, &server, 50).await;
    assert_eq!(job.num_pages, 8, "50 records in pages of 7, as in one go");
    let gets = server
        .received()
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    assert_eq!(
        gets, 11,
        "each source page read once (and the empty one that ends it)"
    );
}

/// Many objects under an s3 prefix: with less time left than reading another object may
/// take, the trigger queues a continuation after each object, picking up after the last key
/// it read; pages still hold 4 records each across objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_under_a_prefix_continue_in_the_next_invocation() {
    let Some(mut env) = common::env("objects_under_a_prefix_continue_in_the_next_invocation").await
    else {
        return;
    };
    // Shorter than the 30 s kept back per object: one object per invocation.
    env.harness.invocation_budget = Some(Duration::from_secs(10));
    let h = &env.harness;
    common::put_parts(h, "data", 6, json!({})).await;
    let sink = TestServer::always(200, json!({})).await;
    common::define_flow(
        &h.sluice,
        // (a 1 s request timeout leaves deliver room in the 10 s invocations)
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url, "requestTimeoutMs": 1000}}),
        json!({"_id": "e", "name": "e", "type": "s3", "s3": {"bucket": "data", "prefix": "in/"}, "pageSize": 4}),
    )
    .await;
    let job_id = common::start_export(&h.sluice, "f").await;

    assert_eq!(
        h.drain(Stage::Trigger).await.unwrap(),
        6,
        "one object per invocation"
    );
    let job = assert_each_sent_once(h, &job_id, &sink, 18).await;
    assert_eq!(job.num_pages, 5, "18 records in pages of 4, as in one go");
}

/// However short an invocation, each deliver pass sends at least one record: a page never
/// bounces between invocations without progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deliver_pass_makes_progress() {
    let Some(mut env) = common::env("every_deliver_pass_makes_progress").await else {
        return;
    };
    // 2 s invocations, though a request needs 1 s + 3 s kept back.
    env.harness.invocation_budget = Some(Duration::from_secs(2));
    let h = &env.harness;
    let sink = TestServer::always(200, json!({})).await;
    common::define_flow(
        &h.sluice,
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url, "requestTimeoutMs": 1000}, "concurrencyLevel": 1}),
        json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": 3}),
    )
    .await;
    let records: Vec<_> = (0..3).map(|n| json!({"n": n})).collect();
    let job_id = common::start(&h.sluice, "f", records).await;
    h.poll(Stage::Trigger).await.unwrap();
    h.poll(Stage::Translate).await.unwrap();
    assert_eq!(
        h.drain(Stage::Deliver).await.unwrap(),
        3,
        "one record per pass"
    );
    assert_each_sent_once(h, &job_id, &sink, 3).await;
}
