//! The flows API: one axum router, served locally by `sluice dev` and on Lambda by
//! lambda_http in `functions/api`.
//!
//! Every answer carries `X-Content-Type-Options: nosniff`; every error answer is the one
//! shape of [`errors`]; requests are read through [`extract`] (JSON objects only, safe ids).

pub mod auth;
pub mod errors;
pub mod extract;
pub mod openapi;
pub mod reference;
pub mod routes;
pub mod schemas;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;
use errors::{ApiError, ErrorCode};
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

/// Browsers must not guess another type for an answer (a JSON body read as HTML).
async fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
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
        .merge(routes::definitions::scripts::routes())
        .merge(routes::jobs::routes())
        .merge(routes::oauth::protected())
        .route_layer(axum::middleware::from_fn_with_state(
            config,
            auth::require_key,
        ))
        .with_state(sluice.clone());
    // Outside the keys: each listener verifies its own deliveries, the OAuth2 callback its
    // state.
    let listeners = (routes::listeners::routes())
        .merge(routes::oauth::open())
        .with_state(sluice);
    routes::meta::routes()
        .merge(protected)
        .merge(listeners)
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "No such route", None) })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "Method not allowed on this route",
                None,
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(nosniff))
}
