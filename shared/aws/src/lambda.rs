//! Glue between Lambda events and the stage handlers.

use crate::blobs::S3Blobs;
use crate::config::{s3_client, sdk_config, AwsSettings};
use crate::metrics::EmfMetrics;
use crate::queue::{decode_message, SqsQueue};
use crate::store::DynamoStore;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::{json, Value};
use sluice_core::ports::{EnvSecrets, Metrics, NoMetrics, SystemClock};
use sluice_core::stages::dead_letter::dead_letter;
use sluice_core::stages::trigger::{self, events, schedule};
use sluice_core::stages::StageHandler;
use sluice_core::{PrivateAddresses, Settings, Sluice};
use std::sync::Arc;
use std::time::Duration;

/// Builds the ports from the environment. Called once per Lambda INIT: the SDK clients, HTTP
/// connections and the stage caches then live for the container's life. Metrics go to
/// stdout in CloudWatch's embedded metric format.
pub async fn build_sluice_from_env() -> anyhow::Result<Arc<Sluice>> {
    let aws = AwsSettings::from_env()?;
    let metrics = Arc::new(EmfMetrics::stdout_from_env());
    let sluice = build_sluice_with(&aws, private_policy(&aws), metrics).await?;
    // Pay the TLS handshake (and credential lookup) during INIT, not on the first message.
    if let Err(e) = sluice.store.get_state("warmup").await {
        tracing::warn!(error = %e, "warm-up call to DynamoDB failed");
    }
    Ok(sluice)
}

/// The ports for these settings (the harness calls this with moto's endpoint), no metrics.
/// Deployed functions refuse loopback and private targets unless the deployment allows them
/// (`SLUICE_ALLOW_PRIVATE_ADDRESSES`) or the connection does (`http.allowPrivateAddresses`).
pub async fn build_sluice(aws: &AwsSettings) -> anyhow::Result<Arc<Sluice>> {
    build_sluice_with(aws, private_policy(aws), Arc::new(NoMetrics)).await
}

fn private_policy(aws: &AwsSettings) -> PrivateAddresses {
    if aws.allow_private_addresses {
        PrivateAddresses::Allowed
    } else {
        PrivateAddresses::Refused
    }
}

/// As [`build_sluice`] with the private-address policy given (tests on loopback), reporting
/// to `metrics`.
pub async fn build_sluice_with(
    aws: &AwsSettings,
    private_addresses: PrivateAddresses,
    metrics: Arc<dyn Metrics>,
) -> anyhow::Result<Arc<Sluice>> {
    let endpoint = aws.endpoint.as_deref();
    let config = sdk_config(endpoint).await;
    let blobs = Arc::new(S3Blobs::new(s3_client(&config, endpoint)));
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&config),
        &aws.table,
    ));
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&config),
        aws.queue_urls.clone(),
        blobs.clone(),
        &aws.system_bucket,
        aws.max_inline_page_bytes,
    ));
    let settings = Settings {
        system_bucket: aws.system_bucket.clone(),
        max_inline_page_bytes: aws.max_inline_page_bytes,
        private_addresses,
        replies: aws.replies.clone(),
        scripts: aws.scripts.clone(),
        retention_days: aws.retention_days,
        public_url: aws.public_url.clone(),
        mail: aws.mail.clone(),
        ..Settings::default()
    };
    let sluice = Sluice::new(
        store,
        queue,
        blobs,
        Arc::new(EnvSecrets),
        Arc::new(SystemClock),
        settings,
    );
    // A function built without the feature fetches no token and stores none: the default
    // (in memory) is never written there.
    #[cfg(feature = "written-secrets")]
    let sluice = sluice.with_secret_store(Arc::new(crate::secrets::SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&config),
        &aws.secret_prefix,
    )));
    #[cfg(feature = "mail")]
    let sluice = match &aws.mail {
        Some(mail) => sluice.with_mailer(Arc::new(crate::mail::SesMailer::new(
            aws_sdk_sesv2::Client::new(&config),
            mail.from.clone(),
        ))),
        None => sluice,
    };
    Ok(Arc::new(sluice.with_metrics(metrics)))
}

/// Runs every message of the batch through `stage`; the response names only the messages
/// that failed, so SQS redelivers those and deletes the rest (ReportBatchItemFailures).
pub async fn sqs_stage_handler(
    sluice: &Sluice,
    stage: StageHandler,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in event.records {
        if let Err(e) = handle_sqs_message(sluice, stage, &message).await {
            let id = message.message_id.clone().unwrap_or_default();
            tracing::error!(stage = stage.stage.name(), message_id = %id, error = %e, "message failed");
            response.add_failure(id);
        }
    }
    // Slots kept for back-to-back requests go back before the invocation ends: a frozen
    // instance would otherwise sit on them until their leases ran out.
    sluice_core::stages::deliver::settle_slot_releases(sluice, Duration::from_secs(2)).await;
    response
}

