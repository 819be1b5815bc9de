//! Sluice's stage logic and the ports it talks through.
//!
//! The stages (trigger, translate, deliver, extract, evaluate, upload) never talk to AWS or to
//! a database directly: they use the [`ports`] (store, queue, blobs, secrets, clock). The Lambda
//! functions plug in the AWS adapters (`sluice-aws`), the local runtime plugs in the embedded
//! ones (`sluice-embedded`); the contract tests in [`ports::contract`] run against both.

pub mod budget;
pub mod compiled;
pub mod conditions;
pub mod error;
pub mod filters;
pub mod helpers;
pub mod hooks;
pub mod mapping;
pub mod ports;
pub mod preview;
pub mod remote;
pub mod runs;
pub mod runtime;
pub mod stages;
pub mod transform;
pub mod values;

pub use error::{Error, Result};
pub use hooks::ScriptLimits;
pub use runtime::{
    mail_settings_from, public_url_from, retention_days_from, MailSettings, PrivateAddresses,
    ReplyLimits, Settings, Sluice, ENV_PUBLIC_URL, ENV_RETENTION_DAYS, ENV_SMTP_URL,
};
pub use stages::Stage;
