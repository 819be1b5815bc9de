//! Sluice's vocabulary: the definitions users write (connections, exports, imports, flows),
//! the records of work (runs, jobs, errors) and the page that travels between stages.
//!
//! Field names follow the integrator.io flows API (`_id`, `pageGenerators`, `relativeURI`, ...)
//! so users' JSON carries over. Every definition has a `validate()` that names the field and
//! the reason; cross-references (a flow's `_exportId` exists, ...) are checked by
//! [`bundle::Bundle::validate`] and by the API against the store.

pub mod alerts;
pub mod api;
pub mod bundle;
pub mod connection;
pub mod error;
pub mod export;
pub mod failure;
pub mod filter;
pub mod flow;
pub mod import;
pub mod integration;
pub mod job;
pub mod listener;
pub mod mapping;
pub mod moment;
pub mod page;
pub mod parse;
pub mod paths;
pub mod preview;
pub mod routing;
pub mod run;
pub mod script;
pub mod time;
pub mod transform;
pub mod validate;

pub use alerts::{AlertEmail, AlertOn, FlowAlerts, MAX_ALERT_RECIPIENTS};
pub use bundle::Bundle;
pub use connection::*;
pub use error::{FieldError, ValidationErrors};
pub use export::*;
pub use failure::{Failure, FailureCode};
pub use filter::Filter;
pub use flow::*;
pub use import::*;
pub use integration::Integration;
pub use job::*;
pub use listener::*;
pub use mapping::Mapping;
pub use page::*;
pub use routing::{Branch, Position, RouteRecordsTo, Router, Steps};
pub use run::*;
pub use script::*;
pub use transform::Transform;

/// The value shown in place of a secret in every API response, log line and template bundle.
/// Sending it back on an update means "keep the stored secret".
pub const MASK: &str = "********";

/// Is this credential or header value a reference (`secret:NAME`) rather than a secret?
/// References are resolved from the secrets port only when a request is sent.
pub fn is_secret_reference(value: &str) -> bool {
    value.starts_with("secret:")
}

/// A fresh identifier: 24 lowercase hex characters, the shape integrator.io ids have.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..24].to_string()
}
