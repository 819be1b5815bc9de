//! Embedded adapters for Sluice's ports, and the local runtime that runs every stage in one
//! process: `sluice run` and `sluice dev` use it, and so do the end-to-end tests.

pub mod blobs;
pub mod mail;
pub mod queue;
pub mod runtime;
mod sqlite;
pub mod store;

pub use blobs::FsBlobs;
pub use queue::LocalQueue;
pub use runtime::LocalRuntime;
pub use store::SqliteStore;

use sluice_core::{PrivateAddresses, Settings};

/// The local runtime's settings: http connections may reach loopback (a sink or an API on
/// this machine during development), as `sluice --help` says; private ranges and metadata
/// addresses stay refused unless a connection allows them.
pub fn local_settings() -> Settings {
    Settings {
        private_addresses: PrivateAddresses::Loopback,
        ..Settings::default()
    }
}
