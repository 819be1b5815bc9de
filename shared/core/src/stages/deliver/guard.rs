//! Where requests may go: never to link-local / cloud metadata addresses (unless the
//! connection allows it), and to loopback and private ranges only where the deployment allows.

use std::net::IpAddr;

pub(crate) async fn check(
    url: &str,
    allow_metadata: bool,
    allow_private: bool,
) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("bad URL {url}: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("URL {url} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    for ip in addrs {
        if let Some(why) = refused(ip, allow_metadata, allow_private) {
            return Err(format!("requests to {ip} ({host}) are refused: {why}"));
        }
    }
    Ok(())
}

/// Why `ip` is refused, if it is.
pub(crate) fn refused(
    ip: IpAddr,
    allow_metadata: bool,
    allow_private: bool,
) -> Option<&'static str> {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.segments() == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]
        }
    };
    if link_local && !allow_metadata {
        return Some(
            "link-local / instance metadata address (set http.allowMetadataAddresses to allow)",
        );
    }
    let private = match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00
        }
    };
    if private && !link_local && !allow_private {
        return Some("loopback or private address, not allowed in this deployment");
    }
    None
}
