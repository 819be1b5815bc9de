//! One attempt at a request over a connection: its auth, the redirects it allows, the reply.
//!
//! Invariants: credentials — the connection's auth, its own headers, credential headers
//! (`Authorization`, `X-Api-Key`, ...) and `secret:NAME` values — go only to the connection's
//! origin (the baseURI's scheme, host and port), however a redirect points. A redirect to
//! another origin is followed only when the connection says `followRedirects: anyOrigin`;
//! otherwise the 3xx is the reply. No request carries a `Referer`. Every hop passes the
//! address guard. A failure says whether the request may have reached the target, which
//! decides whether a non-idempotent request may be sent again.

use super::auth;
use super::client::{GuardedClient, Incoming};
use super::guard::{self, AddressPolicy};
use super::transport::{json_unless_typed, Failure, Outgoing, Why};
use crate::stages::base_uri::BaseUri;
use crate::Sluice;
use serde_json::{Map, Value};
use sluice_model::{
    Connection, FollowRedirects, HttpConnection, NameValue, RenderedRequest, Reply,
};
use std::time::{Duration, Instant};
use url::Url;

/// The most redirects followed in a row; the next 3xx is the reply.
const MAX_REDIRECTS: usize = 5;

/// Why an attempt got no reply.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The request never reached the target (no connection): sending again is safe.
    NotSent(String),
    /// The request may have reached the target (a timeout, the connection dropped before or
    /// during the reply): sending again may act twice.
    Ambiguous(String),
    /// An address the guard refuses.
    Refused(String),
    /// Sending again cannot help (a bad method, URL or header value; auth that fails).
    Fatal(String),
}

/// Sends requests over one http connection.
pub(crate) struct Sender<'a> {
    sluice: &'a Sluice,
    connection: &'a Connection,
    http: &'a HttpConnection,
    /// The import's or export's own header definitions, whose `secret:NAME` values are
    /// resolved on the way out.
    refs: &'a [NameValue],
    base: BaseUri,
    client: GuardedClient,
    timeout: Duration,
}

impl<'a> Sender<'a> {
    pub fn new(
        sluice: &'a Sluice,
        connection: &'a Connection,
        refs: &'a [NameValue],
        timeout: Duration,
    ) -> Result<Sender<'a>, String> {
        let http = connection
            .http
            .as_ref()
            .ok_or_else(|| format!("connection {} is not an http connection", connection.id))?;
        let base = BaseUri::parse(&http.base_uri)?;
        let policy = AddressPolicy::of_connection(&sluice.settings, http);
        Ok(Sender {
            sluice,
            connection,
            http,
            refs,
            base,
            client: sluice.caches.http.client(policy),
            timeout,
        })
    }

    /// One attempt, redirects included, within the connection's request timeout.
    pub async fn send(&self, request: &RenderedRequest) -> Result<Reply, SendError> {
        let deadline = Instant::now() + self.timeout;
        let mut hop = Hop::of(request)?;
        let mut redirects = 0;
        loop {
            let response = self.send_hop(&hop, deadline).await?;
            let status = response.status();
            match redirect_target(&response, &hop.url) {
                Some(next) if redirects < MAX_REDIRECTS && self.follows(&next) => {
                    redirects += 1;
                    hop = hop.redirected(status, next);
                }
                _ => return read_reply(response, self.timeout).await,
            }
        }
    }

    fn follows(&self, next: &Url) -> bool {
        match self.http.follow_redirects {
            FollowRedirects::Never => false,
            FollowRedirects::SameOrigin => self.base.same_origin(next),
            FollowRedirects::AnyOrigin => true,
        }
    }

    /// A header that must not leave the connection's origin.
    fn is_credential(&self, name: &str, value: &str) -> bool {
        sluice_model::is_secret_header(name)
            || sluice_model::is_secret_reference(value)
            || self
                .http
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(name))
    }

    async fn send_hop(&self, hop: &Hop, deadline: Instant) -> Result<Incoming, SendError> {
        let mut url = hop.url.clone();
        let mut headers = hop.headers.clone();
        if self.base.same_origin(&url) {
            auth::apply(
                self.sluice,
                self.connection,
                self.refs,
                &mut url,
                &mut headers,
            )
            .await
            .map_err(|e| match guard::refusal_of(&e) {
                // The token endpoint is at a refused address.
                Some(refused) => SendError::Refused(refused.to_string()),
                None => SendError::Fatal(e.to_string()),
            })?;
        } else {
            headers.retain(|(name, value)| !self.is_credential(name, value));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if hop.body.is_some() {
            json_unless_typed(&mut headers);
        }
        let request = Outgoing {
            method: &hop.method,
            url,
            headers: &headers,
            body: hop.body.clone(),
            timeout: left.max(Duration::from_millis(1)),
        };
        self.client
            .send(request)
            .await
            .map_err(|e| classify(e, self.timeout))
    }
}

