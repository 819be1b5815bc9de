//! The open routes: no key needed.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The paths served without `Authorization`; every other route needs a key.
pub const OPEN_PATHS: [&str; 2] = ["/healthz", "/openapi.json"];

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

#[utoipa::path(get, path = "/healthz", tag = "meta", operation_id = "health", security(()),
    responses((status = 200, description = "The service answers", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(get, path = "/openapi.json", tag = "meta", operation_id = "openapi", security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
pub async fn openapi() -> Json<&'static serde_json::Value> {
    Json(crate::schemas::document_json())
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    use axum::routing::get;
    axum::Router::new()
        .route(OPEN_PATHS[0], get(health))
        .route(OPEN_PATHS[1], get(openapi))
}
