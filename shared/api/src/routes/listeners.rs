//! Webhook listeners: the public URLs source systems post records to, outside the API keys
//! (each export's listener verifies its own deliveries: `sluice_core::stages::trigger::listener`).
//! `POST /exports/{id}/data`, and `POST /exports/{id}/{token}/data` for a secret URL, as
//! integrator.io's listener URLs read. The body is read raw (an HMAC is over its bytes) up
//! to the listener's limit, 5 MiB, not the API's 1 MiB.

use crate::errors::{ApiError, ApiResult, ErrorBody, ErrorCode};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sluice_core::stages::trigger::listener::{self, Accepted, Delivery, MAX_BODY_BYTES};
use sluice_core::Sluice;
use std::sync::Arc;

/// The listener paths: open (no bearer key), each delivery verified by its export.
pub const PATHS: [&str; 2] = ["/exports/{id}/data", "/exports/{id}/{token}/data"];

type St = State<Arc<Sluice>>;

/// Records pushed by a source system: a JSON object (one record) or an array of them. The
/// export's `webhook.verify` decides the check; the records are kept (a waiting run of each
/// enabled flow reading the export) before the answer, so a success means they will run.
#[utoipa::path(post, path = "/exports/{id}/data", tag = "exports", operation_id = "deliverToListener",
    security(()), params(("id" = String, Path, description = "The webhook export")),
    request_body(content = Object, description = "A record (object) or an array of records, at most 5 MiB"),
    responses((status = "2XX", description = "Kept: the export's successStatusCode (default 204) with its successBody, if any",
                content((Object = "application/json"), (String = "text/plain"))),
              (status = 400, description = "validation_error: the body is not JSON records, or the id is malformed", body = ErrorBody),
              (status = 401, description = "unauthorized: the delivery failed the listener's check (the message says which); nothing was kept", body = ErrorBody),
              (status = 404, description = "not_found: no such export, it has no listener, or no enabled flow reads it", body = ErrorBody),
              (status = 413, description = "payload_too_large: the body is over 5 MiB", body = ErrorBody),
              (status = 415, description = "unsupported_media_type: a Content-Type other than JSON", body = ErrorBody),
              (status = 500, description = "internal: see the service logs", body = ErrorBody)))]
pub async fn deliver(
    State(s): St,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive(&s, &id, None, query.as_deref(), &headers, body).await
}

/// The same, for a listener whose URL is its secret (`webhook.verify` = `secret_url`).
#[utoipa::path(post, path = "/exports/{id}/{token}/data", tag = "exports", operation_id = "deliverToSecretUrl",
    security(()), params(("id" = String, Path, description = "The webhook export"),
                         ("token" = String, Path, description = "The listener's `webhook.token`")),
    request_body(content = Object, description = "A record (object) or an array of records, at most 5 MiB"),
    responses((status = "2XX", description = "Kept: the export's successStatusCode (default 204) with its successBody, if any",
                content((Object = "application/json"), (String = "text/plain"))),
              (status = 400, description = "validation_error: the body is not JSON records, or the id is malformed", body = ErrorBody),
              (status = 401, description = "unauthorized: the URL's secret is wrong; nothing was kept", body = ErrorBody),
              (status = 404, description = "not_found: no such export, it has no listener, or no enabled flow reads it", body = ErrorBody),
              (status = 413, description = "payload_too_large: the body is over 5 MiB", body = ErrorBody),
              (status = 415, description = "unsupported_media_type: a Content-Type other than JSON", body = ErrorBody),
              (status = 500, description = "internal: see the service logs", body = ErrorBody)))]
pub async fn deliver_to_secret_url(
    State(s): St,
    Path((id, token)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    receive(&s, &id, Some(&token), query.as_deref(), &headers, body).await
}

async fn receive(
    s: &Sluice,
    id: &str,
    url_token: Option<&str>,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if let Some(why) = sluice_model::validate::id_problem(id) {
        return Err(ApiError::validation(Some("id".into()), why));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("?");
        if !crate::extract::is_json(ct) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("Content-Type '{ct}' is not supported: a listener takes JSON records (Content-Type: application/json)"),
                None,
            ));
        }
    }
    let body = read_body(body).await?;
    let delivery = Delivery {
        export_id: id,
        url_token,
        headers,
        query,
        body: &body,
    };
    Ok(answer(listener::receive(s, delivery).await?))
}

/// The raw body, refused with 413 once it passes the limit.
async fn read_body(body: Body) -> ApiResult<axum::body::Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("Request body too large: a listener takes at most {MAX_BODY_BYTES} bytes (5 MiB); send the records in smaller deliveries"),
            None,
        )
    })
}

/// The listener's success answer: its body as JSON when it parses as JSON, else as text.
fn answer(accepted: Accepted) -> Response {
    let status = StatusCode::from_u16(accepted.status).unwrap_or(StatusCode::NO_CONTENT);
    let Some(body) = accepted.body else {
        return status.into_response();
    };
    let content_type = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub fn routes() -> axum::Router<Arc<Sluice>> {
    use axum::routing::post;
    axum::Router::new()
        .route(PATHS[0], post(deliver))
        .route(PATHS[1], post(deliver_to_secret_url))
}
