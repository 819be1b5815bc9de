//! The Blobs port over a directory: `<root>/<bucket>/<key>`.

use anyhow::{bail, Context};
use async_trait::async_trait;
use bytes::Bytes;
use sluice_core::ports::{BlobReader, Blobs};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct FsBlobs {
    root: PathBuf,
}

impl FsBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsBlobs { root: root.into() }
    }

    /// The file of an object; bucket and key may not climb out of the root.
    fn path(&self, bucket: &str, key: &str) -> anyhow::Result<PathBuf> {
        for (what, part) in [("bucket", bucket), ("key", key)] {
            let p = Path::new(part);
            if part.is_empty()
                || p.is_absolute()
                || p.components().any(|c| !matches!(c, Component::Normal(_)))
            {
                bail!("{what} '{part}' is not a plain relative name");
            }
        }
        Ok(self.root.join(bucket).join(key))
    }
}

#[async_trait]
impl Blobs for FsBlobs {
    async fn put(&self, bucket: &str, key: &str, body: Bytes) -> anyhow::Result<()> {
        let path = self.path(bucket, key)?;
        let dir = path.parent().context("object path has a parent")?;
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let temp = dir.join(format!(".{}.part", uuid_like()));
        tokio::fs::write(&temp, &body)
            .await
            .with_context(|| format!("cannot write {}", temp.display()))?;
        tokio::fs::rename(&temp, &path)
            .await
            .with_context(|| format!("cannot move into {}", path.display()))?;
        Ok(())
    }

    async fn get(&self, bucket: &str, key: &str) -> anyhow::Result<Option<Bytes>> {
        match tokio::fs::read(self.path(bucket, key)?).await {
            Ok(b) => Ok(Some(b.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn exists(&self, bucket: &str, key: &str) -> anyhow::Result<bool> {
        Ok(tokio::fs::try_exists(self.path(bucket, key)?).await?)
    }

    async fn open(&self, bucket: &str, key: &str) -> anyhow::Result<Option<BlobReader>> {
        match tokio::fs::File::open(self.path(bucket, key)?).await {
            Ok(f) => Ok(Some(Box::pin(f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let root = self
            .path(bucket, "x")?
            .parent()
            .context("bucket dir")?
            .to_path_buf();
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let mut rd = match tokio::fs::read_dir(&dir).await {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = rd.next_entry().await? {
                let p = entry.path();
                if entry.file_type().await?.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix)
                        && !rel
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn put_get_open_list_and_refuse_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let b = FsBlobs::new(dir.path());
        b.put("bk", "in/a.json", Bytes::from_static(b"[1]"))
            .await
            .unwrap();
        b.put("bk", "in/b.csv", Bytes::from_static(b"x\n1\n"))
            .await
            .unwrap();
        b.put("bk", "out/c", Bytes::from_static(b"c"))
            .await
            .unwrap();
        assert_eq!(
            b.get("bk", "in/a.json").await.unwrap().unwrap(),
            Bytes::from_static(b"[1]")
        );
        assert!(b.get("bk", "nope").await.unwrap().is_none());
        assert!(b.exists("bk", "out/c").await.unwrap());
        let mut s = String::new();
        b.open("bk", "in/b.csv")
            .await
            .unwrap()
            .unwrap()
            .read_to_string(&mut s)
            .await
            .unwrap();
        assert_eq!(s, "x\n1\n");
        assert_eq!(
            b.list("bk", "in/").await.unwrap(),
            vec!["in/a.json", "in/b.csv"]
        );
        assert_eq!(b.list("empty", "").await.unwrap(), Vec::<String>::new());
        assert!(b
            .put("bk", "../escape", Bytes::new())
            .await
            .unwrap_err()
            .to_string()
            .contains("not a plain relative name"));
        assert!(b.get("..", "x").await.is_err());
    }
}
