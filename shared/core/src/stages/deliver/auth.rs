//! Connection auth: basic, token (bearer), API key in a header or the query, OAuth2 (its
//! tokens from `oauth.rs`).

use crate::ports::secrets::resolve;
use crate::{Error, Result, Sluice};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sluice_model::{ApiKeyLocation, AuthType, Connection, NameValue};

/// Does the connection send a token it fetched (OAuth2, or a custom token refresh)? A 401
/// then asks for a new one.
pub(crate) fn fetches_tokens(c: &Connection) -> bool {
    c.http
        .as_ref()
        .and_then(|h| h.auth.as_ref())
        .is_some_and(|a| match a.kind {
            AuthType::Oauth2 => true,
            AuthType::Token => a.token.as_ref().is_some_and(|t| t.refreshes()),
            _ => false,
        })
}

/// Where the credentials a request carries come from: [`Resolved`] (what is sent) or
/// [`Masked`] (what a preview shows). Generic, not dynamic: the masked instance references
/// neither the secrets nor the OAuth2 token request, so code that only previews reaches no
/// HTTP client.
pub(crate) trait Credentials {
    /// A credential written in a definition (`secret:NAME` or the value itself).
    fn value(&self, field: &str, raw: &str) -> Result<String>;
    /// The value of a basic `Authorization` header after `Basic `.
    fn basic(&self, username: &str, password: String) -> String;
    /// A token fetched by the connection's token request (OAuth2, custom token refresh).
    async fn fetched(&self, c: &Connection) -> Result<String>;
}

/// The real credentials: secrets from the secrets port, tokens from the token endpoint.
pub(crate) struct Resolved<'a>(pub &'a Sluice);

impl Credentials for Resolved<'_> {
    fn value(&self, field: &str, raw: &str) -> Result<String> {
        resolve(&*self.0.secrets, field, raw)
    }
    fn basic(&self, username: &str, password: String) -> String {
        BASE64.encode(format!("{username}:{password}"))
    }
    async fn fetched(&self, c: &Connection) -> Result<String> {
        super::oauth::token(self.0, c).await
    }
}

/// The mask in place of each credential: no secret is read and no token fetched.
pub(crate) struct Masked;

impl Credentials for Masked {
    fn value(&self, _: &str, _: &str) -> Result<String> {
        Ok(sluice_model::MASK.to_string())
    }
    fn basic(&self, _: &str, _: String) -> String {
        sluice_model::MASK.to_string()
    }
    async fn fetched(&self, _: &Connection) -> Result<String> {
        Ok(sluice_model::MASK.to_string())
    }
}

/// Adds the connection's credentials to a request, and resolves `secret:NAME` header values
/// written in the definitions: the connection's headers and `refs` (the import's or export's
/// own). Only a header whose name and value match such a definition is resolved, so a record
/// value rendered into a header can never read a secret.
pub(crate) async fn apply<C: Credentials>(
    c: &Connection,
    refs: &[NameValue],
    (url, headers): (&mut url::Url, &mut Vec<(String, String)>),
    credentials: &C,
) -> Result<()> {
    let connection_headers = c.http.as_ref().map(|h| h.headers.as_slice()).unwrap_or(&[]);
    for (i, hv) in connection_headers.iter().chain(refs).enumerate() {
        if sluice_model::is_secret_reference(&hv.value) {
            let field = match i.checked_sub(connection_headers.len()) {
                None => format!("connection http.headers[{i}].value"),
                Some(j) => format!("http.headers[{j}].value"),
            };
            let v = credentials.value(&field, &hv.value)?;
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
            let password = credentials.value("http.auth.basic.password", &b.password)?;
            let encoded = credentials.basic(&b.username, password);
            headers.push(("Authorization".into(), format!("Basic {encoded}")));
        }
        AuthType::Token => {
            let t = auth
                .token
                .as_ref()
                .ok_or_else(|| Error::invalid("http.auth.token", "missing"))?;
            let token = if t.refreshes() {
                credentials.fetched(c).await?
            } else {
                credentials.value("http.auth.token.token", &t.token)?
            };
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
            let value = credentials.value("http.auth.apikey.value", &k.value)?;
            match k.location {
                ApiKeyLocation::Header => headers.push((k.name.clone(), value)),
                ApiKeyLocation::Query => {
                    url.query_pairs_mut().append_pair(&k.name, &value);
                }
            }
        }
        AuthType::Oauth2 => {
            let token = credentials.fetched(c).await?;
            headers.push(("Authorization".into(), format!("Bearer {token}")));
        }
    }
    Ok(())
}
