use crate::Stage;
use async_trait::async_trait;
use sluice_model::StageMessage;

/// Hands a message to a stage. At least once: a stage must be idempotent on redelivery.
/// Receiving is the adapter's business (a Lambda event source mapping, or the local
/// runtime's workers), which then calls [`crate::Sluice::handle`].
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    async fn send(&self, stage: Stage, message: StageMessage) -> anyhow::Result<()>;
}
