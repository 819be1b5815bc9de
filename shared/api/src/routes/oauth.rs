//! OAuth2 authorization-code set-up (`sluice_core::stages::deliver::authorization_url` and
//! `complete_authorization`): `POST /connections/{id}/oauth2/authorize` (behind the API key)
//! issues the URL a user opens; `GET /oauth2/callback` (open: the provider sends the user's
//! browser there) takes the code, checked by its one-time, expiring `state`. Neither answer
//! holds a token.

use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::extract::Ids;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sluice_core::stages::deliver::{authorization_url, complete_authorization, Authorization};
use sluice_core::Sluice;
use std::sync::Arc;

/// The callback path: open (no bearer key), each call checked by its `state`.
pub const CALLBACK_PATH: &str = "/oauth2/callback";

type St = State<Arc<Sluice>>;

/// Issues an authorization URL for a connection of grant `authorization_code`: open it, allow
/// access, and the provider calls back `redirectURI` (`/oauth2/callback` here) within 10
/// minutes; the callback stores the refresh token as the connection's `refreshToken` secret.
#[utoipa::path(post, path = "/connections/{id}/oauth2/authorize", tag = "connections",
    operation_id = "authorizeConnection",
    params(("id" = String, Path, description = "_id of an oauth2 connection with grantType authorization_code")),
    responses((status = 200, description = "The URL to open, and until when its callback is taken", body = Authorization),
              (status = 400, description = "validation_error: the connection's grant is not authorization_code", body = ErrorBody)))]
pub async fn authorize(State(s): St, Ids(id): Ids<String>) -> ApiResult<Json<Authorization>> {
    let connection = s.connection(&id).await?;
    Ok(Json(authorization_url(&s, &connection).await?))
}

/// What the provider's redirect carries (RFC 6749 §4.1.2).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Callback {
    /// The authorization code.
    code: Option<String>,
    /// The state `authorize` issued.
    state: Option<String>,
    /// The provider's refusal (`access_denied`, ...), instead of a code.
    error: Option<String>,
}

/// Where the provider sends the user back: spends the `state` (unknown, expired or used
/// ones are refused: CSRF), exchanges the code, stores the refresh token.
#[utoipa::path(get, path = "/oauth2/callback", tag = "connections", operation_id = "oauth2Callback",
    security(()), params(Callback),
    responses((status = 200, description = "Authorized: the refresh token is stored (the page says for which connection)", content_type = "text/plain", body = String),
              (status = 400, description = "validation_error: no code, the provider's error, or a state unknown, expired or already used", body = ErrorBody)))]
pub async fn callback(State(s): St, Query(q): Query<Callback>) -> ApiResult<Response> {
    if let Some(error) = q.error {
        // Only the provider's code word: its description is not ours to repeat.
        let word: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(40)
            .collect();
        return Err(ApiError::validation(
            Some("error".into()),
            format!("the provider refused the authorization ({word}): start it again"),
        ));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(ApiError::validation(
            Some("code".into()),
            "the callback needs code and state",
        ));
    };
    let id = complete_authorization(&s, &state, &code).await?;
    let page = format!("Connection {id} is authorized: Sluice stored its refresh token. You may close this page.\n");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        page,
    )
        .into_response())
}

/// `authorize`, behind the key layer.
pub fn protected() -> axum::Router<Arc<Sluice>> {
    axum::Router::new().route(
        "/connections/{id}/oauth2/authorize",
        axum::routing::post(authorize),
    )
}

/// The callback, outside it.
pub fn open() -> axum::Router<Arc<Sluice>> {
    axum::Router::new().route(CALLBACK_PATH, axum::routing::get(callback))
}
