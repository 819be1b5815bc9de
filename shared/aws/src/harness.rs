//! Runs the real stage handlers against moto the way the deployed stack runs them: it creates
//! the template's queues (each with its dead-letter queue and redrive policy), table and
//! bucket, then polls each queue like an event source mapping (batches of up to 10, delete
//! what succeeded, leave failures for redelivery) and invokes the handler.
//!
//! Resource names come from the logical ids in [`crate::config`], the same ones
//! infra/template.yaml declares (a test checks they agree).

use crate::config::{
    dead_letter_logical_id, queue_logical_id, s3_client, sdk_config, AwsSettings,
    BUCKET_LOGICAL_ID, TABLE_LOGICAL_ID,
};
use crate::lambda::{build_sluice_with, sqs_stage_handler, trigger_handler};
use crate::store::create_table;
use anyhow::Context;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use serde_json::Value;
use sluice_core::ports::{Kind, Metrics, NoMetrics};
use sluice_core::{PrivateAddresses, Sluice, Stage};
use sluice_model::Job;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Redeliveries before a message moves to its dead-letter queue (as in the template).
pub const MAX_RECEIVE_COUNT: u32 = 5;

pub struct Harness {
    pub sluice: Arc<Sluice>,
    pub settings: AwsSettings,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub dead_letter_urls: HashMap<Stage, String>,
    /// Seconds a failed message stays invisible before it is redelivered.
    pub visibility_timeout: u32,
    /// Queue URL -> ARN (event source records carry the ARN).
    arns: HashMap<String, String>,
    /// Each invocation's time limit, as a function timeout sets it (`None`: unlimited).
    pub invocation_budget: Option<Duration>,
    /// Where every instance's measurements go.
    metrics: Arc<dyn Metrics>,
    /// Invocations so far and their handlers' time, by stage (shared by every instance).
    invocations: Arc<Mutex<HashMap<Stage, (u64, Duration)>>>,
}

/// Messages received from one queue, as the event that invokes a function with them.
pub struct Batch {
    queue_url: String,
    pub event: SqsEvent,
    /// Message id -> receipt handle.
    handles: HashMap<String, String>,
}

/// What the harness created, by kind, as logical ids (compared with the template).
#[derive(Debug, Default, PartialEq)]
pub struct Created {
    pub queues: HashSet<String>,
    pub tables: HashSet<String>,
    pub buckets: HashSet<String>,
}

/// The sender the harness mails alerts from, an identity it verifies on the emulator first
/// (as a deployment's operator verifies `AlertMailFrom` in SES).
pub const ALERT_SENDER: &str = "alerts@sluice.test";

#[cfg(feature = "mail")]
async fn alert_sender(
    config: &aws_config::SdkConfig,
) -> anyhow::Result<Option<sluice_core::MailSettings>> {
    aws_sdk_sesv2::Client::new(config)
        .create_email_identity()
        .email_identity(ALERT_SENDER)
        .send()
        .await
        .context("verifying the alert sender on the emulator")?;
    Ok(Some(sluice_core::MailSettings {
        from: ALERT_SENDER.into(),
        smtp_url: None,
    }))
}

/// Without the `mail` feature the harness's Sluice mails nothing.
#[cfg(not(feature = "mail"))]
async fn alert_sender(
    _: &aws_config::SdkConfig,
) -> anyhow::Result<Option<sluice_core::MailSettings>> {
    Ok(None)
}

impl Harness {
    /// Creates every resource on the emulator at `endpoint` and builds a Sluice on them.
    /// Loopback targets are allowed (test HTTP servers run there).
    pub async fn create(endpoint: &str) -> anyhow::Result<Harness> {
        Self::create_with_metrics(endpoint, Arc::new(NoMetrics)).await
    }

