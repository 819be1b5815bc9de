//! The ports: everything stage logic needs from the outside world, as traits.
//!
//! Adapters: `sluice-embedded` (SQLite file, in-process queues, a local directory for blobs)
//! and `sluice-aws` (DynamoDB, SQS, S3). [`contract`] holds the tests every adapter must pass.

pub mod blobs;
pub mod clock;
pub mod contract;
pub mod files;
pub mod mail;
pub mod metrics;
pub mod queue;
pub mod secrets;
pub mod store;

pub use blobs::{BlobReader, Blobs};
pub use clock::{Clock, ManualClock, SystemClock};
pub use files::{FileSource, RemoteFile};
pub use mail::{Mail, Mailer, NoMailer, ENV_MAIL_FROM};
pub use metrics::{Measurement, Metrics, NoMetrics};
pub use queue::Queue;
pub use secrets::{EnvSecrets, MapSecrets, MemorySecretStore, SecretStore, Secrets};
pub use store::{
    ledger_key, ledger_prefixes, AuditEntry, ErrorQuery, JobQuery, Kind, LedgerState, LockHolder,
    PageOutcome, Purged, Settled, Store, LEDGER_STAGES,
};
