//! Event runs (S3 objects, DynamoDB stream batches) that arrive while their flow is running
//! wait their turn in the store: none is dropped, none runs twice.

use bytes::Bytes;
use serde_json::{json, Value};
use sluice_core::runs::start_run;
use sluice_core::stages::trigger::events::{on_s3_object, on_table_changes, TableChange};
use sluice_e2e::*;
use sluice_model::{Job, JobStatus, RunKind, RunRequest};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Flow `f` reads three exports: a webhook one (for the slow manual run), an s3 one (objects
/// landing in `in`) and a dynamodb one (table `orders`); each record is posted as it is.
/// Records whose id starts with `slow` take `slow` to answer.
async fn setup(slow: Duration) -> (Harness, TestServer) {
    let server = TestServer::start(move |_, r| {
        let answer = Answer::json(200, json!({}));
        if r.json()["id"].as_str().unwrap_or("").starts_with("slow") {
            Answer::Slow {
                delay: slow,
                then: Box::new(answer),
            }
        } else {
            answer
        }
    })
    .await;
    let h = Harness::new();
    let mut bundle = http_bundle(
        &server.base_url,
        json!({"http": {"body": "{{json record}}"}}),
        json!({}),
    );
    bundle["exports"] = json!([
        {"_id": "exp", "name": "exp", "type": "webhook"},
        {"_id": "objects", "name": "objects", "type": "s3", "s3": {"bucket": "in"}, "file": {"type": "ndjson"}},
        {"_id": "table", "name": "table", "type": "dynamodb", "dynamodb": {"tableName": "orders", "eventTypes": ["INSERT"]}}
    ]);
    bundle["flows"][0]["pageGenerators"] =
        json!([{"_exportId": "exp"}, {"_exportId": "objects"}, {"_exportId": "table"}]);
    h.load(bundle).await;
    (h, server)
}

/// Starts the slow manual run that holds the flow while events arrive.
async fn hold_the_flow(h: &Harness) -> String {
    let request = RunRequest {
        export_ids: Some(vec!["exp".into()]),
        records: Some((0..3).map(|i| json!({"id": format!("slow-{i}")})).collect()),
        ..Default::default()
    };
    start_run(&h.sluice(), "f", request, RunKind::Manual)
        .await
        .unwrap()
        .expect("the flow is free")
        .job_id
}

async fn put_object(h: &Harness, i: usize) -> String {
    let key = format!("drop/obj-{i:02}.ndjson");
    let body = format!("{{\"id\":\"s3-{i}-a\"}}\n{{\"id\":\"s3-{i}-b\"}}\n");
    h.sluice()
        .blobs
        .put("in", &key, Bytes::from(body))
        .await
        .unwrap();
    key
}

fn batch(i: usize, with_ids: bool) -> Vec<TableChange> {
    (0..3)
        .map(|j| TableChange {
            table_name: "orders".into(),
            event_name: "INSERT".into(),
            new_image: Some(json!({"id": format!("db-{i}-{j}")})),
            event_id: with_ids.then(|| format!("evt-{i}-{j}")),
        })
        .collect()
}

/// Waits until `n` jobs of flow `f` exist and all are finished, and the runtime is idle.
async fn all_jobs(h: &Harness, n: usize) -> Vec<Job> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let jobs = h.sluice().store.list_jobs("f", 1000).await.unwrap();
        if jobs.len() >= n && jobs.iter().all(|j| j.status.is_finished()) {
            h.runtime.wait_idle(Duration::from_secs(30)).await.unwrap();
            return h.sluice().store.list_jobs("f", 1000).await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} jobs, {} finished",
            jobs.len(),
            jobs.iter().filter(|j| j.status.is_finished()).count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How often the target received each record id.
fn received_ids(server: &TestServer) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for r in server.received() {
        let body: Value = r.json();
        *seen
            .entry(body["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arriving_while_the_flow_runs_all_run_in_turn_once_each() {
    let (h, server) = setup(Duration::from_millis(1500)).await;
    let s = h.sluice();
    let slow = hold_the_flow(&h).await;
    for i in 0..20 {
        let key = put_object(&h, i).await;
        let started = on_s3_object(&s, "in", &key, Some(&format!("seq-{i}")))
            .await
            .unwrap();
        assert!(started.is_empty(), "the flow is busy: object {i} waits");
        let started = on_table_changes(&s, batch(i, true)).await.unwrap();
        assert!(started.is_empty(), "the flow is busy: batch {i} waits");
    }
    let holder = s.store.get_job(&slow).await.unwrap().unwrap();
    assert_eq!(
        holder.status,
        JobStatus::Running,
        "every event arrived while the slow run held the flow"
    );

    let jobs = all_jobs(&h, 41).await;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for j in &jobs {
        *kinds.entry(j.trigger.as_str()).or_default() += 1;
        assert_eq!(j.status, JobStatus::Completed, "{j:?}");
    }
    assert_eq!(
        kinds,
        BTreeMap::from([("dynamodb", 20), ("manual", 1), ("s3", 20)]),
        "one run per object and per batch, started as what it was"
    );
    let counted: u64 = jobs.iter().map(|j| j.num_success).sum();
    let seen = received_ids(&server);
    assert_eq!(seen.len(), 3 + 20 * 2 + 20 * 3, "every record arrived");
    assert!(
        seen.values().all(|&n| n == 1),
        "none twice: {:?}",
        seen.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    assert_eq!(counted, 103, "every record counted once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_again_runs_once() {
    let (h, server) = setup(Duration::from_millis(600)).await;
    let s = h.sluice();
    // Once while the flow is free (the run starts at once), once while it is busy (the run
    // waits): each delivered twice, as S3 and stream deliveries may be.
    let key = put_object(&h, 0).await;
    let first = on_s3_object(&s, "in", &key, Some("seq-0")).await.unwrap();
    assert_eq!(
        first.len(),
        1,
        "the flow was free: the object's run started"
    );
    let again = on_s3_object(&s, "in", &key, Some("seq-0")).await.unwrap();
    assert!(
        again.is_empty(),
        "the same notification again starts nothing"
    );
    h.wait(&first[0].job_id).await;
    let again = on_s3_object(&s, "in", &key, Some("seq-0")).await.unwrap();
    assert!(again.is_empty(), "nor after its run ended");

    hold_the_flow(&h).await;
    for _ in 0..2 {
        on_s3_object(&s, "in", &put_object(&h, 1).await, Some("seq-1"))
            .await
            .unwrap();
        on_table_changes(&s, batch(0, true)).await.unwrap();
    }
    // The same key uploaded again is a new object: it runs.
    on_s3_object(&s, "in", &key, Some("seq-0-second-upload"))
        .await
        .unwrap();

    let jobs = all_jobs(&h, 5).await;
    assert_eq!(jobs.len(), 5, "{jobs:#?}");
    let seen = received_ids(&server);
    assert!(seen.values().all(|&n| n <= 2));
    assert_eq!(seen["s3-0-a"], 2, "the second upload of the key ran");
    assert_eq!(
        (seen["s3-1-a"], seen["db-0-0"], seen["db-0-2"]),
        (1, 1, 1),
        "each redelivered event once"
    );
}
