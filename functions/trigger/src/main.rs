//! The trigger function: run orders and S3 notifications from its SQS queue, direct S3 events,
//! DynamoDB stream batches and the EventBridge minute tick, told apart by the event's shape.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    sluice_aws::lambda::init_logging();
    // INIT: clients, caches and the TLS handshake, once per container.
    let sluice = sluice_aws::build_sluice_from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let sluice = sluice.clone();
        // A long http export stops reading before the deadline and continues in a new message.
        let deadline = sluice_aws::lambda::invocation_deadline(&event.context);
        async move {
            let handled = sluice_aws::trigger_handler(&sluice, event.payload);
            Ok::<_, Error>(sluice_core::budget::with_deadline(deadline, handled).await?)
        }
    }))
    .await
}
