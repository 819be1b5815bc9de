//! Authorization-code set-up of an OAuth2 connection (RFC 6749 §4.1; PKCE S256, RFC 7636):
//! the URL a user opens to let Sluice in, and the callback's exchange of the code for tokens,
//! whose refresh token is stored as the connection's `refreshToken` secret.
//!
//! Invariant (CSRF): a callback is honoured only with a `state` Sluice issued for that
//! connection less than [`STATE_LIFETIME`] ago, and only once: the state is spent (a
//! compare-and-set on the store's state `oauth2-state:<state>`) before the code is
//! exchanged, so a code someone else obtained cannot be planted on a connection, and a
//! replayed callback exchanges nothing. The PKCE verifier stays in the store, never in the URL.

use super::oauth::{self, refresh_secret_name, under_refresh_lock};
use crate::{Error, Result, Sluice};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_model::{Connection, HttpConnection, OAuth2Auth, OAuth2Grant};
use std::time::Duration;

/// How long an authorization URL may be used.
pub const STATE_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// What a state stands for until its callback comes.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    connection_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_verifier: Option<String>,
    expires_at: DateTime<Utc>,
}

/// An authorization URL to open, and until when its callback is taken.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"authorizationURL": "https://auth.example.com/authorize?response_type=code&client_id=sluice&redirect_uri=https%3A%2F%2Fsluice.example.com%2Foauth2%2Fcallback&state=q3Xv0cXn5TQ1yT0a4kq8G6f0m3Jb2sVfN8dW1pR7uEo",
    "expiresAt": "2026-12-02T10:10:00.000Z"}))]
pub struct Authorization {
    /// Open this in a browser and allow access; the provider then calls back `redirectURI`.
    #[serde(rename = "authorizationURL")]
    pub authorization_url: String,
    pub expires_at: DateTime<Utc>,
}

fn state_key(state: &str) -> String {
    format!("oauth2-state:{state}")
}

/// 32 random bytes, base64url: a `state` or a PKCE verifier (43 characters, RFC 7636 §4.1).
fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::rng().random::<[u8; 32]>())
}

/// The connection's http settings and its `authorization_code` grant, or why it has none.
fn code_grant(c: &Connection) -> Result<(&HttpConnection, &OAuth2Auth)> {
    let http = c.http.as_ref();
    let grant = http.and_then(|h| h.auth.as_ref()?.oauth2.as_ref().map(|o| (h, o)));
    match grant {
        Some((h, o)) if o.grant_type == OAuth2Grant::AuthorizationCode => Ok((h, o)),
        _ => Err(Error::invalid(
            "http.auth.oauth2.grantType",
            format!(
                "connection {} is not an oauth2 connection with grantType authorization_code",
                c.id
            ),
        )),
    }
}

/// Issues a state for `connection` and the authorization URL that carries it.
pub async fn authorization_url(sluice: &Sluice, connection: &Connection) -> Result<Authorization> {
    let (_, o) = code_grant(connection)?;
    let field = "http.auth.oauth2.authURI";
    let mut url = url::Url::parse(o.auth_uri.as_deref().unwrap_or_default())
        .map_err(|e| Error::invalid(field, e.to_string()))?;
    let state = random_token();
    let verifier = o.use_pkce.then(random_token);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &o.client_id)
            .append_pair(
                "redirect_uri",
                o.redirect_uri.as_deref().unwrap_or_default(),
            )
            .append_pair("state", &state);
        if let Some(scope) = &o.scope {
            q.append_pair("scope", scope);
        }
        if let Some(v) = &verifier {
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
            q.append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
        }
    }
    let expires_at = sluice.clock.now() + chrono::Duration::from_std(STATE_LIFETIME).unwrap();
    let pending = Pending {
        connection_id: connection.id.clone(),
        code_verifier: verifier,
        expires_at,
    };
    let value = Value::String(serde_json::to_string(&pending).map_err(anyhow::Error::from)?);
    sluice.store.put_state(&state_key(&state), &value).await?;
    Ok(Authorization {
        authorization_url: url.to_string(),
        expires_at,
    })
}

/// The callback: spends `state`, exchanges `code` for tokens, stores the refresh token.
/// Returns the connection's id.
pub async fn complete_authorization(sluice: &Sluice, state: &str, code: &str) -> Result<String> {
    let pending = spend(sluice, state).await?;
    let connection = sluice.connection(&pending.connection_id).await?;
    let (http, o) = code_grant(&connection)?;
    let name = refresh_secret_name(o)?;
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code.to_string()),
        ("redirect_uri", o.redirect_uri.clone().unwrap_or_default()),
    ];
    if let Some(v) = pending.code_verifier {
        form.push(("code_verifier", v));
    }
    // Under the refresh lock: a refresh running meanwhile must not store its rotation of an
    // older refresh token over this one.
    let reply = under_refresh_lock(sluice, &connection, async {
        let reply = oauth::request_tokens(sluice, http, o, form).await?;
        let refresh = reply.refresh_token.as_deref().ok_or_else(|| {
            Error::invalid(
                "http.auth.oauth2.scope",
                "the token endpoint gave no refresh_token: many providers give one only when the scope asks for offline access",
            )
        })?;
        sluice
            .secret_store
            .write(name, refresh)
            .await
            .map_err(|e| Error::Internal(e.context(format!("storing secret {name}"))))?;
        Ok(reply)
    })
    .await?;
    let lifetime = reply.expires_in.map(Duration::from_secs);
    let tokens = &sluice.caches.http.tokens;
    tokens.put(&connection.id, &reply.access_token, lifetime);
    tracing::info!(connection = %connection.id, secret = name, "OAuth2 authorization stored");
    Ok(connection.id)
}

/// The pending authorization of `state`, spent: `None` once used, or when never issued or
/// expired, all alike to the caller (no oracle for guessing states).
async fn spend(sluice: &Sluice, state: &str) -> Result<Pending> {
    let refused = || {
        Error::invalid(
            "state",
            "unknown, expired or already used: start the authorization again",
        )
    };
    let key = state_key(state);
    let Some(Value::String(raw)) = sluice.store.get_state(&key).await? else {
        return Err(refused());
    };
    let spent = Value::String("spent".into());
    let expected = Value::String(raw.clone());
    if raw == "spent"
        || !sluice
            .store
            .swap_state(&key, Some(&expected), &spent)
            .await?
    {
        return Err(refused());
    }
    let pending: Pending = serde_json::from_str(&raw).map_err(|_| refused())?;
    if sluice.clock.now() > pending.expires_at {
        return Err(refused());
    }
    Ok(pending)
}
