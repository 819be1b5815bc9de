//! A stage dies mid-batch (its Lambda is killed while requests are in flight): the SQS message
//! was never deleted, so it is redelivered after the visibility timeout, and the ledger makes
//! sure no record reaches the target twice and none is lost.

mod common;

use serde_json::json;
use sluice_core::Stage;
use sluice_model::FailureCode;
use sluice_testkit::http::{Answer, TestServer};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_deliver_crash_mid_batch_is_redelivered_without_sending_twice() {
    let Some(env) =
        common::env("a_deliver_crash_mid_batch_is_redelivered_without_sending_twice").await
    else {
        return;
    };
    let h = &env.harness;
    let sink = TestServer::start(|_, _| Answer::Slow {
        delay: Duration::from_millis(400),
        then: Box::new(Answer::json(201, json!({"id": "x"}))),
    })
    .await;
    let store = &h.sluice.store;
    // The killed deliver holds the connection's 4 slots until their leases (request timeout
    // plus 5 s) run out: a short timeout keeps the redelivery quick.
    common::define_flow(
        &h.sluice,
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url, "retry": {"maxAttempts": 1}, "requestTimeoutMs": 2000}, "concurrencyLevel": 4}),
        json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": 20}),
    )
    .await;
    let records: Vec<_> = (0..20).map(|n| json!({"n": n})).collect();
    let job_id = common::start(&h.sluice, "f", records).await;
    // Trigger and translate run normally: one page waits on the deliver queue.
    h.poll(Stage::Trigger).await.unwrap();
    assert_eq!(h.poll(Stage::Translate).await.unwrap(), 1);

    // The deliver function takes the page and is killed once a second wave of requests is out.
    let crashed = {
        let poll = h.poll(Stage::Deliver);
        tokio::pin!(poll);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            tokio::select! {
                r = &mut poll => panic!("the deliver batch finished before the crash: {r:?}"),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {
                    if sink.received().len() >= 6 { break true; }
                    assert!(Instant::now() < deadline, "the batch never got going");
                }
            }
        }
    }; // dropping `poll` here is the crash: no response, no delete, in-flight sends abandoned
    assert!(crashed);

    // SQS redelivers the page after the visibility timeout; the run completes.
    let job = h
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        job.num_success + job.num_error + job.num_ignore,
        20,
        "nothing lost: {job:?}"
    );

    let mut times_received: HashMap<i64, usize> = HashMap::new();
    for r in sink.received() {
        *times_received
            .entry(r.json()["n"].as_i64().unwrap())
            .or_default() += 1;
    }
    assert!(
        times_received.values().all(|&n| n == 1),
        "no record sent twice: {times_received:?}"
    );
    let errors = store.list_errors(&job.id).await.unwrap();
    assert!(
        job.num_error >= 1,
        "the sends cut off by the crash are reported, not resent"
    );
    assert!(
        errors
            .iter()
            .all(|e| e.code == FailureCode::DeliveryUnknown),
        "{errors:?}"
    );
    // Every success was received exactly once; every error's record was not sent again.
    assert!(times_received.len() as u64 >= job.num_success);
}
