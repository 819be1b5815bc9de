//! Files on a remote server that an ftp export reads: listed, streamed, then deleted or
//! moved. SFTP (ssh2) and FTP/FTPS (suppaftp) implement [`FileSource`] in [`crate::remote`],
//! so the trigger stage reads a directory without knowing the protocol.
//!
//! Invariant: a [`RemoteFile`] names one version of a file: its path with the size and
//! modification time the server gave when it was listed. The export's memory
//! ([`crate::runs::pickup`]) is keyed by that, so a file written again under the same name is
//! read again, and a file is deleted or moved only while it is still the version read.

use super::BlobReader;
use async_trait::async_trait;

/// One file as the server listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// As the server knows it: `directory/name`.
    pub path: String,
    pub name: String,
    pub size: u64,
    /// Seconds since the epoch (servers report whole seconds).
    pub modified: i64,
}

impl RemoteFile {
    /// `directory/name`, as every adapter joins them.
    pub fn join(directory: &str, name: &str) -> String {
        match directory.trim_end_matches('/') {
            "" if directory.starts_with('/') => format!("/{name}"),
            "" => name.to_string(),
            d => format!("{d}/{name}"),
        }
    }

    /// The export's memory of this version of the file: size, modification time and path
    /// (last, since a path may hold any character).
    pub fn memory_key(&self) -> String {
        format!("{}#{}#{}", self.size, self.modified, self.path)
    }

    /// The file a [`memory_key`](Self::memory_key) names.
    pub fn from_memory_key(key: &str) -> Option<RemoteFile> {
        let mut parts = key.splitn(3, '#');
        let size = parts.next()?.parse().ok()?;
        let modified = parts.next()?.parse().ok()?;
        let path = parts.next()?.to_string();
        let name = path.rsplit('/').next().unwrap_or(&path).to_string();
        Some(RemoteFile {
            path,
            name,
            size,
            modified,
        })
    }

    /// Is `now` (a fresh [`FileSource::stat`]) still the version this names?
    pub fn same_version(&self, now: &RemoteFile) -> bool {
        self.size == now.size && self.modified == now.modified
    }
}

/// A directory tree on one server, over one connection (opened when the source is made).
#[async_trait]
pub trait FileSource: Send + Sync {
    /// The files (not folders, not links to folders) directly in `directory` whose names
    /// `wanted` accepts, in name order.
    async fn list(
        &self,
        directory: &str,
        wanted: &(dyn for<'n> Fn(&'n str) -> bool + Send + Sync),
    ) -> anyhow::Result<Vec<RemoteFile>>;
    /// The file's bytes as a stream; reading fails if the file cannot be opened.
    async fn open(&self, file: &RemoteFile) -> anyhow::Result<BlobReader>;
    /// The file at `path` as it is now; None when there is none.
    async fn stat(&self, path: &str) -> anyhow::Result<Option<RemoteFile>>;
    async fn delete(&self, path: &str) -> anyhow::Result<()>;
    /// Moves the file at `path` to `to` (a path), creating `to`'s directory if missing.
    async fn rename(&self, path: &str, to: &str) -> anyhow::Result<()>;
}
