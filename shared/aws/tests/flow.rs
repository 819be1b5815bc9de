//! A whole flow through SQS, DynamoDB and S3 on moto, with the real handlers invoked the way
//! event source mappings invoke them (and files picked up from a real vsftpd on loopback).

mod common;

use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use serde_json::{json, Value};
use sluice_core::ports::Kind;
use sluice_core::Stage;
use sluice_model::JobStatus;
use sluice_model::RunKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<Value>>>;

/// Accepts orders with `ok: true` (201) and refuses the others (422).
async fn orders(State(seen): State<Seen>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    seen.lock().unwrap().push(body.clone());
    if body["ok"] == json!(true) || body["ok"] == json!("true") {
        (
            StatusCode::CREATED,
            Json(json!({"id": format!("o-{}", body["n"])})),
        )
    } else {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "refused"})),
        )
    }
}

/// Connection c1 (http, `base_uri`), webhook export e1 (pages of 10), http import i1 POSTing
/// each record to /orders, flow f1 from e1 to i1.
async fn define_flow(env: &common::Env, base_uri: &str) {
    let store = &env.harness.sluice.store;
    store
        .put_definition(
            Kind::Connection,
            "c1",
            &json!({"_id": "c1", "name": "c1", "type": "http", "http": {"baseURI": base_uri}}),
        )
        .await
        .unwrap();
    store
        .put_definition(
            Kind::Export,
            "e1",
            &json!({"_id": "e1", "name": "e1", "type": "webhook", "pageSize": 10}),
        )
        .await
        .unwrap();
    store
        .put_definition(
            Kind::Import,
            "i1",
            &json!({"_id": "i1", "name": "i1", "_connectionId": "c1", "type": "http",
                    "http": {"method": "POST", "relativeURI": "/orders"}}),
        )
        .await
        .unwrap();
    store
        .put_definition(
            Kind::Flow,
            "f1",
            &json!({"_id": "f1", "name": "orders",
                    "pageGenerators": [{"_exportId": "e1"}],
                    "pageProcessors": [{"type": "import", "_importId": "i1"}]}),
        )
        .await
        .unwrap();
}

async fn serve_orders() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/orders", post(orders))
        .with_state(seen.clone());
    (serve(app).await, seen)
}

/// Records what a flow's after-process callback posts to /done.
async fn serve_callbacks() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = |State(seen): State<Seen>, Json(body): Json<Value>| async move {
        seen.lock().unwrap().push(body);
        StatusCode::OK
    };
    let app = Router::new()
        .route("/done", post(record))
        .with_state(seen.clone());
    (serve(app).await, seen)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn webhook_records_reach_an_http_target_through_every_queue() {
    let Some(env) = common::env("webhook_records_reach_an_http_target_through_every_queue").await
    else {
        return;
    };
    let (base_uri, seen) = serve_orders().await;
    let sluice = env.harness.sluice.clone();
    let store = &sluice.store;
    define_flow(&env, &base_uri).await;

    // 25 records in pages of 10: three pages; every fifth record is refused.
    let records: Vec<Value> = (0..25).map(|n| json!({"n": n, "ok": n % 5 != 0})).collect();
    let job_id = common::start_as(&sluice, "f1", records, RunKind::Webhook).await;

    let job = env
        .harness
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::CompletedWithErrors, "{job:?}");
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (20, 5, 0),
        "records in = success + error + ignore"
    );
    assert_eq!(job.num_pages, 3);
    let errors = store.list_errors(&job.id).await.unwrap();
    assert_eq!(errors.len(), 5, "each refused record is a stored job error");

    let mut received: Vec<i64> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["n"].as_i64().unwrap())
        .collect();
    received.sort();
    assert_eq!(
        received,
        (0..25).collect::<Vec<_>>(),
        "each record sent exactly once"
    );
}

