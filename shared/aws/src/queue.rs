//! [`SqsQueue`]: the [`Queue`] port on one SQS queue per stage.
//!
//! A message over [`DEFLATE_OVER`] goes deflated: `{"gzip": "<base64 of its gzip>"}`. SQS
//! bills a request per 64 KB of payload, and a page of rendered records compresses several
//! times (each record's data and its rendered body are mostly the same text), so most pages
//! of 1 KB records are one billed request instead of two. A message still larger than
//! `max_inline_page_bytes` (SQS allows 256 KiB) is written to the system bucket under
//! `messages/` and the queue carries a small envelope `{"messageRef": "<key>"}`.
//! [`decode_message`] restores either on the receiving side (and reads plain JSON, as sent
//! before deflating).

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use sluice_core::ports::{Blobs, Queue};
use sluice_core::Stage;
use sluice_model::StageMessage;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

pub struct SqsQueue {
    client: Client,
    urls: HashMap<Stage, String>,
    blobs: Arc<dyn Blobs>,
    system_bucket: String,
    max_inline_bytes: usize,
}

impl SqsQueue {
    pub fn new(
        client: Client,
        urls: HashMap<Stage, String>,
        blobs: Arc<dyn Blobs>,
        system_bucket: impl Into<String>,
        max_inline_bytes: usize,
    ) -> Self {
        SqsQueue {
            client,
            urls,
            blobs,
            system_bucket: system_bucket.into(),
            max_inline_bytes,
        }
    }

    pub fn url(&self, stage: Stage) -> anyhow::Result<&str> {
        self.urls
            .get(&stage)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("no queue URL for stage {}", stage.name()))
    }

    /// The body as it goes on the queue: the message itself (deflated when big), or a
    /// reference to it in S3.
    pub async fn encode(&self, message: &StageMessage) -> anyhow::Result<String> {
        let body = serde_json::to_string(message)?;
        let inline = deflated(body.as_bytes())?.unwrap_or_else(|| body.clone());
        if inline.len() <= self.max_inline_bytes {
            return Ok(inline);
        }
        let key = match message {
            StageMessage::Page(p) => format!(
                "messages/{}/{}-{}-{}.json",
                p.job_id,
                p.page_id,
                p.processor_index,
                uuid::Uuid::new_v4()
            ),
            StageMessage::Run(_) => format!("messages/run-{}.json", uuid::Uuid::new_v4()),
            StageMessage::AfterProcess { job } => {
                format!(
                    "messages/{}/after-process-{}.json",
                    job.id,
                    uuid::Uuid::new_v4()
                )
            }
            StageMessage::FilesRead { job } => {
                format!(
                    "messages/{}/files-read-{}.json",
                    job.id,
                    uuid::Uuid::new_v4()
                )
            }
        };
        self.blobs
            .put(&self.system_bucket, &key, Bytes::from(body))
            .await?;
        Ok(json!({"messageRef": {"bucket": self.system_bucket, "key": key}}).to_string())
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, stage: Stage, message: StageMessage) -> anyhow::Result<()> {
        let body = self.encode(&message).await?;
        self.client
            .send_message()
            .queue_url(self.url(stage)?)
            .message_body(body)
            .send()
            .await
            .with_context(|| format!("sqs SendMessage to the {} queue", stage.name()))?;
        Ok(())
    }
}

/// Messages whose JSON is larger than this go deflated (see the module doc); below it the
/// saving is not worth the CPU and plain JSON is easier to read in the console.
pub const DEFLATE_OVER: usize = 8 * 1024;

/// `{"gzip": ...}` of `json` when it is over [`DEFLATE_OVER`] and that is smaller.
fn deflated(json: &[u8]) -> anyhow::Result<Option<String>> {
    if json.len() <= DEFLATE_OVER {
        return Ok(None);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json)?;
    let packed = base64::engine::general_purpose::STANDARD.encode(gz.finish()?);
    let envelope = json!({ GZIP: packed }).to_string();
    Ok((envelope.len() < json.len()).then_some(envelope))
}

const GZIP: &str = "gzip";

/// A queue body back to the message: inflated when it went deflated, fetched from S3 when
/// it travelled by reference.
pub async fn decode_message(body: &str, blobs: &dyn Blobs) -> anyhow::Result<StageMessage> {
    let value: Value = serde_json::from_str(body).context("queue message is not JSON")?;
    if let Some(packed) = value.get(GZIP).and_then(Value::as_str) {
        let gz = base64::engine::general_purpose::STANDARD
            .decode(packed)
            .context("a deflated queue message is not base64")?;
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut json)
            .context("a deflated queue message does not inflate")?;
        return serde_json::from_slice(&json).context("queue message is not a stage message");
    }
    if let Some(reference) = value.get("messageRef") {
        let bucket = reference["bucket"]
            .as_str()
            .context("messageRef.bucket missing")?;
        let key = reference["key"]
            .as_str()
            .context("messageRef.key missing")?;
        let data = blobs
            .get(bucket, key)
            .await?
            .ok_or_else(|| anyhow!("messageRef: s3://{bucket}/{key} does not exist"))?;
        return serde_json::from_slice(&data)
            .with_context(|| format!("messageRef s3://{bucket}/{key} is not a stage message"));
    }
    serde_json::from_value(value).context("queue message is not a stage message")
}
