//! `sluice dev sink`: a small REST API to send the example flow's records to.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Orders(Mutex<Vec<Value>>);

pub async fn serve(port: u16) -> anyhow::Result<ExitCode> {
    let orders = Arc::new(Orders::default());
    let app = Router::new()
        .route("/orders", post(create).get(list))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(orders);
    let listener = super::listen(port).await?;
    eprintln!(
        "sink listening on http://{}  (POST /orders, GET /orders)",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

async fn create(
    State(orders): State<Arc<Orders>>,
    Json(order): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !order.is_object() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "an order is a JSON object"})),
        );
    }
    let mut all = orders.0.lock().unwrap();
    let id = format!("ord-{}", all.len() + 1);
    all.push(json!({"id": id, "order": order}));
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "status": "accepted"})),
    )
}

async fn list(State(orders): State<Arc<Orders>>) -> Json<Value> {
    Json(Value::Array(orders.0.lock().unwrap().clone()))
}