/// Batches through the queues and the DynamoDB ledger: 10 records in requests of 4, each
/// record judged on its own result in the batch reply (`ok: false` ones refused with a
/// message), matched by key.
#[tokio::test]
async fn batched_records_get_their_own_results_through_the_queues() {
    let Some(env) = common::env("batched_records_get_their_own_results_through_the_queues").await
    else {
        return;
    };
    let seen: Seen = Arc::default();
    let bulk = |State(seen): State<Seen>, Json(body): Json<Value>| async move {
        seen.lock().unwrap().push(body.clone());
        let mut results: Vec<Value> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|r| match r["ok"] == json!(true) {
                true => json!({"n": r["n"], "id": format!("o-{}", r["n"])}),
                false => json!({"n": r["n"], "error": format!("{} refused", r["n"])}),
            })
            .collect();
        results.reverse();
        Json(json!({"results": results}))
    };
    let app = Router::new()
        .route("/bulk", post(bulk))
        .with_state(seen.clone());
    let base_uri = serve(app).await;
    define_flow(&env, &base_uri).await;
    let sluice = env.harness.sluice.clone();
    sluice
        .store
        .put_definition(
            Kind::Import,
            "i1",
            &json!({"_id": "i1", "name": "i1", "_connectionId": "c1", "type": "http",
                    "http": {"method": "POST", "relativeURI": "/bulk", "requestMode": "page",
                             "batchSize": 4, "body": "{{json records}}",
                             "response": {"resourcePath": "results", "errorPath": "error",
                                          "matchBy": {"resultPath": "n", "recordPath": "n"}}}}),
        )
        .await
        .unwrap();
    let records: Vec<Value> = (0..10).map(|n| json!({"n": n, "ok": n % 4 != 1})).collect();
    let job_id = common::start_as(&sluice, "f1", records, RunKind::Webhook).await;
    let job = env
        .harness
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((job.num_success, job.num_error), (7, 3), "{job:?}");
    // Batches go out side by side: in any order.
    let mut sizes: Vec<usize> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![2, 4, 4]);
    let mut errors: Vec<(i64, String)> = sluice
        .store
        .list_errors(&job.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.record["n"].as_i64().unwrap(), e.message))
        .collect();
    errors.sort();
    let refused = |n: i64| (n, format!("{n} refused"));
    assert_eq!(errors, vec![refused(1), refused(5), refused(9)]);
}

#[tokio::test]
async fn a_router_sends_records_down_every_matching_branch_through_the_queues() {
    let Some(env) =
        common::env("a_router_sends_records_down_every_matching_branch_through_the_queues").await
    else {
        return;
    };
    let (base_uri, seen) = serve_orders().await;
    let sluice = env.harness.sluice.clone();
    let store = &sluice.store;
    define_flow(&env, &base_uri).await;
    // i2 posts every record with its own `ok` and says it came down the branch "all".
    store
        .put_definition(
            Kind::Import,
            "i2",
            &json!({"_id": "i2", "name": "i2", "_connectionId": "c1", "type": "http",
                    "http": {"method": "POST", "relativeURI": "/orders",
                             "body": "{\"n\": {{record.n}}, \"ok\": {{record.ok}}, \"branch\": \"all\"}"}}),
        )
        .await
        .unwrap();
    store
        .put_definition(
            Kind::Flow,
            "f2",
            &json!({"_id": "f2", "name": "routed", "pageGenerators": [{"_exportId": "e1"}],
                    "routers": [{"id": "r", "routeRecordsTo": "all_matching_branches", "branches": [
                        {"name": "ok", "inputFilter": {"type": "cel", "expression": "record.ok"},
                         "pageProcessors": [{"type": "import", "_importId": "i1"}]},
                        {"name": "all", "pageProcessors": [{"type": "import", "_importId": "i2"}]}]}]}),
        )
        .await
        .unwrap();
    // 12 records in pages of 10; every third one is not ok: branch "all" only, refused there.
    let records: Vec<Value> = (0..12).map(|n| json!({"n": n, "ok": n % 3 != 0})).collect();
    let job_id = common::start_as(&sluice, "f2", records, RunKind::Webhook).await;
    let job = env
        .harness
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (8, 4, 0),
        "each record counted once, by its first branch: {job:?}"
    );
    assert_eq!((job.num_pages, job.num_branch_pages), (2, 2), "{job:?}");
    assert_eq!(store.list_errors(&job.id).await.unwrap().len(), 4);
    let bodies = seen.lock().unwrap().clone();
    let down = |all: bool| {
        bodies
            .iter()
            .filter(|b| (b["branch"] == "all") == all)
            .count()
    };
    assert_eq!((down(false), down(true)), (8, 12), "{bodies:?}");
}

#[tokio::test]
async fn a_page_larger_than_an_sqs_message_travels_by_reference() {
    let Some(env) = common::env("a_page_larger_than_an_sqs_message_travels_by_reference").await
    else {
        return;
    };
    let (base_uri, seen) = serve_orders().await;
    define_flow(&env, &base_uri).await;
    let sluice = env.harness.sluice.clone();
    // 10 records of 30 KiB: one page of ~300 KiB, over SQS's 256 KiB limit.
    let records: Vec<Value> = (0..10)
        .map(|n| json!({"n": n, "ok": true, "blob": "z".repeat(30 * 1024)}))
        .collect();
    let job_id = common::start_as(&sluice, "f1", records, RunKind::Webhook).await;
    let job = env
        .harness
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!((job.num_success, job.num_error), (10, 0));
    assert_eq!(seen.lock().unwrap().len(), 10);
    let stored = sluice
        .blobs
        .list(&env.harness.settings.system_bucket, "messages/")
        .await
        .unwrap();
    assert!(
        !stored.is_empty(),
        "the large page went through the system bucket"
    );
}

