//! The client of a build without sluice-core's `http` feature: no HTTP client is linked, and
//! every request fails before it is sent, saying how to get one. (The Lambda functions that
//! send nothing are built so: translate, extract, evaluate, upload, api; a request that
//! reached one of them would fail its record readably, never silently.)

use super::guard::AddressPolicy;
use super::transport::{Failure, Outgoing};
use bytes::Bytes;

#[derive(Clone)]
pub(crate) struct GuardedClient;

impl GuardedClient {
    pub fn new(_policy: AddressPolicy) -> GuardedClient {
        GuardedClient
    }

    pub async fn send(&self, _request: Outgoing<'_>) -> Result<Incoming, Failure> {
        Err(Failure::Unsendable(
            "this build has no HTTP client: build it with sluice-core's `http` feature".into(),
        ))
    }
}

/// A reply, which this build never has.
pub(crate) enum Incoming {}

impl Incoming {
    pub fn status(&self) -> u16 {
        match *self {}
    }

    pub fn headers(&self) -> std::iter::Empty<(&str, &[u8])> {
        match *self {}
    }

    pub fn header(&self, _name: &str) -> Option<&str> {
        match *self {}
    }

    pub async fn body(self) -> Result<Bytes, Failure> {
        match self {}
    }
}
