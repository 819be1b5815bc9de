//! Fetched tokens of http connections: OAuth 2.0 access tokens asked for with the
//! connection's grant (client credentials, or a refresh token), and the tokens of a custom
//! token refresh (`http.auth.token.refreshRelativeURI`, `custom_refresh.rs`), cached per
//! process until shortly before they expire.
//!
//! Invariant of the refresh-token grant: a refresh token the server sent is never lost to a
//! race. Token servers that rotate refresh tokens invalidate the old one when it is used, so
//! a process that refreshed with a token another process had already spent would be refused,
//! and two processes storing their rotations at once would leave one of them stored and the
//! other valid. So a refresh runs under the store's lease lock `oauth2:<connectionId>` (the
//! run-lock table; a flow id holds no `:`, so none can collide): its holder reads the refresh
//! token after taking the lock (the last rotation included), asks for tokens, stores the new
//! refresh token, then lets go. One refresh at a time across every process sharing the store.

use super::guard::AddressPolicy;
use super::transport::{Failure, Outgoing};
use crate::ports::secrets::{resolve, resolve_written};
use crate::{Error, Result, Sluice};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;
use sluice_model::{AuthType, Connection, HttpAuth, HttpConnection, OAuth2Auth, OAuth2Grant};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refresh this long before the token's stated expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// The most a token request may take.
pub(super) const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The refresh lock's lease: the token request and the write of the new refresh token fit in
/// it; a holder that died frees it when it runs out.
const REFRESH_LEASE: Duration = Duration::from_secs(45);
/// How long a refresh waits for another process's refresh (a lease that ran out included).
const REFRESH_WAIT: Duration = Duration::from_secs(50);
/// The token's lifetime when the reply names none (a 401 asks for a new one sooner).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// This process's access tokens, per connection.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, Cached>>,
    /// One token request at a time per process: many records waiting on an expired token
    /// must not each ask for a new one.
    fetching: tokio::sync::Mutex<()>,
}

struct Cached {
    token: String,
    fetched: Instant,
    until: Instant,
}

impl TokenCache {
    fn get(&self, connection_id: &str) -> Option<String> {
        let map = self.tokens.lock().unwrap();
        map.get(connection_id)
            .filter(|c| Instant::now() < c.until)
            .map(|c| c.token.clone())
    }

    /// Keeps `token` for `lifetime` (the reply's `expires_in`; [`DEFAULT_LIFETIME`] when it
    /// gives none) less the margin.
    pub(super) fn put(&self, connection_id: &str, token: &str, lifetime: Option<Duration>) {
        let lifetime = lifetime.unwrap_or(DEFAULT_LIFETIME);
        let now = Instant::now();
        let cached = Cached {
            token: token.to_string(),
            fetched: now,
            until: now + lifetime.saturating_sub(EXPIRY_MARGIN),
        };
        let mut map = self.tokens.lock().unwrap();
        map.insert(connection_id.to_string(), cached);
    }

    /// Forgets the token when it was fetched before `sent` (the request the target refused
    /// with 401 carried it). One fetched since is a refresh another record's 401 already
    /// caused: it is kept, so many records refused at once cause one refresh.
    pub(crate) fn forget_if_older(&self, connection_id: &str, sent: Instant) {
        let mut map = self.tokens.lock().unwrap();
        if map.get(connection_id).is_some_and(|c| c.fetched <= sent) {
            map.remove(connection_id);
        }
    }
}

