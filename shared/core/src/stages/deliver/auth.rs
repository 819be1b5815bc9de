//! Connection auth: basic, token (bearer), API key in a header or the query, OAuth2 client
//! credentials with the token cached until shortly before it expires.

use super::guard::AddressPolicy;
use super::transport::{Failure, Outgoing};
use crate::ports::secrets::resolve;
use crate::{Error, Result, Sluice};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sluice_model::{ApiKeyLocation, AuthType, Connection, NameValue};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refresh this long before the token's stated expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// One token request at a time per process: many records waiting on an expired token
    /// must not each ask for a new one.
    fetching: tokio::sync::Mutex<()>,
}

impl TokenCache {
    fn get(&self, connection_id: &str) -> Option<String> {
        let map = self.tokens.lock().unwrap();
        map.get(connection_id)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }
    pub(crate) fn forget(&self, connection_id: &str) {
        self.tokens.lock().unwrap().remove(connection_id);
    }
}

pub(crate) fn uses_oauth(c: &Connection) -> bool {
    c.http
        .as_ref()
        .and_then(|h| h.auth.as_ref())
        .is_some_and(|a| a.kind == AuthType::Oauth2)
}

/// Adds the connection's credentials to a request, and resolves `secret:NAME` header values
/// written in the definitions: the connection's headers and `refs` (the import's or export's
/// own). Only a header whose name and value match such a definition is resolved, so a record
/// value rendered into a header can never read a secret.
pub(crate) async fn apply(
    sluice: &Sluice,
    c: &Connection,
    refs: &[NameValue],
    url: &mut url::Url,
    headers: &mut Vec<(String, String)>,
) -> Result<()> {
    let secrets = &*sluice.secrets;
    let connection_headers = c.http.as_ref().map(|h| h.headers.as_slice()).unwrap_or(&[]);
    for (i, hv) in connection_headers.iter().chain(refs).enumerate() {
        if sluice_model::is_secret_reference(&hv.value) {
            let field = match i.checked_sub(connection_headers.len()) {
                None => format!("connection http.headers[{i}].value"),
                Some(j) => format!("http.headers[{j}].value"),
            };
            let v = resolve(secrets, &field, &hv.value)?;
            for (n, val) in headers.iter_mut() {
                if n == &hv.name && val == &hv.value {
                    *val = v.clone();
                }
            }
        }
    }
    let Some(auth) = c.http.as_ref().and_then(|h| h.auth.as_ref()) else {
        return Ok(());
    };
    match auth.kind {
        AuthType::Basic => {
            let b = auth
                .basic
                .as_ref()
                .ok_or_else(|| Error::invalid("http.auth.basic", "missing"))?;
            let password = resolve(secrets, "http.auth.basic.password", &b.password)?;
            let raw = format!("{}:{}", b.username, password);
            headers.push((
                "Authorization".into(),
                format!("Basic {}", BASE64.encode(raw)),
            ));
        }
        AuthType::Token => {
            let t = auth
                .token
                .as_ref()
                .ok_or_else(|| Error::invalid("http.auth.token", "missing"))?;
            let token = resolve(secrets, "http.auth.token.token", &t.token)?;
            let value = if t.scheme.is_empty() {
                token
            } else {
                format!("{} {}", t.scheme, token)
            };
            headers.push((t.header_name.clone(), value));
        }
        AuthType::Apikey => {
            let k = auth
                .apikey
                .as_ref()
                .ok_or_else(|| Error::invalid("http.auth.apikey", "missing"))?;
            let value = resolve(secrets, "http.auth.apikey.value", &k.value)?;
            match k.location {
                ApiKeyLocation::Header => headers.push((k.name.clone(), value)),
                ApiKeyLocation::Query => {
                    url.query_pairs_mut().append_pair(&k.name, &value);
                }
            }
        }
        AuthType::Oauth2 => {
            let token = oauth_token(sluice, c).await?;
            headers.push(("Authorization".into(), format!("Bearer {token}")));
        }
    }
    Ok(())
}

async fn oauth_token(sluice: &Sluice, c: &Connection) -> Result<String> {
    let cache = &sluice.caches.http.tokens;
    if let Some(t) = cache.get(&c.id) {
        return Ok(t);
    }
    let _one_at_a_time = cache.fetching.lock().await;
    if let Some(t) = cache.get(&c.id) {
        return Ok(t);
    }
    let o = c
        .http
        .as_ref()
        .and_then(|h| h.auth.as_ref())
        .and_then(|a| a.oauth2.as_ref())
        .ok_or_else(|| Error::invalid("http.auth.oauth2", "missing"))?;
    let secret = resolve(
        &*sluice.secrets,
        "http.auth.oauth2.clientSecret",
        &o.client_secret,
    )?;
    let mut form = vec![("grant_type", "client_credentials".to_string())];
    if let Some(scope) = &o.scope {
        form.push(("scope", scope.clone()));
    }
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let http = c
        .http
        .as_ref()
        .ok_or_else(|| Error::invalid("http", "missing"))?;
    let policy = AddressPolicy::of_connection(&sluice.settings, http);
    let token_uri = url::Url::parse(&o.token_uri)
        .map_err(|e| Error::invalid("http.auth.oauth2.tokenURI", e.to_string()))?;
    let failed = |e: Failure| match e {
        Failure::Refused(refused) => Error::Internal(refused.into()),
        e => Error::Internal(anyhow::anyhow!(
            "OAuth2 token request to {} failed: {e}",
            o.token_uri
        )),
    };
    let credentials = format!("{}:{secret}", o.client_id);
    let headers = [
        (
            "authorization".to_string(),
            format!("Basic {}", BASE64.encode(credentials)),
        ),
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
    ];
    let request = Outgoing {
        method: &http::Method::POST,
        url: token_uri,
        headers: &headers,
        body: Some(body),
        timeout: Duration::from_secs(30),
    };
    let client = sluice.caches.http.client(policy);
    let resp = client.send(request).await.map_err(failed)?;
    let status = resp.status();
    let bytes = resp.body().await.map_err(failed)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(anyhow::anyhow!("OAuth2 token reply is not JSON: {e}")))?;
    let token = v["access_token"]
        .as_str()
        .filter(|_| (200..300).contains(&status))
        .ok_or_else(|| {
            Error::invalid(
                "http.auth.oauth2",
                format!("token endpoint answered {status} without access_token"),
            )
        })?;
    let expires_in = v["expires_in"].as_u64().unwrap_or(3600);
    let until = Instant::now() + Duration::from_secs(expires_in).saturating_sub(EXPIRY_MARGIN);
    cache
        .tokens
        .lock()
        .unwrap()
        .insert(c.id.clone(), (token.to_string(), until));
    Ok(token.to_string())
}
