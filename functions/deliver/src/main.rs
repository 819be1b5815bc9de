//! The deliver stage as a Lambda function fed by its SQS queue (ReportBatchItemFailures).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use sluice_core::Stage;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .without_time() // CloudWatch stamps each line
        .init();
    // INIT: clients, caches and the TLS handshake, once per container.
    let sluice = sluice_aws::build_sluice_from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let sluice = sluice.clone();
        async move {
            let response: SqsBatchResponse =
                sluice_aws::sqs_stage_handler(&sluice, Stage::Deliver, event.payload).await;
            Ok::<_, Error>(response)
        }
    }))
    .await
}