async fn handle_sqs_message(
    sluice: &Sluice,
    stage: StageHandler,
    message: &SqsMessage,
) -> anyhow::Result<()> {
    let body = message.body.as_deref().unwrap_or_default();
    let decoded = decode_message(body, sluice.blobs.as_ref()).await?;
    if from_dead_letter_queue(message) {
        dead_letter(
            sluice,
            stage.stage,
            decoded,
            "failed every delivery attempt",
        )
        .await?;
    } else {
        stage.handle(sluice, decoded).await?;
    }
    Ok(())
}

/// Each function also reads its stage's dead-letter queue (logical id `<Stage>DeadLetterQueue`,
/// which CloudFormation keeps inside the generated queue name): such a message becomes job
/// errors instead of being lost.
pub fn from_dead_letter_queue(message: &SqsMessage) -> bool {
    message
        .event_source_arn
        .as_deref()
        .and_then(|arn| arn.rsplit(':').next())
        .is_some_and(|name| name.contains("DeadLetterQueue"))
}

/// An object created in S3, from an S3 event record (direct, or inside an SQS/SNS body).
#[derive(Debug, Clone, PartialEq)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
    /// Tells this upload from another of the same key: S3's `sequencer` (moto sends none:
    /// then the ETag and the event time).
    pub event_id: Option<String>,
}

/// Reads bucket and key from S3 event records leniently: moto's notifications lack fields
/// the strict `S3Event` type requires. Keys arrive URL-encoded (`+` for space).
pub fn s3_objects(event: &Value) -> Vec<S3Object> {
    let Some(records) = event.get("Records").and_then(Value::as_array) else {
        return Vec::new();
    };
    records
        .iter()
        .filter(|r| {
            r.get("eventSource").and_then(Value::as_str) == Some("aws:s3")
                && r.get("eventName")
                    .and_then(Value::as_str)
                    .is_none_or(|n| n.starts_with("ObjectCreated"))
        })
        .filter_map(|r| {
            let bucket = r.pointer("/s3/bucket/name")?.as_str()?.to_string();
            let raw = r.pointer("/s3/object/key")?.as_str()?;
            let key = url_decode(raw)?;
            let text = |p: &str| r.pointer(p).and_then(Value::as_str);
            let event_id = text("/s3/object/sequencer")
                .map(str::to_string)
                .or_else(|| {
                    Some(format!(
                        "{}@{}",
                        text("/s3/object/eTag")?,
                        text("/eventTime")?
                    ))
                });
            Some(S3Object {
                bucket,
                key,
                event_id,
            })
        })
        .collect()
}