#[tokio::test]
async fn a_page_failing_every_delivery_ends_as_job_errors_via_the_dead_letter_queue() {
    let Some(env) = common::env("a_page_failing_every_delivery_ends_as_job_errors").await else {
        return;
    };
    let (base_uri, seen) = serve_orders().await;
    define_flow(&env, &base_uri).await;
    let sluice = env.harness.sluice.clone();
    let (hooks, done) = serve_callbacks().await;
    let mut flow = sluice
        .store
        .get_definition(Kind::Flow, "f1")
        .await
        .unwrap()
        .unwrap();
    flow["afterProcess"] = json!([{"url": format!("{hooks}/done")}]);
    flow["alerts"] = json!({"webhook": {"url": format!("{hooks}/done")},
        "email": {"to": ["ops@example.com", "oncall@example.com"]}});
    sluice
        .store
        .put_definition(Kind::Flow, "f1", &flow)
        .await
        .unwrap();
    let records: Vec<Value> = (0..3).map(|n| json!({"n": n, "ok": true})).collect();
    let job_id = common::start_as(&sluice, "f1", records, RunKind::Webhook).await;
    // The import vanishes after the run started: translate fails on every delivery, SQS moves
    // the page to the dead-letter queue after 5 receives, and the DLQ consumer settles it.
    assert!(sluice
        .store
        .delete_definition(Kind::Import, "i1")
        .await
        .unwrap());
    let job = env
        .harness
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::CompletedWithErrors, "{job:?}");
    assert_eq!((job.num_success, job.num_error, job.num_ignore), (0, 3, 0));
    let errors = sluice.store.list_errors(&job.id).await.unwrap();
    assert_eq!(errors.len(), 3);
    assert!(
        errors
            .iter()
            .all(|e| e.code == sluice_model::FailureCode::DeadLetter),
        "{errors:?}"
    );
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
    // translate's dead-letter path closed the job; the deliver function posts its callback,
    // then the flow's failure alert.
    env.harness.drain(Stage::Deliver).await.unwrap();
    let done = done.lock().unwrap();
    assert_eq!(done.len(), 2, "one after-process call, one alert: {done:?}");
    assert_eq!(done[0]["_id"], json!(job.id));
    assert_eq!(done[0]["numError"], json!(3));
    assert_eq!(done[1]["jobId"], json!(job.id));
    assert_eq!(done[1]["firstErrors"][0]["code"], "dead_letter");
    let text = done[1]["text"].as_str().unwrap();
    assert!(text.contains("3 error(s)"), "{done:?}");
    // ... and mails it through SES, from the deployment's sender, with the webhook's words.
    let mail = env.moto.sent_mail().unwrap();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["source"], sluice_aws::harness::ALERT_SENDER);
    assert_eq!(
        mail[0]["destinations"]["ToAddresses"],
        json!(["ops@example.com", "oncall@example.com"])
    );
    assert_eq!(
        mail[0]["subject"],
        format!(
            "Sluice: flow \"{}\" job {} completed with 3 error(s)",
            flow["name"].as_str().unwrap(),
            job.id
        )
    );
    assert_eq!(mail[0]["body"], text);
}