/// What a token endpoint answers (RFC 6749 §5.1).
#[derive(Deserialize)]
pub(super) struct TokenReply {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// A token and how long it lives (the reply's `expires_in`, when it gives one).
pub(super) struct Fetched {
    pub token: String,
    pub lifetime: Option<Duration>,
}

/// The connection's fetched token: the cached one, else a new one from its token request.
pub(crate) async fn token(sluice: &Sluice, c: &Connection) -> Result<String> {
    let cache = &sluice.caches.http.tokens;
    if let Some(t) = cache.get(&c.id) {
        return Ok(t);
    }
    let _one_at_a_time = cache.fetching.lock().await;
    if let Some(t) = cache.get(&c.id) {
        return Ok(t);
    }
    let http = c
        .http
        .as_ref()
        .ok_or_else(|| Error::invalid("http", "missing"))?;
    let fetched = match http.auth.as_ref() {
        Some(a) if a.kind == AuthType::Oauth2 => {
            let o =
                (a.oauth2.as_ref()).ok_or_else(|| Error::invalid("http.auth.oauth2", "missing"))?;
            grant(sluice, c, http, o).await?
        }
        Some(HttpAuth { token: Some(t), .. }) if t.refreshes() => {
            super::custom_refresh::fetch(sluice, http, t).await?
        }
        _ => return Err(Error::invalid("http.auth", "fetches no token")),
    };
    cache.put(&c.id, &fetched.token, fetched.lifetime);
    Ok(fetched.token)
}

/// An access token by the connection's OAuth2 grant.
async fn grant(
    sluice: &Sluice,
    c: &Connection,
    http: &HttpConnection,
    o: &OAuth2Auth,
) -> Result<Fetched> {
    let reply = match o.grant_type {
        OAuth2Grant::ClientCredentials => {
            let form = vec![("grant_type", "client_credentials".to_string())];
            request_tokens(sluice, http, o, form).await?
        }
        OAuth2Grant::RefreshToken | OAuth2Grant::AuthorizationCode => {
            refresh(sluice, c, http, o).await?
        }
    };
    Ok(Fetched {
        token: reply.access_token,
        lifetime: reply.expires_in.map(Duration::from_secs),
    })
}

/// The refresh-token grant under the connection's refresh lock (see the module's invariant).
async fn refresh(
    sluice: &Sluice,
    c: &Connection,
    http: &HttpConnection,
    o: &OAuth2Auth,
) -> Result<TokenReply> {
    let field = "http.auth.oauth2.refreshToken";
    let reference = o.refresh_token.as_deref().unwrap_or_default();
    let name = refresh_secret_name(o)?;
    under_refresh_lock(sluice, c, async {
        let refresh_token =
            resolve_written(&*sluice.secret_store, &*sluice.secrets, field, reference)
                .await
                .map_err(|e| match (o.grant_type, e) {
                    (OAuth2Grant::AuthorizationCode, Error::Validation(_)) => Error::invalid(
                        field,
                        format!("connection {} is not authorized yet (secret {name} holds no refresh token): run `sluice oauth authorize {}`, or POST /connections/{}/oauth2/authorize, and open the URL", c.id, c.id, c.id),
                    ),
                    (_, e) => e,
                })?;
        let form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.clone()),
        ];
        let reply = request_tokens(sluice, http, o, form).await?;
        if let Some(new) = reply.refresh_token.as_deref().filter(|t| *t != refresh_token) {
            store_rotated(sluice, c, name, new).await;
        }
        Ok(reply)
    })
    .await
}

/// Runs `work` holding the connection's refresh lock (see the module's invariant).
pub(super) async fn under_refresh_lock<T>(
    sluice: &Sluice,
    c: &Connection,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let lock = format!("oauth2:{}", c.id);
    let owner = &sluice.settings.instance;
    take_refresh_lock(sluice, &lock, owner).await?;
    let result = work.await;
    if let Err(e) = sluice.store.release_lock(&lock, owner).await {
        tracing::warn!(connection = %c.id, error = %e, "could not release the OAuth2 refresh lock; its lease will run out");
    }
    result
}

