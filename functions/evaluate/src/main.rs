//! The evaluate stage as a Lambda function: `SqsEvent` batches from its queue (and its
//! dead-letter queue) to the shared handler, answering with partial batch failures.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    sluice_aws::lambda::run_sqs_stage(sluice_core::stages::evaluate::HANDLER).await
}