#[tokio::test]
async fn an_object_dropped_in_s3_starts_a_run_through_the_trigger_queue() {
    let Some(env) = common::env("an_object_dropped_in_s3_starts_a_run").await else {
        return;
    };
    let (base_uri, seen) = serve_orders().await;
    define_flow(&env, &base_uri).await;
    let h = &env.harness;
    let store = &h.sluice.store;
    store
        .put_definition(
            Kind::Export,
            "e2",
            &json!({"_id": "e2", "name": "e2", "type": "s3", "s3": {"bucket": "in-bucket", "prefix": "drop/",
                    "suffix": ".csv"}, "file": {"type": "csv"}}),
        )
        .await
        .unwrap();
    store
        .put_definition(
            Kind::Flow,
            "f2",
            &json!({"_id": "f2", "name": "f2", "pageGenerators": [{"_exportId": "e2"}],
                    "pageProcessors": [{"type": "import", "_importId": "i1"}]}),
        )
        .await
        .unwrap();

    common::notify_trigger_queue(&env, "in-bucket").await;
    // Not matching the export (suffix): must not start anything.
    h.sluice
        .blobs
        .put("in-bucket", "drop/readme.txt", "hello".into())
        .await
        .unwrap();
    h.sluice
        .blobs
        .put(
            "in-bucket",
            "drop/new orders.csv",
            "n,ok\n1,true\n2,true\n3,no\n".into(),
        )
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let job = loop {
        if let Some(job) = store.list_jobs("f2", 1).await.unwrap().pop() {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "no run started");
        if h.pump().await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let job = h
        .wait_for_job(&job.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((job.num_success, job.num_error), (2, 1), "{job:?}");
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(
        store.list_jobs("f2", 10).await.unwrap().len(),
        1,
        "one object, one run"
    );
}

#[tokio::test]
async fn the_eventbridge_tick_starts_due_flows_through_the_trigger_function() {
    let Some(env) = common::env("the_eventbridge_tick_starts_due_flows").await else {
        return;
    };
    let (base_uri, _seen) = serve_orders().await;
    define_flow(&env, &base_uri).await;
    let sluice = env.harness.sluice.clone();
    let mut flow = sluice
        .store
        .get_definition(Kind::Flow, "f1")
        .await
        .unwrap()
        .unwrap();
    flow["schedule"] = json!("* * * * *");
    sluice
        .store
        .put_definition(Kind::Flow, "f1", &flow)
        .await
        .unwrap();
    // Due at the minute that began last: a time the schedule fired.
    let due = {
        use chrono::{DurationRound, TimeDelta};
        chrono::Utc::now()
            .duration_trunc(TimeDelta::minutes(1))
            .unwrap()
    };
    sluice.store.set_next_run("f1", Some(due)).await.unwrap();
    // The event EventBridge sends for `rate(1 minute)`.
    let tick = json!({"version": "0", "id": "e", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-22T10:00:00Z",
        "region": "us-east-1", "resources": [], "detail": {}});
    let answer = sluice_aws::trigger_handler(&sluice, tick).await.unwrap();
    let started = answer["started"].as_array().expect("started runs listed");
    assert_eq!(started.len(), 1, "{answer}");
    let jobs = sluice.store.list_jobs("f1", 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].trigger, sluice_model::RunKind::Schedule);
    assert!(
        sluice
            .store
            .due_flows(chrono::Utc::now())
            .await
            .unwrap()
            .is_empty(),
        "the flow's due time moved on"
    );
}

#[tokio::test]
async fn an_ftp_export_is_read_by_the_trigger_and_its_files_deleted_after_the_job_completes() {
    let Some(env) = common::env("an_ftp_export_is_read_by_the_trigger").await else {
        return;
    };
    let ftp = sluice_testkit::ftpd::FtpServer::start(sluice_testkit::ftpd::FtpMode::Explicit)
        .expect("vsftpd starts");
    let inbox = ftp.writable_dir("inbox");
    std::fs::write(inbox.join("a.csv"), "n,ok\n1,true\n2,true\n").unwrap();
    std::fs::write(inbox.join("b.csv"), "n,ok\n3,true\n").unwrap();
    let a_modified = std::fs::metadata(inbox.join("a.csv"))
        .unwrap()
        .modified()
        .unwrap();
    let (base_uri, seen) = serve_orders().await;
    define_flow(&env, &base_uri).await;
    let h = &env.harness;
    h.define([
        (
            Kind::Connection,
            "ftp",
            json!({"_id": "ftp", "name": "ftp", "type": "ftp", "ftp": {"type": "ftps",
                   "hostURI": "127.0.0.1", "port": ftp.port, "username": ftp.user,
                   "password": ftp.password, "trustedCertificates": ftp.ca_pem().unwrap()}}),
        ),
        (
            Kind::Export,
            "pickup",
            json!({"_id": "pickup", "name": "pickup", "type": "ftp", "_connectionId": "ftp",
                   "ftp": {"directoryPath": "inbox", "fileNameEndsWith": ".csv"}}),
        ),
        (
            Kind::Flow,
            "fp",
            json!({"_id": "fp", "name": "fp", "pageGenerators": [{"_exportId": "pickup"}],
                   "pageProcessors": [{"type": "import", "_importId": "i1"}]}),
        ),
    ])
    .await;
    let run = || async {
        let job_id = common::start_export(&h.sluice, "fp").await;
        let job = h
            .wait_for_job(&job_id, Duration::from_secs(60))
            .await
            .unwrap();
        // The closer queued the files to the trigger, which deletes them.
        h.drain(Stage::Trigger).await.unwrap();
        job
    };
    let job = run().await;
    assert_eq!(
        (job.status, job.num_success),
        (JobStatus::Completed, 3),
        "{job:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(
        std::fs::read_dir(&inbox).unwrap().count(),
        0,
        "both files deleted"
    );
    // The version of a.csv read put back (same bytes, same time) beside a new file: only the
    // new one is read, and deleted; the memory is on DynamoDB.
    std::fs::write(inbox.join("a.csv"), "n,ok\n1,true\n2,true\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(inbox.join("a.csv"))
        .unwrap()
        .set_modified(a_modified)
        .unwrap();
    std::fs::write(inbox.join("c.csv"), "n,ok\n4,true\n").unwrap();
    let second = run().await;
    assert_eq!(second.num_success, 1, "{second:?}");
    assert_eq!(seen.lock().unwrap().len(), 4);
    let left: Vec<_> = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["a.csv"]);
}