/// DynamoDB stream records as the trigger's table changes (NewImage made plain JSON).
pub fn table_changes(event: &Value) -> Vec<events::TableChange> {
    let Some(records) = event.get("Records").and_then(Value::as_array) else {
        return Vec::new();
    };
    records
        .iter()
        .filter(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:dynamodb"))
        .filter_map(|r| {
            // arn:aws:dynamodb:region:acct:table/NAME/stream/TIME
            let arn = r.get("eventSourceARN")?.as_str()?;
            let table_name = arn.split('/').nth(1)?.to_string();
            Some(events::TableChange {
                table_name,
                event_name: r.get("eventName")?.as_str()?.to_string(),
                new_image: r
                    .pointer("/dynamodb/NewImage")
                    .map(events::from_attribute_values),
                event_id: r.get("eventID").and_then(Value::as_str).map(str::to_string),
            })
        })
        .collect()
}

/// What woke the trigger function.
#[derive(Debug, PartialEq)]
pub enum TriggerEvent {
    Sqs,
    S3,
    Dynamodb,
    Schedule,
    Unknown,
}

pub fn classify(event: &Value) -> TriggerEvent {
    if event.get("source").and_then(Value::as_str) == Some("aws.events")
        || event.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event")
    {
        return TriggerEvent::Schedule;
    }
    let source = event
        .pointer("/Records/0/eventSource")
        .and_then(Value::as_str);
    match source {
        Some("aws:sqs") => TriggerEvent::Sqs,
        Some("aws:s3") => TriggerEvent::S3,
        Some("aws:dynamodb") => TriggerEvent::Dynamodb,
        _ => TriggerEvent::Unknown,
    }
}

/// The trigger function: run orders and S3 notifications from its queue, direct S3 events,
/// DynamoDB stream batches and the EventBridge schedule tick. Returns the SQS batch response
/// for queue events, a summary otherwise. An event is answered as handled only once every
/// flow it concerns has kept its run in the store (or started it); otherwise the message is
/// reported failed, or the invocation fails, and the event is delivered again (each run's id
/// comes from the event, so the flows that kept it do not run it twice).
pub async fn trigger_handler(sluice: &Sluice, event: Value) -> anyhow::Result<Value> {
    match classify(&event) {
        TriggerEvent::Sqs => {
            let batch: SqsEvent = serde_json::from_value(event)?;
            let mut response = SqsBatchResponse::default();
            for message in batch.records {
                if let Err(e) = trigger_sqs_message(sluice, &message).await {
                    let id = message.message_id.clone().unwrap_or_default();
                    tracing::error!(message_id = %id, error = %e, "trigger message failed");
                    response.add_failure(id);
                }
            }
            Ok(serde_json::to_value(response)?)
        }
        TriggerEvent::S3 => {
            let mut started = Vec::new();
            for o in s3_objects(&event) {
                let event = o.event_id.as_deref();
                started.extend(events::on_s3_object(sluice, &o.bucket, &o.key, event).await?);
            }
            Ok(json!({ "started": started }))
        }
        TriggerEvent::Dynamodb => {
            let started = events::on_table_changes(sluice, table_changes(&event)).await?;
            Ok(json!({ "started": started }))
        }
        TriggerEvent::Schedule => {
            let started = schedule::tick(sluice).await?;
            Ok(json!({ "started": started }))
        }
        TriggerEvent::Unknown => anyhow::bail!("trigger: unrecognised event shape"),
    }
}

/// One message of the trigger queue: an S3 notification (bucket notifications go to this
/// queue; moto's test event `s3:TestEvent` is ignored) or a stage message (a run order).
async fn trigger_sqs_message(sluice: &Sluice, message: &SqsMessage) -> anyhow::Result<()> {
    let body = message.body.as_deref().unwrap_or_default();
    let value: Value = serde_json::from_str(body)?;
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(());
    }
    if value.get("Records").is_some() {
        for o in s3_objects(&value) {
            events::on_s3_object(sluice, &o.bucket, &o.key, o.event_id.as_deref()).await?;
        }
        return Ok(());
    }
    handle_sqs_message(sluice, trigger::HANDLER, message).await
}

/// Decodes an S3 event key: `+` is a space, `%XX` a byte; None when not valid UTF-8.
pub fn url_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// JSON logs for CloudWatch (which stamps each line, so no time), filtered by `RUST_LOG`.
/// See [`json_log_layer`] for the shape of a line.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::from_default_env())
        .with(json_log_layer(std::io::stdout))
        .init();
}

/// One JSON object per line: `level`, `target`, the fields of every span the line was logged
/// in at top level (so a stage's lines carry `stage`, `flow`, `job` and `page` from the span
/// each message is handled in, `stages::message_span`, and Lambda's `requestId`), and the
/// event's own fields, its `message` included, under `fields`, where they cannot clash.
pub fn json_log_layer<S, W>(writer: W) -> json_subscriber::JsonLayer<S, W>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    let mut layer = json_subscriber::JsonLayer::new(writer);
    layer
        .with_level("level")
        .with_target("target")
        .with_top_level_flattened_span_list()
        .with_event("fields");
    layer
}

/// The invocation's deadline as an `Instant` on this process's monotonic clock, for
/// [`sluice_core::budget`].
pub fn invocation_deadline(context: &lambda_runtime::Context) -> std::time::Instant {
    let left = context
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    std::time::Instant::now() + left
}

/// The whole life of an SQS-fed stage function: INIT (clients, caches, the TLS handshake,
/// once per container), then each `SqsEvent` batch to [`sqs_stage_handler`] within the
/// invocation's deadline, answering with the partial batch failures
/// (ReportBatchItemFailures).
pub async fn run_sqs_stage(stage: StageHandler) -> Result<(), lambda_runtime::Error> {
    init_logging();
    let sluice = build_sluice_from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<SqsEvent>| {
            let sluice = sluice.clone();
            async move {
                let deadline = invocation_deadline(&event.context);
                let handled = sluice_core::budget::with_deadline(
                    deadline,
                    sqs_stage_handler(&sluice, stage, event.payload),
                );
                Ok::<SqsBatchResponse, lambda_runtime::Error>(handled.await)
            }
        },
    ))
    .await
}
