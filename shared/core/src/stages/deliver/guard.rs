//! Where requests may go: never to link-local / cloud metadata addresses (unless the
//! connection allows it), and to loopback and private ranges only where the deployment or
//! the connection allows.
//!
//! Invariant: every address an http client of Sluice connects to passed [`AddressPolicy`].
//! Stage code gets clients only as [`GuardedClient`]s: a host written as an IP address is
//! checked as each request (each redirect hop, token request, callback) is built; a host
//! name is checked where it is resolved, by the client's own resolver ([`GuardedResolver`]),
//! so a redirect or a DNS answer that changes between a check and the connect cannot slip
//! past.

use crate::{PrivateAddresses, Settings};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sluice_model::HttpConnection;
use std::net::{IpAddr, SocketAddr};

/// The addresses one connection's requests may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AddressPolicy {
    pub metadata: bool,
    pub private: PrivateAddresses,
}

impl AddressPolicy {
    /// The deployment's policy, for requests no connection owns (notifications).
    pub fn of_deployment(settings: &Settings) -> Self {
        AddressPolicy {
            metadata: false,
            private: settings.private_addresses,
        }
    }

    /// The deployment's policy, widened by what the connection allows itself.
    pub fn of_connection(settings: &Settings, http: &HttpConnection) -> Self {
        AddressPolicy {
            metadata: http.allow_metadata_addresses,
            private: if http.allow_private_addresses {
                PrivateAddresses::Allowed
            } else {
                settings.private_addresses
            },
        }
    }

    /// Why `ip` is refused, if it is.
    pub fn refused(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => {
                (v6.segments()[0] & 0xffc0) == 0xfe80
                    || v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
            }
        };
        if link_local {
            return (!self.metadata).then_some(
                "link-local / instance metadata address (set http.allowMetadataAddresses to allow)",
            );
        }
        let loopback = ip.is_loopback();
        let private = match ip {
            // RFC 1918, "this network" 0/8, and the shared space 100.64/10 (VPCs use it).
            IpAddr::V4(v4) => {
                let [a, b, ..] = v4.octets();
                v4.is_private() || a == 0 || (a == 100 && (b & 0xc0) == 64)
            }
            IpAddr::V6(v6) => v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00,
        };
        let allowed = match self.private {
            PrivateAddresses::Allowed => true,
            PrivateAddresses::Loopback => !private,
            PrivateAddresses::Refused => !private && !loopback,
        };
        (!allowed).then_some(
            "loopback or private address, not allowed in this deployment (set http.allowPrivateAddresses on the connection to allow)",
        )
    }
}

/// An HTTP client that reaches only what its policy allows: every request it builds has its
/// URL's host checked when it is an IP address ([`GuardedClient::request`]), and its resolver
/// ([`GuardedResolver`]) checks names. It is the only way Sluice's stage code gets a client,
/// so no request (a delivery, a redirect hop, an OAuth2 token, a callback) can skip the check.
#[derive(Clone)]
pub(crate) struct GuardedClient {
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl GuardedClient {
    /// A client that follows no redirects itself (a request's redirects are followed by
    /// `send`, which keeps credentials at their origin) and sends no Referer.
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

    /// A request to `url`, unless its host is an address the policy refuses.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: url::Url,
    ) -> Result<reqwest::RequestBuilder, AddressRefused> {
        check_literal(&url, self.policy)?;
        Ok(self.client.request(method, url))
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

/// An address the policy refuses, found in a URL or while resolving a name; reqwest hands
/// the latter back inside its error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("requests to {ip}{} are refused: {why}", host.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
pub(crate) struct AddressRefused {
    ip: IpAddr,
    /// The name that resolved to `ip`, when the URL named a host.
    host: Option<String>,
    why: &'static str,
}

/// The refusal inside an error's chain of sources (a reqwest error, an `anyhow` one), if
/// that is what it is.
pub(crate) fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<AddressRefused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(refused) = err.downcast_ref::<AddressRefused>() {
            return Some(refused.clone());
        }
        cur = err.source();
    }
    None
}

/// The refusal a stage error carries (an OAuth2 token request refused), if it does.
pub(crate) fn refusal_of(e: &crate::Error) -> Option<AddressRefused> {
    match e {
        crate::Error::Internal(e) => e.chain().find_map(refusal_in),
        _ => None,
    }
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
