//! Two Lambda instances deliver pages over one connection at once: the connection's
//! concurrencyLevel holds across them, because its slots live in DynamoDB, not in either
//! instance's memory.

mod common;

use serde_json::json;
use sluice_core::Stage;
use sluice_testkit::http::{Answer, TestServer};
use std::time::Duration;

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
        json!({"_id": "c", "type": "http", "http": {"baseURI": sink.base_url}, "concurrencyLevel": 2}),
        json!({"_id": "e", "type": "webhook", "pageSize": 6}),
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

    let job = a
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((job.num_success, job.num_error), (12, 0), "{job:?}");
    assert_eq!(sink.received().len(), 12, "nothing sent twice");
}
