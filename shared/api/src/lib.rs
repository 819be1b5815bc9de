//! The flows API: one axum router, served locally by `sluice dev` and on Lambda by
//! lambda_http in `functions/api`.

pub mod auth;
pub mod errors;
pub mod openapi;
pub mod routes;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use sluice_core::Sluice;
use std::sync::Arc;

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Who may call the API: `Authorization: Bearer <key>`, each key with a name for the audit log.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// (name, key) pairs.
    pub api_keys: Vec<(String, String)>,
}

impl ApiConfig {
    /// Keys from `SLUICE_API_KEYS`, written `name:key,name:key` (a bare `key` is named `key<n>`).
    pub fn from_env() -> Self {
        Self::parse(&std::env::var("SLUICE_API_KEYS").unwrap_or_default())
    }

    pub fn parse(spec: &str) -> Self {
        let api_keys = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, item)| match item.split_once(':') {
                Some((name, key)) => (name.trim().to_string(), key.trim().to_string()),
                None => (format!("key{}", i + 1), item.to_string()),
            })
            .filter(|(_, key)| !key.is_empty())
            .collect();
        ApiConfig { api_keys }
    }
}

/// The whole API.
pub fn router(sluice: Arc<Sluice>, config: ApiConfig) -> Router {
    let config = Arc::new(config);
    let protected = Router::new()
        .merge(routes::flows::routes())
        .merge(routes::definitions::connections::routes())
        .merge(routes::definitions::exports::routes())
        .merge(routes::definitions::imports::routes())
        .merge(routes::definitions::integrations::routes())
        .merge(routes::jobs::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            config,
            auth::require_key,
        ))
        .with_state(sluice);
    let open = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/openapi.json", get(|| async { Json(openapi::document()) }));
    open.merge(protected)
        .fallback(|| async {
            errors::ApiError {
                status: axum::http::StatusCode::NOT_FOUND,
                errors: vec![errors::ErrorEntry {
                    code: "not_found",
                    message: "No such route".into(),
                    field: None,
                }],
            }
        })
        .method_not_allowed_fallback(|| async {
            errors::ApiError {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                errors: vec![errors::ErrorEntry {
                    code: "validation_error",
                    message: "Method not allowed on this route".into(),
                    field: None,
                }],
            }
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}
