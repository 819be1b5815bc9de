//! Event runs on moto: S3 notifications (through the trigger queue) and DynamoDB stream
//! batches (through the trigger function) that arrive while their flow runs are kept in the
//! table and run in turn, none dropped, none twice.

mod common;

use serde_json::{json, Value};
use sluice_aws::lambda::trigger_handler;
use sluice_core::ports::Kind;
use sluice_core::runs::start_run;
use sluice_core::Stage;
use sluice_model::{Job, JobStatus, RunKind, RunRequest};
use sluice_testkit::http::{Answer, TestServer};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Flow `f` reads a webhook export (the manual run that holds the flow), objects landing in
/// `in-bucket` and changes of table `orders`; each record is posted as it is to the sink.
async fn define(env: &common::Env, sink: &TestServer) {
    let defs = [
        (
            Kind::Connection,
            "c",
            json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url}}),
        ),
        (
            Kind::Export,
            "exp",
            json!({"_id": "exp", "name": "exp", "type": "webhook"}),
        ),
        (
            Kind::Export,
            "objects",
            json!({"_id": "objects", "name": "objects", "type": "s3", "s3": {"bucket": "in-bucket"}, "file": {"type": "ndjson"}}),
        ),
        (
            Kind::Export,
            "table",
            json!({"_id": "table", "name": "table", "type": "dynamodb", "dynamodb": {"tableName": "orders", "eventTypes": ["INSERT"]}}),
        ),
        (
            Kind::Import,
            "i",
            json!({"_id": "i", "name": "i", "_connectionId": "c", "type": "http", "http": {"relativeURI": "/orders", "body": "{{json record}}"}}),
        ),
        (
            Kind::Flow,
            "f",
            json!({"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "exp"}, {"_exportId": "objects"}, {"_exportId": "table"}], "pageProcessors": [{"type": "import", "_importId": "i"}]}),
        ),
    ];
    env.harness.define(defs).await;
}

/// The manual run that holds the flow while the events arrive (its run order waits in the
/// trigger queue until the test pumps).
async fn hold_the_flow(env: &common::Env) -> String {
    let request = RunRequest {
        export_ids: Some(vec!["exp".into()]),
        records: Some((0..3).map(|i| json!({"id": format!("slow-{i}")})).collect()),
        ..Default::default()
    };
    start_run(&env.harness.sluice, "f", request, RunKind::Manual)
        .await
        .unwrap()
        .expect("the flow is free")
        .job_id
}

