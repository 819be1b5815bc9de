//! Where requests may go: never to link-local / cloud metadata addresses (unless the
//! connection allows it), and to loopback and private ranges only where the deployment or
//! the connection allows.
//!
//! Invariant: every address an http client of Sluice connects to passed [`AddressPolicy`].
//! Stage code gets clients only as `GuardedClient`s (`client.rs`), which apply the policy to
//! each request built (an IP address host) and to each name they resolve.

use crate::{PrivateAddresses, Settings};
use sluice_model::HttpConnection;
use std::net::IpAddr;

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

/// An address the policy refuses, found in a URL or while resolving a name; reqwest hands
/// the latter back inside its error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("requests to {ip}{} are refused: {why}", host.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
pub(crate) struct AddressRefused {
    pub ip: IpAddr,
    /// The name that resolved to `ip`, when the URL named a host.
    pub host: Option<String>,
    pub why: &'static str,
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
