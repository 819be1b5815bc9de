//! AWS adapters for Sluice's ports: DynamoDB store, SQS queues, S3 blobs, Secrets Manager for
//! the secrets Sluice writes, plus the Lambda
//! handler glue and a harness that runs the handlers against moto like the deployed stack.

pub mod blobs;
pub mod config;
pub mod harness;
pub mod lambda;
#[cfg(feature = "mail")]
pub mod mail;
pub mod metrics;
pub mod queue;
#[cfg(feature = "written-secrets")]
pub mod secrets;
pub mod store;

pub use blobs::S3Blobs;
pub use config::AwsSettings;
pub use lambda::{build_sluice, build_sluice_from_env, sqs_stage_handler, trigger_handler};
pub use metrics::EmfMetrics;
pub use queue::{decode_message, SqsQueue};
#[cfg(feature = "written-secrets")]
pub use secrets::SecretsManagerStore;
pub use store::DynamoStore;
