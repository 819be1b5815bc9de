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
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/orders", post(orders))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

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
