//! `sluice dev sink`: a small REST API to send the example flow's records to. It keeps the
//! last [`KEPT`] orders for `GET /orders` and only counts the older ones, so its memory stays
//! the same however many orders a load test sends it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// How many of the most recent orders `GET /orders` shows.
const KEPT: usize = 1000;

#[derive(Default)]
struct Orders(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    /// Orders received so far (the next id).
    received: u64,
    /// The last [`KEPT`] of them, oldest first.
    recent: VecDeque<Value>,
}

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
    let mut kept = orders.0.lock().unwrap();
    kept.received += 1;
    let id = format!("ord-{}", kept.received);
    if kept.recent.len() == KEPT {
        kept.recent.pop_front();
    }
    kept.recent.push_back(json!({"id": id, "order": order}));
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "status": "accepted"})),
    )
}

/// The most recent orders (at most [`KEPT`], oldest first); `X-Orders-Received` says how many
/// came in all.
async fn list(State(orders): State<Arc<Orders>>) -> ([(&'static str, String); 1], Json<Value>) {
    let kept = orders.0.lock().unwrap();
    (
        [("x-orders-received", kept.received.to_string())],
        Json(Value::Array(kept.recent.iter().cloned().collect())),
    )
}
