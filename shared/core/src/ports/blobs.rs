use async_trait::async_trait;
use bytes::Bytes;
use std::pin::Pin;
use tokio::io::AsyncRead;

pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// Objects by bucket and key: S3 on AWS, a directory locally. Used for source files, file
/// imports to S3, and pages too large for a queue message.
#[async_trait]
pub trait Blobs: Send + Sync + 'static {
    async fn put(&self, bucket: &str, key: &str, body: Bytes) -> anyhow::Result<()>;
    async fn get(&self, bucket: &str, key: &str) -> anyhow::Result<Option<Bytes>>;
    async fn exists(&self, bucket: &str, key: &str) -> anyhow::Result<bool>;
    /// A stream of the object, so large files are never loaded whole.
    async fn open(&self, bucket: &str, key: &str) -> anyhow::Result<Option<BlobReader>>;
    /// Keys under `prefix`, sorted.
    async fn list(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>>;
}