    /// As [`Harness::create`], the Sluice reporting to `metrics`.
    pub async fn create_with_metrics(
        endpoint: &str,
        metrics: Arc<dyn Metrics>,
    ) -> anyhow::Result<Harness> {
        let config = sdk_config(Some(endpoint)).await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let s3 = s3_client(&config, Some(endpoint));
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);

        let table = TABLE_LOGICAL_ID.to_string();
        create_table(&dynamodb, &table).await?;
        let bucket = BUCKET_LOGICAL_ID.to_ascii_lowercase();
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .with_context(|| format!("creating bucket {bucket}"))?;

        let mut queue_urls = HashMap::new();
        let mut dead_letter_urls = HashMap::new();
        let mut arns = HashMap::new();
        let visibility_timeout = 1;
        for stage in Stage::ALL {
            let dlq = sqs
                .create_queue()
                .queue_name(dead_letter_logical_id(stage))
                .send()
                .await
                .context("creating dead-letter queue")?;
            let dlq_url = dlq.queue_url.context("no dead-letter queue url")?;
            let dlq_arn = queue_arn(&sqs, &dlq_url).await?;
            let redrive = serde_json::json!({
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": MAX_RECEIVE_COUNT,
            });
            let queue = sqs
                .create_queue()
                .queue_name(queue_logical_id(stage))
                .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
                .attributes(
                    QueueAttributeName::VisibilityTimeout,
                    visibility_timeout.to_string(),
                )
                .send()
                .await
                .context("creating stage queue")?;
            let queue_url = queue.queue_url.context("no queue url")?;
            arns.insert(queue_url.clone(), queue_arn(&sqs, &queue_url).await?);
            arns.insert(dlq_url.clone(), dlq_arn);
            queue_urls.insert(stage, queue_url);
            dead_letter_urls.insert(stage, dlq_url);
        }
        let settings = AwsSettings {
            table,
            queue_urls,
            system_bucket: bucket,
            endpoint: Some(endpoint.to_string()),
            max_inline_page_bytes: sluice_core::Settings::default().max_inline_page_bytes,
            allow_private_addresses: false,
            replies: Default::default(),
            scripts: Default::default(),
            retention_days: sluice_core::Settings::default().retention_days,
            secret_prefix: "sluice/".into(),
            public_url: None,
            mail: alert_sender(&config).await?,
        };
        let sluice =
            build_sluice_with(&settings, PrivateAddresses::Loopback, metrics.clone()).await?;
        Ok(Harness {
            sluice,
            settings,
            sqs,
            s3,
            dynamodb,
            dead_letter_urls,
            visibility_timeout,
            arns,
            invocation_budget: None,
            metrics,
            invocations: Arc::default(),
        })
    }

    /// Lists what exists on the emulator, as logical ids.
    pub async fn created(&self) -> anyhow::Result<Created> {
        let mut created = Created::default();
        let queues = self.sqs.list_queues().send().await?;
        for url in queues.queue_urls() {
            if let Some(name) = url.rsplit('/').next() {
                created.queues.insert(name.to_string());
            }
        }
        let tables = self.dynamodb.list_tables().send().await?;
        created.tables.extend(tables.table_names().iter().cloned());
        let buckets = self.s3.list_buckets().send().await?;
        for b in buckets.buckets() {
            if let Some(name) = b.name() {
                created.buckets.insert(name.to_string());
            }
        }
        Ok(created)
    }

    /// One poll of one stage queue, like an event source mapping: up to 10 messages, handler,
    /// delete the ones not reported as failed. Returns how many messages were received.
    pub async fn poll(&self, stage: Stage) -> anyhow::Result<usize> {
        self.poll_batch(stage, 10).await
    }

    /// Polls the stage's queue until a poll finds it empty (at most 20 polls); returns how
    /// many messages were handled, continuations the stage queued to itself included.
    pub async fn drain(&self, stage: Stage) -> anyhow::Result<usize> {
        let mut handled = 0;
        for _ in 0..20 {
            match self.poll(stage).await? {
                0 => break,
                n => handled += n,
            }
        }
        Ok(handled)
    }

    /// One poll taking at most `max` messages (1 to 10): a smaller batch size.
    pub async fn poll_batch(&self, stage: Stage, max: i32) -> anyhow::Result<usize> {
        let url = self.settings.queue_urls[&stage].clone();
        self.poll_url(stage, &url, max).await
    }

    /// Another Lambda instance of the same stack: the same table, queues and bucket, its own
    /// caches (HTTP client, tokens, limiters), as a second concurrent INIT would build.
    pub async fn another_instance(&self) -> anyhow::Result<Harness> {
        Ok(Harness {
            sluice: build_sluice_with(
                &self.settings,
                PrivateAddresses::Loopback,
                self.metrics.clone(),
            )
            .await?,
            settings: self.settings.clone(),
            sqs: self.sqs.clone(),
            s3: self.s3.clone(),
            dynamodb: self.dynamodb.clone(),
            dead_letter_urls: self.dead_letter_urls.clone(),
            visibility_timeout: self.visibility_timeout,
            arns: self.arns.clone(),
            invocation_budget: self.invocation_budget,
            metrics: self.metrics.clone(),
            invocations: self.invocations.clone(),
        })
    }

    async fn poll_url(&self, stage: Stage, url: &str, max: i32) -> anyhow::Result<usize> {
        let batch = self.receive_url(stage, url, max).await?;
        if batch.event.records.is_empty() {
            return Ok(0);
        }
        let response = self.invoke(stage, batch.event.clone()).await;
        let received = batch.event.records.len();
        self.settle(batch, &response).await?;
        Ok(received)
    }

    /// Up to `max` messages of the stage's queue as the event an event source mapping would
    /// invoke the function with (empty when the queue is), not yet handled: for a test that
    /// runs the function some other way, then [`settle`](Self::settle)s the batch.
    pub async fn receive(&self, stage: Stage, max: i32) -> anyhow::Result<Batch> {
        let url = self.settings.queue_urls[&stage].clone();
        self.receive_url(stage, &url, max).await
    }

    async fn receive_url(&self, stage: Stage, url: &str, max: i32) -> anyhow::Result<Batch> {
        let arn = self.arns.get(url).cloned().unwrap_or_default();
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .wait_time_seconds(0)
            .send()
            .await
            .with_context(|| format!("receiving from the {} queue", stage.name()))?;
        let mut batch = Batch {
            queue_url: url.to_string(),
            event: SqsEvent::default(),
            handles: HashMap::new(),
        };
        for m in out.messages.unwrap_or_default() {
            let mut message = SqsMessage::default();
            message.message_id = m.message_id.clone();
            message.receipt_handle = m.receipt_handle.clone();
            message.body = m.body.clone();
            message.event_source = Some("aws:sqs".into());
            message.event_source_arn = Some(arn.clone());
            batch.handles.insert(
                m.message_id.unwrap_or_default(),
                m.receipt_handle.unwrap_or_default(),
            );
            batch.event.records.push(message);
        }
        Ok(batch)
    }

    /// Deletes the batch's messages the response does not report as failed, with one
    /// DeleteMessageBatch as an event source mapping does; the failed ones are redelivered.
    pub async fn settle(&self, batch: Batch, response: &SqsBatchResponse) -> anyhow::Result<()> {
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let handled: Vec<_> = batch
            .handles
            .iter()
            .filter(|(id, _)| !failed.contains(id.as_str()))
            .enumerate()
            .map(|(i, (_, handle))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
            })
            .collect::<Result<_, _>>()?;
        if handled.is_empty() {
            return Ok(());
        }
        let out = self
            .sqs
            .delete_message_batch()
            .queue_url(&batch.queue_url)
            .set_entries(Some(handled))
            .send()
            .await
            .context("deleting handled messages")?;
        if let Some(f) = out.failed.first() {
            anyhow::bail!("a handled message was not deleted: {f:?}");
        }
        Ok(())
    }

    /// Invocations so far (every instance) and their handlers' time: (count, seconds).
    pub fn invocations(&self) -> (u64, f64) {
        let by_stage = self.invocations.lock().unwrap();
        by_stage.values().fold((0, 0.0), |(n, s), (count, time)| {
            (n + count, s + time.as_secs_f64())
        })
    }

    /// The same by stage.
    pub fn invocation_stats(&self) -> Vec<(Stage, (u64, Duration))> {
        let by_stage = self.invocations.lock().unwrap();
        Stage::ALL
            .iter()
            .filter_map(|s| by_stage.get(s).map(|v| (*s, *v)))
            .collect()
    }

    /// Forgets the invocations counted so far.
    pub fn reset_invocations(&self) {
        self.invocations.lock().unwrap().clear();
    }

    /// Invokes the stage's function with an SQS batch, as Lambda would (counted, timed).
    pub async fn invoke(&self, stage: Stage, event: SqsEvent) -> SqsBatchResponse {
        let started = Instant::now();
        let response = self.invoke_untimed(stage, event).await;
        let mut by_stage = self.invocations.lock().unwrap();
        let entry = by_stage.entry(stage).or_default();
        entry.0 += 1;
        entry.1 += started.elapsed();
        response
    }

    async fn invoke_untimed(&self, stage: Stage, event: SqsEvent) -> SqsBatchResponse {
        if stage != Stage::Trigger {
            return self
                .within_budget(sqs_stage_handler(&self.sluice, stage.handler(), event))
                .await;
        }
        let ids: Vec<String> = event
            .records
            .iter()
            .map(|m| m.message_id.clone().unwrap_or_default())
            .collect();
        let value = serde_json::to_value(&event).unwrap_or_default();
        match self
            .within_budget(trigger_handler(&self.sluice, value))
            .await
        {
            Ok(v) => serde_json::from_value(v).unwrap_or_default(),
            Err(e) => {
                // A failed invocation fails the whole batch.
                tracing::error!(error = %e, "trigger invocation failed");
                let mut response = SqsBatchResponse::default();
                for id in ids {
                    response.add_failure(id);
                }
                response
            }
        }
    }

    /// Runs one invocation's work under `invocation_budget`, as a function timeout would.
    async fn within_budget<F: std::future::Future>(&self, work: F) -> F::Output {
        match self.invocation_budget {
            Some(budget) => sluice_core::budget::with_deadline(Instant::now() + budget, work).await,
            None => work.await,
        }
    }

    /// Dead-lettered messages go to the stage's function like the template's `DeadLetters`
    /// event source: the handler turns them into job errors (never silent loss).
    pub async fn drain_dead_letters(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for stage in Stage::ALL {
            n += self
                .poll_url(stage, &self.dead_letter_urls[&stage].clone(), 10)
                .await?;
        }
        Ok(n)
    }

    /// Polls every queue once; returns how many messages were handled.
    pub async fn pump(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for stage in Stage::ALL {
            n += self.poll(stage).await?;
        }
        n += self.drain_dead_letters().await?;
        Ok(n)
    }

    /// Stores these definitions, as the API would after checking them.
    pub async fn define(&self, defs: impl IntoIterator<Item = (Kind, &str, Value)>) {
        for (kind, id, doc) in defs {
            self.sluice
                .store
                .put_definition(kind, id, &doc)
                .await
                .expect("the definition is stored");
        }
    }

    /// Pumps until the job is finished (or `timeout`, to avoid hangs) and returns it.
    pub async fn wait_for_job(&self, job_id: &str, timeout: Duration) -> anyhow::Result<Job> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(job) = self.sluice.store.get_job(job_id).await? {
                if job.status.is_finished() {
                    return Ok(job);
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!("job {job_id} did not finish within {timeout:?}");
            }
            if self.pump().await? == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .context("queue has no ARN")
}