/// Waits for the connection's refresh lock, polling (another process is refreshing).
async fn take_refresh_lock(sluice: &Sluice, lock: &str, owner: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let now = sluice.clock.now();
        if sluice
            .store
            .acquire_lock(lock, owner, now, REFRESH_LEASE)
            .await?
        {
            return Ok(());
        }
        if started.elapsed() > REFRESH_WAIT {
            return Err(Error::Internal(anyhow::anyhow!(
                "another process held the OAuth2 refresh lock {lock} for over {}s",
                REFRESH_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The secret name of a `secret:NAME` refresh token (validation has checked it is one).
pub(super) fn refresh_secret_name(o: &OAuth2Auth) -> Result<&str> {
    o.refresh_token
        .as_deref()
        .and_then(|r| r.strip_prefix("secret:"))
        .ok_or_else(|| {
            Error::invalid(
                "http.auth.oauth2.refreshToken",
                "must be a secret:NAME reference",
            )
        })
}

/// Stores the refresh token the server rotated to, trying a few times: the server has spent
/// the old one, so a lost write means authorizing again. The access token in hand is good
/// either way, so a write that keeps failing is logged (never the token) rather than failing
/// the records.
async fn store_rotated(sluice: &Sluice, c: &Connection, name: &str, token: &str) {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=3 {
        match sluice.secret_store.write(name, token).await {
            Ok(()) => {
                tracing::info!(connection = %c.id, secret = name, "stored the rotated OAuth2 refresh token");
                return;
            }
            Err(e) if attempt == 3 => {
                tracing::error!(connection = %c.id, secret = name, error = %e,
                    "could not store the rotated OAuth2 refresh token: the token server has spent the old one, so the next refresh will be refused; set secret {name} again");
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

/// Posts `form` (the grant's fields) to the token endpoint with the client's credentials:
/// HTTP Basic when the client has a secret (RFC 6749 §2.3.1), else `client_id` in the form
/// (a public client).
pub(super) async fn request_tokens(
    sluice: &Sluice,
    http: &HttpConnection,
    o: &OAuth2Auth,
    mut form: Vec<(&str, String)>,
) -> Result<TokenReply> {
    if let Some(scope) = &o.scope {
        form.push(("scope", scope.clone()));
    }
    let mut headers = vec![(
        "content-type".to_string(),
        "application/x-www-form-urlencoded".to_string(),
    )];
    if o.client_secret.is_empty() {
        form.push(("client_id", o.client_id.clone()));
    } else {
        let field = "http.auth.oauth2.clientSecret";
        let secret = resolve(&*sluice.secrets, field, &o.client_secret)?;
        let credentials = BASE64.encode(format!("{}:{secret}", o.client_id));
        headers.push(("authorization".to_string(), format!("Basic {credentials}")));
    }
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let token_uri = url::Url::parse(&o.token_uri)
        .map_err(|e| Error::invalid("http.auth.oauth2.tokenURI", e.to_string()))?;
    let request = Outgoing {
        method: &http::Method::POST,
        url: token_uri,
        headers: &headers,
        body: Some(body),
        timeout: TOKEN_TIMEOUT,
    };
    let (status, bytes) = send_token_request(sluice, http, "OAuth2 token request", request).await?;
    read_reply(status, &bytes)
}

/// Sends a token request (a grant, or a custom refresh) through the connection's address
/// policy and reads the whole reply: its status and body. `what` names the request in the
/// error (with its URL, never its headers or body).
pub(super) async fn send_token_request(
    sluice: &Sluice,
    http: &HttpConnection,
    what: &str,
    request: Outgoing<'_>,
) -> Result<(u16, bytes::Bytes)> {
    let url = request.url.clone();
    let failed = |e: Failure| match e {
        Failure::Refused(refused) => Error::Internal(refused.into()),
        e => Error::Internal(anyhow::anyhow!("{what} to {url} failed: {e}")),
    };
    let client = sluice
        .caches
        .http
        .client(AddressPolicy::of_connection(&sluice.settings, http));
    let resp = client.send(request).await.map_err(failed)?;
    let status = resp.status();
    let bytes = resp.body().await.map_err(failed)?;
    Ok((status, bytes))
}

/// The token reply, or an error that names the status and the RFC 6749 error code only:
/// the reply's other text may echo what was sent.
fn read_reply(status: u16, bytes: &[u8]) -> Result<TokenReply> {
    if (200..300).contains(&status) {
        if let Ok(reply) = serde_json::from_slice::<TokenReply>(bytes) {
            return Ok(reply);
        }
    }
    let code = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .filter(|code| RFC6749_ERRORS.contains(&code.as_str()));
    let advice = match code.as_deref() {
        Some("invalid_grant") => " (invalid_grant: the refresh token or code was refused; authorize again and set its secret)".to_string(),
        Some(code) => format!(" ({code})"),
        None => String::new(),
    };
    Err(Error::invalid(
        "http.auth.oauth2",
        format!("token endpoint answered {status} without an access_token{advice}"),
    ))
}

/// The error codes of RFC 6749 §5.2: the only words of an error reply repeated.
const RFC6749_ERRORS: [&str; 6] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];
