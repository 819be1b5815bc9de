//! integrator.io's custom token refresh (`http.auth.token.refresh*`): a request of the
//! connection's own whose reply holds the token at `refreshTokenPath`. The request goes with
//! its own headers only (never the connection's auth or headers), to `refreshRelativeURI`
//! under the base or an absolute URL, through the same address policy as every request; an
//! error names the status, never the reply's text (which may echo the credential sent).

use super::oauth::{send_token_request, Fetched, TOKEN_TIMEOUT};
use super::transport::Outgoing;
use crate::ports::secrets::{resolve, resolve_headers};
use crate::stages::base_uri::BaseUri;
use crate::stages::translate::Escape;
use crate::{Error, Result, Sluice};
use serde_json::{json, Value};
use sluice_model::{HttpConnection, RefreshMediaType, RefreshMethod, TokenAuth};
use std::time::Duration;

/// The token from the connection's refresh request.
pub(super) async fn fetch(
    sluice: &Sluice,
    http: &HttpConnection,
    t: &TokenAuth,
) -> Result<Fetched> {
    let url = refresh_url(http, t)?;
    let media = t.refresh_media_type.unwrap_or(RefreshMediaType::Json);
    let mut headers = vec![(
        "content-type".to_string(),
        match media {
            RefreshMediaType::Json => "application/json",
            RefreshMediaType::Urlencoded => "application/x-www-form-urlencoded",
        }
        .to_string(),
    )];
    let field = "http.auth.token.refreshHeaders";
    headers.extend(resolve_headers(
        &*sluice.secrets,
        field,
        &t.refresh_headers,
    )?);
    let body = body(sluice, t, media)?;
    let method = match t.refresh_method.unwrap_or(RefreshMethod::Post) {
        RefreshMethod::Get => http::Method::GET,
        RefreshMethod::Post => http::Method::POST,
        RefreshMethod::Put => http::Method::PUT,
    };
    let request = Outgoing {
        method: &method,
        url,
        headers: &headers,
        body,
        timeout: TOKEN_TIMEOUT,
    };
    let (status, bytes) =
        send_token_request(sluice, http, "token refresh request", request).await?;
    token_of(
        status,
        &bytes,
        t.refresh_token_path.as_deref().unwrap_or("access_token"),
    )
}

/// `refreshRelativeURI` joined to the base, or an absolute URL (an auth host of its own).
fn refresh_url(http: &HttpConnection, t: &TokenAuth) -> Result<url::Url> {
    let field = "http.auth.token.refreshRelativeURI";
    let rel = t.refresh_relative_uri.as_deref().unwrap_or_default();
    if rel.contains("://") {
        return url::Url::parse(rel).map_err(|e| Error::invalid(field, e.to_string()));
    }
    let base = BaseUri::parse(&http.base_uri).map_err(|e| Error::invalid("http.baseURI", e))?;
    base.join(rel).map_err(|e| Error::invalid(field, e))
}

/// The body template rendered over the resolved credential, escaped for JSON in a JSON body.
fn body(sluice: &Sluice, t: &TokenAuth, media: RefreshMediaType) -> Result<Option<String>> {
    let Some(template) = &t.refresh_body else {
        return Ok(None);
    };
    let field = "http.auth.token.refreshToken";
    let credential = match &t.refresh_token {
        Some(raw) => Value::String(resolve(&*sluice.secrets, field, raw)?),
        None => Value::Null,
    };
    let data = json!({"connection": {"http": {"auth": {"token": {"refreshToken": credential}}}}});
    let escape = match media {
        RefreshMediaType::Json => Escape::JsonString,
        RefreshMediaType::Urlencoded => Escape::None,
    };
    let templates = &sluice.caches.templates;
    let rendered = templates
        .render_value_escaped(template, &data, escape)
        .map_err(|e| Error::invalid("http.auth.token.refreshBody", e))?;
    Ok(Some(rendered))
}

/// The token at `path` in a 2xx JSON reply, and its lifetime when the reply has a numeric
/// `expires_in` at the top.
fn token_of(status: u16, bytes: &[u8], path: &str) -> Result<Fetched> {
    let field = "http.auth.token.refreshTokenPath";
    if !(200..300).contains(&status) {
        return Err(Error::invalid(
            "http.auth.token",
            format!("the token refresh request was answered {status}"),
        ));
    }
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|_| Error::invalid("http.auth.token", "the token refresh reply is not JSON"))?;
    // The reply as responseMapping's `extract` sees one, so a path reads the same in both.
    let reply = json!({"status": status, "body": doc});
    let token =
        crate::stages::extract::select(&reply, path).map_err(|e| Error::invalid(field, e))?;
    match token {
        Value::String(token) if !token.is_empty() => Ok(Fetched {
            token,
            lifetime: doc["expires_in"].as_u64().map(Duration::from_secs),
        }),
        _ => Err(Error::invalid(
            field,
            format!("the token refresh reply (status {status}) holds no token at '{path}'"),
        )),
    }
}
