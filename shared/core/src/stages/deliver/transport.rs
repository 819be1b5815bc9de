//! What stage code hands the HTTP client and gets back from it, in words of its own: the client
//! (`client.rs`, sluice-core's `http` feature) is the one place that knows the client crate,
//! and a build without the feature (`no_client.rs`) compiles the same stage code against
//! these types.

use super::guard::AddressRefused;
use std::time::Duration;

/// One request as it goes out: method, URL, headers in order, body, and the time it may take
/// until its whole reply has been read.
pub(crate) struct Outgoing<'a> {
    pub method: &'a http::Method,
    pub url: url::Url,
    pub headers: &'a [(String, String)],
    pub body: Option<String>,
    pub timeout: Duration,
}

/// Why the client got no reply, or no whole body. Which one decides whether the request may
/// be sent again: only a request that never left (or was refused) surely did nothing.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An address the guard refuses.
    Refused(AddressRefused),
    /// The request could not be built (a header value the protocol forbids), or this build
    /// has no client: nothing was sent.
    Unsendable(String),
    /// No connection was made: the target saw nothing.
    NotConnected(Why),
    /// Connected, then no whole reply: the target may have seen the request.
    Broken(Why),
}

#[derive(Debug)]
pub(crate) enum Why {
    /// The request's timeout ran out.
    TimedOut,
    /// The innermost error's text.
    Error(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(refused) => write!(f, "{refused}"),
            Failure::Unsendable(why) => write!(f, "the request cannot be sent: {why}"),
            Failure::NotConnected(Why::Error(e)) => write!(f, "could not connect: {e}"),
            Failure::Broken(Why::Error(e)) => write!(f, "request failed: {e}"),
            Failure::NotConnected(Why::TimedOut) | Failure::Broken(Why::TimedOut) => {
                write!(f, "timed out")
            }
        }
    }
}

/// Adds `content-type: application/json` unless the headers name a type already: a body
/// Sluice sends is JSON unless its definition says otherwise.
pub(crate) fn json_unless_typed(headers: &mut Vec<(String, String)>) {
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type".into(), "application/json".into()));
    }
}
