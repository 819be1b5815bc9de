//! A flow with script hooks through SQS, DynamoDB and S3 on moto: the export's preSavePage
//! (trigger), the import's preMap (translate) and postSubmit (evaluate), with the real
//! handlers invoked the way event source mappings invoke them.

mod common;

use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use serde_json::{json, Value};
use sluice_core::ports::Kind;
use sluice_model::JobStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<Value>>>;

/// 201 for records with `ok`, 422 for the others.
async fn orders(State(seen): State<Seen>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    seen.lock().unwrap().push(body.clone());
    if body["ok"] == json!(true) {
        (StatusCode::CREATED, Json(json!({"id": body["n"]})))
    } else {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "refused"})),
        )
    }
}

/// [`orders`] on a loopback port: its base URL, and what it was sent.
async fn serve_orders() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/orders", post(orders))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

const SCRIPT: &str = r#"
function preSavePage(options) {
  return {data: options.data.filter(d => d.n !== 3).map(d => Object.assign({}, d, {page: options.pageIndex}))};
}
function preMap(options) {
  return options.data.map(d => ({data: Object.assign({}, d, {name: 'order ' + d.n})}));
}
function postSubmit(options) {
  // A refusal of record 0 is forgiven; the other refusals stay errors.
  return options.responseData.map((r, i) => options.preMapData[i].n === 0 ? Object.assign({}, r, {errors: []}) : r);
}
"#;

#[tokio::test]
async fn a_flow_with_hooks_runs_through_every_queue() {
    let Some(env) = common::env("a_flow_with_hooks_runs_through_every_queue").await else {
        return;
    };
    let (base, seen) = serve_orders().await;

    let sluice = env.harness.sluice.clone();
    let hook = |f: &str| json!({"_scriptId": "s", "function": f});
    sluice
        .store
        .put_definition(
            Kind::Script,
            "s",
            &json!({"_id": "s", "name": "s", "content": SCRIPT}),
        )
        .await
        .unwrap();
    common::define_flow(
        &sluice,
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": base}}),
        json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": 5,
               "hooks": {"preSavePage": hook("preSavePage")}}),
    )
    .await;
    let mut import = sluice
        .store
        .get_definition(Kind::Import, "i")
        .await
        .unwrap()
        .unwrap();
    import["hooks"] = json!({"preMap": hook("preMap"), "postSubmit": hook("postSubmit")});
    sluice
        .store
        .put_definition(Kind::Import, "i", &import)
        .await
        .unwrap();

    // 10 records in pages of 5; record 3 is dropped by preSavePage; 0, 5 and 6 are refused
    // and postSubmit forgives 0.
    let records = (0..10)
        .map(|n| json!({"n": n, "ok": ![0, 5, 6].contains(&n)}))
        .collect();
    let job_id = common::start(&sluice, "f", records).await;
    let job = env
        .harness
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::CompletedWithErrors, "{job:?}");
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (7, 2, 1),
        "{job:?}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 9);
    let five = seen.iter().find(|b| b["n"] == 5).unwrap();
    assert_eq!(
        (five["name"].clone(), five["page"].clone()),
        (json!("order 5"), json!(1))
    );
}

/// A preSavePage abort holds across invocations: objects under an s3 prefix are read one
/// per invocation (each queues a continuation), and once the hook aborts, no later
/// invocation cuts a page (integrator.io: abort stops generating new pages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_save_page_abort_holds_across_continuations() {
    let Some(mut env) = common::env("a_pre_save_page_abort_holds_across_continuations").await
    else {
        return;
    };
    // Shorter than the 30 s the trigger keeps back per object: one object per invocation.
    env.harness.invocation_budget = Some(Duration::from_secs(10));
    let h = &env.harness;
    common::put_parts(h, "data", 6, json!({"ok": true})).await;
    let (base, seen) = serve_orders().await;
    let script = "function preSavePage(o) { return {data: o.data, abort: o.pageIndex >= 1}; }";
    h.sluice
        .store
        .put_definition(
            Kind::Script,
            "s",
            &json!({"_id": "s", "name": "s", "content": script}),
        )
        .await
        .unwrap();
    common::define_flow(
        &h.sluice,
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": base, "requestTimeoutMs": 1000}}),
        json!({"_id": "e", "name": "e", "type": "s3", "s3": {"bucket": "data", "prefix": "in/"}, "pageSize": 4,
               "hooks": {"preSavePage": {"_scriptId": "s", "function": "preSavePage"}}}),
    )
    .await;
    let job_id = common::start_export(&h.sluice, "f").await;

    // Objects 0 and 1 fill page 0; object 2 fills page 1, whose hook aborts: the reading
    // stops there instead of going on to objects 3 to 5.
    assert_eq!(
        h.drain(sluice_core::Stage::Trigger).await.unwrap(),
        3,
        "no invocation after the abort"
    );
    let job = h
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(job.num_pages, 2, "{job:?}");
    assert_eq!(job.num_success, 8, "{job:?}");
    let mut sent: Vec<i64> = (seen.lock().unwrap().iter())
        .map(|b| b["n"].as_i64().unwrap())
        .collect();
    sent.sort();
    assert_eq!(sent, (0..8).collect::<Vec<_>>());
}