/// One request on its way, changed by each redirect followed.
struct Hop {
    method: http::Method,
    url: Url,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Hop {
    fn of(request: &RenderedRequest) -> Result<Hop, SendError> {
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|e| SendError::Fatal(format!("bad method {}: {e}", request.method)))?;
        let url = Url::parse(&request.url)
            .map_err(|e| SendError::Fatal(format!("bad URL {}: {e}", request.url)))?;
        Ok(Hop {
            method,
            url,
            headers: request.headers.clone(),
            body: request.body.clone(),
        })
    }

    /// As browsers do (the Fetch standard): 307 and 308 repeat the request as it was; 303,
    /// and 301/302 after a POST, become a GET without a body.
    fn redirected(mut self, status: u16, next: Url) -> Hop {
        use http::Method;
        let to_get = match status {
            303 => self.method != Method::HEAD && self.method != Method::GET,
            301 | 302 => self.method == Method::POST,
            _ => false,
        };
        if to_get {
            self.method = Method::GET;
            self.body = None;
            self.headers.retain(|(name, _)| {
                !name.eq_ignore_ascii_case("content-type")
                    && !name.eq_ignore_ascii_case("content-length")
            });
        }
        self.url = next;
        self
    }
}

/// Where a redirect points, resolved against the URL that answered it.
fn redirect_target(response: &Incoming, from: &Url) -> Option<Url> {
    if !matches!(response.status(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let next = from.join(response.header("location")?).ok()?;
    matches!(next.scheme(), "http" | "https").then_some(next)
}

async fn read_reply(response: Incoming, timeout: Duration) -> Result<Reply, SendError> {
    let status = response.status();
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        let v = String::from_utf8_lossy(value).to_string();
        match headers.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&v);
            }
            _ => {
                headers.insert(name.to_string(), Value::String(v));
            }
        }
    }
    // The target answered, then the reply broke off: it has seen the request.
    let bytes = response
        .body()
        .await
        .map_err(|e| SendError::Ambiguous(describe(&e, timeout)))?;
    let body = serde_json::from_slice::<Value>(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Reply {
        status,
        headers,
        body,
        attempts: 1,
        elapsed_ms: 0,
        bounded: None,
    })
}

fn classify(e: Failure, timeout: Duration) -> SendError {
    match e {
        Failure::Refused(refused) => SendError::Refused(refused.to_string()),
        Failure::Unsendable(_) => SendError::Fatal(e.to_string()),
        Failure::NotConnected(_) => SendError::NotSent(describe(&e, timeout)),
        Failure::Broken(_) => SendError::Ambiguous(describe(&e, timeout)),
    }
}

/// A failure in words, with the timeout that ran out.
fn describe(e: &Failure, timeout: Duration) -> String {
    match e {
        Failure::NotConnected(Why::TimedOut) | Failure::Broken(Why::TimedOut) => {
            format!("timed out after {} ms", timeout.as_millis())
        }
        other => other.to_string(),
    }
}
