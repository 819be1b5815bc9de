use crate::Stage;
use async_trait::async_trait;
use sluice_model::StageMessage;

/// Hands a message to a stage. At least once: a stage must be idempotent on redelivery.
/// Receiving is the adapter's business (a Lambda event source mapping, or the local
/// runtime's workers), which then calls [`crate::Sluice::handle`].
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    async fn send(&self, stage: Stage, message: StageMessage) -> anyhow::Result<()>;

    /// Records how far the handler of the message being handled has got: `progress` replaces
    /// that message, so a redelivery (after a crash) starts from it instead of from the
    /// beginning. The trigger calls it after each page it cuts from a long source, with its
    /// run order and a `resume` position.
    ///
    /// The embedded queue makes the replacement and the messages sent since the last
    /// checkpoint one transaction, so a page is never both sent and read again. SQS cannot
    /// change a message in flight: there the default, doing nothing, applies, and a
    /// redelivered run order reads its source again from its start (page ids are stable, and
    /// every later stage is idempotent on them).
    async fn checkpoint(&self, progress: &StageMessage) -> anyhow::Result<()> {
        let _ = progress;
        Ok(())
    }
}