/// A stream batch as Lambda delivers it: INSERTs of `ids`, each with its eventID.
fn stream_batch(ids: &[String], padding: usize) -> Value {
    let records: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "eventID": format!("evt-{id}"), "eventName": "INSERT", "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1", "eventVersion": "1.1",
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-22T00:00:00.000",
                "dynamodb": {"Keys": {"id": {"S": id}}, "NewImage": {"id": {"S": id}, "pad": {"S": "x".repeat(padding)}},
                             "StreamViewType": "NEW_IMAGE", "SequenceNumber": "1", "SizeBytes": 64}
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Pumps every queue until `n` jobs of `f` exist and are finished.
async fn all_jobs(env: &common::Env, n: usize) -> Vec<Job> {
    let h = &env.harness;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let jobs = h.sluice.store.list_jobs("f", 1000).await.unwrap();
        if jobs.len() >= n && jobs.iter().all(|j| j.status.is_finished()) {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} jobs, {} finished; unfinished: {:?}",
            jobs.len(),
            jobs.iter().filter(|j| j.status.is_finished()).count(),
            jobs.iter()
                .filter(|j| !j.status.is_finished())
                .collect::<Vec<_>>()
        );
        if h.pump().await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn received_ids(sink: &TestServer) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for r in sink.received() {
        let id = r.json()["id"].as_str().unwrap().to_string();
        *seen.entry(id).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn objects_and_stream_batches_arriving_while_the_flow_runs_all_run_once() {
    let Some(env) = common::env("objects_and_stream_batches_arriving_while_the_flow_runs").await
    else {
        return;
    };
    let h = &env.harness;
    let sink = TestServer::start(|_, r| {
        let ok = Answer::json(200, json!({}));
        match r.json()["id"].as_str() {
            Some(id) if id.starts_with("slow") => Answer::Slow {
                delay: Duration::from_millis(500),
                then: Box::new(ok),
            },
            _ => ok,
        }
    })
    .await;
    define(&env, &sink).await;
    common::notify_trigger_queue(&env, "in-bucket").await;
    let slow = hold_the_flow(&env).await;

    // Eight of each: enough to queue many behind a busy flow, few enough that the 17 jobs
    // pumped through moto one after another stay within seconds.
    const N: usize = 8;
    for i in 0..N {
        let body = format!("{{\"id\":\"s3-{i}-a\"}}\n{{\"id\":\"s3-{i}-b\"}}\n");
        h.sluice
            .blobs
            .put("in-bucket", &format!("drop/obj-{i:02}.ndjson"), body.into())
            .await
            .unwrap();
        let ids: Vec<String> = (0..3).map(|j| format!("db-{i}-{j}")).collect();
        let answer = trigger_handler(&h.sluice, stream_batch(&ids, 0))
            .await
            .expect("the batch is kept: the invocation succeeds");
        assert_eq!(answer["started"], json!([]), "the flow is busy: it waits");
    }
    // The trigger function reads its queue: the slow run's order and the N notifications.
    h.drain(Stage::Trigger).await.unwrap();
    let waiting = h.sluice.store.queued_runs("f", 100).await.unwrap();
    assert_eq!(
        waiting.len(),
        2 * N,
        "every object and batch is kept in the table"
    );
    let holder = h.sluice.store.get_job(&slow).await.unwrap().unwrap();
    assert_eq!(
        holder.status,
        JobStatus::Running,
        "all arrived while it ran"
    );

    let jobs = all_jobs(&env, 2 * N + 1).await;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for j in &jobs {
        *kinds.entry(j.trigger.as_str()).or_default() += 1;
        assert_eq!(j.status, JobStatus::Completed, "{j:?}");
    }
    assert_eq!(
        kinds,
        BTreeMap::from([("dynamodb", N), ("manual", 1), ("s3", N)])
    );
    let seen = received_ids(&sink);
    assert_eq!(seen.len(), 3 + N * 2 + N * 3, "every record arrived");
    assert!(seen.values().all(|&n| n == 1), "none twice");
    let counted: u64 = jobs.iter().map(|j| j.num_success).sum();
    assert_eq!(counted, 3 + 5 * N as u64, "every record counted once");

    // A batch the stream delivers again (its invocation was retried) runs no second time.
    let ids: Vec<String> = (0..3).map(|j| format!("db-7-{j}")).collect();
    let answer = trigger_handler(&h.sluice, stream_batch(&ids, 0))
        .await
        .unwrap();
    assert_eq!(answer["started"], json!([]));
    h.pump().await.unwrap();
    assert_eq!(
        h.sluice.store.list_jobs("f", 1000).await.unwrap().len(),
        2 * N + 1
    );
    assert!(h
        .sluice
        .store
        .queued_runs("f", 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_stream_batch_too_large_for_an_item_waits_with_its_records_in_the_bucket() {
    let Some(env) = common::env("a_stream_batch_too_large_for_an_item_waits").await else {
        return;
    };
    let h = &env.harness;
    let sink = TestServer::always(200, json!({})).await;
    define(&env, &sink).await;
    hold_the_flow(&env).await;
    // 450 records of ~1 KB: about 470 KB, over DynamoDB's 400 KB item limit.
    let ids: Vec<String> = (0..450).map(|j| format!("big-{j}")).collect();
    trigger_handler(&h.sluice, stream_batch(&ids, 1000))
        .await
        .expect("the batch is kept");
    let jobs = all_jobs(&env, 2).await;
    let run = jobs
        .iter()
        .find(|j| j.trigger == RunKind::Dynamodb)
        .unwrap();
    assert_eq!(
        (run.status, run.num_success),
        (JobStatus::Completed, 450),
        "{run:?}"
    );
    assert_eq!(received_ids(&sink).len(), 453);
}

/// An event the trigger could not keep is not answered as handled: with the table gone, a
/// stream batch fails its invocation (Lambda delivers it again) and an S3 notification on the
/// trigger queue is listed as a failed message (SQS delivers it again), while a message that
/// needed nothing kept (moto's `s3:TestEvent`) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_trigger_could_not_keep_are_not_answered_as_handled() {
    let Some(env) =
        common::env("events_the_trigger_could_not_keep_are_not_answered_as_handled").await
    else {
        return;
    };
    let h = &env.harness;
    let sink = TestServer::always(200, json!({})).await;
    define(&env, &sink).await;
    hold_the_flow(&env).await;
    h.dynamodb
        .delete_table()
        .table_name(&h.settings.table)
        .send()
        .await
        .unwrap();

    let ids = vec!["db-lost".to_string()];
    let answer = trigger_handler(&h.sluice, stream_batch(&ids, 0)).await;
    assert!(answer.is_err(), "a batch not kept fails: {answer:?}");

    let notification = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "in-bucket"}, "object": {"key": "drop/lost.ndjson", "sequencer": "0A"}}}]});
    let message = |id: &str, body: String| {
        json!({"messageId": id, "receiptHandle": id, "body": body, "eventSource": "aws:sqs",
               "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:trigger", "awsRegion": "us-east-1",
               "attributes": {}, "messageAttributes": {}})
    };
    let batch = json!({"Records": [
        message("m-notification", notification.to_string()),
        message("m-test-event", json!({"Event": "s3:TestEvent"}).to_string()),
    ]});
    let answer = trigger_handler(&h.sluice, batch).await.unwrap();
    assert_eq!(
        answer["batchItemFailures"],
        json!([{"itemIdentifier": "m-notification"}]),
        "{answer}"
    );
}
