//! [`S3Blobs`]: the [`Blobs`] port on S3.

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use bytes::Bytes;
use sluice_core::ports::{BlobReader, Blobs};

pub struct S3Blobs {
    client: Client,
}

impl S3Blobs {
    pub fn new(client: Client) -> Self {
        S3Blobs { client }
    }
}

fn is_missing<E: aws_sdk_s3::error::ProvideErrorMetadata>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    // HEAD answers carry no error body, so the status is the only sign of "not there".
    let status_404 = matches!(err, aws_sdk_s3::error::SdkError::ServiceError(_))
        && err
            .raw_response()
            .is_some_and(|r| r.status().as_u16() == 404);
    status_404
        || err
            .as_service_error()
            .and_then(|e| e.code())
            .is_some_and(|c| c == "NoSuchKey" || c == "NotFound")
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn put(&self, bucket: &str, key: &str, body: Bytes) -> anyhow::Result<()> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .with_context(|| format!("s3 PutObject s3://{bucket}/{key}"))?;
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> anyhow::Result<Option<Bytes>> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let data = out
                    .body
                    .collect()
                    .await
                    .with_context(|| format!("reading s3://{bucket}/{key}"))?;
                Ok(Some(data.into_bytes()))
            }
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("s3 GetObject s3://{bucket}/{key}")))
            }
        }
    }

    async fn exists(&self, bucket: &str, key: &str) -> anyhow::Result<bool> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("s3 HeadObject s3://{bucket}/{key}")))
            }
        }
    }

    async fn open(&self, bucket: &str, key: &str) -> anyhow::Result<Option<BlobReader>> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Box::pin(out.body.into_async_read()))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("s3 GetObject s3://{bucket}/{key}")))
            }
        }
    }

    async fn list(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .with_context(|| format!("s3 ListObjectsV2 s3://{bucket}/{prefix}"))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }
}
