//! A whole flow through SQS, DynamoDB and S3 on moto, with the real handlers invoked the way
//! event source mappings invoke them.

mod common;

use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use serde_json::{json, Value};
use sluice_core::ports::Kind;
use sluice_core::stages::trigger::{start_run, RunKind, RunRequest};
use sluice_model::JobStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<Value>>>;

/// Accepts orders with `ok: true` (201) and refuses the others (422).
async fn orders(State(seen): State<Seen>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    seen.lock().unwrap().push(body.clone());
    if body["ok"] == json!(true) {
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

#[tokio::test]
async fn webhook_records_reach_an_http_target_through_every_queue() {
    let Some(env) = common::env("webhook_records_reach_an_http_target_through_every_queue").await
    else {
        return;
    };
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/orders", post(orders))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let sluice = env.harness.sluice.clone();
    let store = &sluice.store;
    store
        .put_definition(
            Kind::Connection,
            "c1",
            &json!({"_id": "c1", "type": "http", "http": {"baseURI": format!("http://{addr}")}}),
        )
        .await
        .unwrap();
    store
        .put_definition(
            Kind::Export,
            "e1",
            &json!({"_id": "e1", "type": "webhook", "pageSize": 10}),
        )
        .await
        .unwrap();
    store
        .put_definition(
            Kind::Import,
            "i1",
            &json!({"_id": "i1", "_connectionId": "c1", "type": "http",
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

    // 25 records in pages of 10: three pages; every fifth record is refused.
    let records: Vec<Value> = (0..25).map(|n| json!({"n": n, "ok": n % 5 != 0})).collect();
    let started = start_run(
        &sluice,
        "f1",
        RunRequest {
            records: Some(records),
            ..Default::default()
        },
        RunKind::Webhook,
    )
    .await
    .expect("run starts")
    .expect("flow was idle");

    let job = env
        .harness
        .wait_for_job(&started.job_id, Duration::from_secs(60))
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
