//! Embedded adapters for Sluice's ports, and the local runtime that runs every stage in one
//! process: `sluice run` and `sluice dev` use it, and so do the end-to-end tests.

pub mod blobs;
pub mod queue;
pub mod runtime;
mod sqlite;
pub mod store;

pub use blobs::FsBlobs;
pub use queue::LocalQueue;
pub use runtime::LocalRuntime;
pub use store::SqliteStore;
