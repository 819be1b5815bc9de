//! The HTTP transport: the only module that uses the HTTP client crate (reqwest), built with
//! sluice-core's `http` feature (`no_client.rs` stands in without it, so a function that sends
//! nothing links no HTTP client). Everything above it (redirects, credentials, auth, retries,
//! callbacks) speaks [`Outgoing`], [`Incoming`] and [`Failure`].
//!
//! Invariant: every connection the client opens passed the [`AddressPolicy`]: a host written
//! as an IP address is checked as each request is built ([`GuardedClient::send`]), a host
//! name where the client resolves it ([`GuardedResolver`]), so a redirect or a DNS answer
//! that changes between a check and the connect cannot slip past. The client follows no
//! redirect itself (`send.rs` does, keeping credentials at their origin) and sends no Referer.

use super::guard::{refusal_in, AddressPolicy, AddressRefused};
use super::transport::{Failure, Outgoing, Why};
use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};

/// An HTTP client that reaches only what its policy allows. It is the only way Sluice's stage
/// code gets a client, so no request (a delivery, a redirect hop, an OAuth2 token, a callback)
/// can skip the check.
#[derive(Clone)]
pub(crate) struct GuardedClient {
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl GuardedClient {
    pub fn new(policy: AddressPolicy) -> GuardedClient {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .dns_resolver(GuardedResolver(policy))
            .build()
            .expect("an HTTP client with default TLS builds");
        GuardedClient { client, policy }
    }

    /// Sends `request`, unless its host is an address the policy refuses; the reply's head
    /// comes back, its body is read with [`Incoming::body`] (within the same timeout).
    pub async fn send(&self, request: Outgoing<'_>) -> Result<Incoming, Failure> {
        check_literal(&request.url, self.policy).map_err(Failure::Refused)?;
        let mut builder = self
            .client
            .request(request.method.clone(), request.url)
            .timeout(request.timeout);
        for (name, value) in request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        builder.send().await.map(Incoming).map_err(failure)
    }
}

/// A URL whose host is an IP address: is it allowed? (Names are checked when resolved.)
fn check_literal(url: &url::Url, policy: AddressPolicy) -> Result<(), AddressRefused> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        // A name is checked where it is resolved; a URL without a host reaches nothing.
        Some(url::Host::Domain(_)) | None => return Ok(()),
    };
    match policy.refused(ip) {
        Some(why) => Err(AddressRefused {
            ip,
            host: None,
            why,
        }),
        None => Ok(()),
    }
}

/// A reply whose head has arrived.
pub(crate) struct Incoming(reqwest::Response);

impl Incoming {
    pub fn status(&self) -> u16 {
        self.0.status().as_u16()
    }

    /// Every header as received, in order (a repeated name more than once).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
    }

    /// The first value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.0.headers().get(name)?.to_str().ok()
    }

    /// The whole body.
    pub async fn body(self) -> Result<Bytes, Failure> {
        self.0.bytes().await.map_err(failure)
    }
}

/// What a reqwest error means for the request: refused by the guard (inside the error when
/// the resolver refused), never built, never connected, or broken off once connected.
fn failure(e: reqwest::Error) -> Failure {
    if let Some(refused) = refusal_in(&e) {
        return Failure::Refused(refused);
    }
    let why = || match e.is_timeout() {
        true => Why::TimedOut,
        false => Why::Error(root_cause(&e)),
    };
    if e.is_builder() {
        Failure::Unsendable(root_cause(&e))
    } else if e.is_connect() {
        Failure::NotConnected(why())
    } else {
        Failure::Broken(why())
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The system resolver, refusing a name any of whose addresses the policy refuses (a name
/// that also resolves to a public address could otherwise reach a private one).
struct GuardedResolver(AddressPolicy);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                if let Some(why) = policy.refused(a.ip()) {
                    let refused = AddressRefused {
                        ip: a.ip(),
                        host: Some(host.clone()),
                        why,
                    };
                    return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
