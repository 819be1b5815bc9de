//! [`FileSource`] over SFTP: one SSH session (host key checked against the pinned key, as
//! for uploads: [`crate::stages::upload::sftp::connect`]) and its SFTP channel, shared by
//! every call of one read.

use super::blocking::{blocking, reader_from_thread, TIMEOUT};
use crate::ports::files::{FileSource, RemoteFile};
use crate::ports::BlobReader;
use crate::stages::upload::sftp::{connect, mkdir_p, SftpTarget};
use crate::Sluice;
use anyhow::Context;
use async_trait::async_trait;
use sluice_model::Connection;
use ssh2::{FileStat, RenameFlags, Session, Sftp};
use std::path::Path;
use std::sync::Arc;

pub struct SftpSource {
    /// Kept with the channel: the channel lives on the session.
    _session: Session,
    sftp: Arc<Sftp>,
}

impl SftpSource {
    pub async fn connect(sluice: &Sluice, c: &Connection) -> Result<Box<dyn FileSource>, String> {
        let Some(s) = &c.sftp else {
            return Err(format!("connection {} has no sftp settings", c.id));
        };
        let target = SftpTarget::of(&*sluice.secrets, s, TIMEOUT).map_err(|e| e.to_string())?;
        let shown = format!("{}:{}", s.host, s.port);
        let opened = tokio::task::spawn_blocking(move || {
            let session = connect(&target).map_err(|e| e.to_string())?;
            let sftp = session.sftp().map_err(|e| format!("sftp subsystem: {e}"))?;
            Ok::<_, String>((session, sftp))
        })
        .await
        .map_err(|e| e.to_string())?;
        let (session, sftp) = opened.map_err(|e| format!("sftp {shown}: {e}"))?;
        Ok(Box::new(SftpSource {
            _session: session,
            sftp: Arc::new(sftp),
        }))
    }
}

/// The file a stat describes, if it is a regular file with a size.
fn file_of(path: String, stat: &FileStat) -> Option<RemoteFile> {
    if !stat.is_file() {
        return None;
    }
    let name = path.rsplit('/').next().unwrap_or(&path).to_string();
    Some(RemoteFile {
        name,
        size: stat.size?,
        modified: stat.mtime.unwrap_or(0) as i64,
        path,
    })
}

/// SFTP's "no such file" status.
const NO_SUCH_FILE: i32 = 2;

#[async_trait]
impl FileSource for SftpSource {
    async fn list(
        &self,
        directory: &str,
        wanted: &(dyn for<'n> Fn(&'n str) -> bool + Send + Sync),
    ) -> anyhow::Result<Vec<RemoteFile>> {
        let sftp = self.sftp.clone();
        let dir = directory.to_string();
        let entries = blocking(move || {
            let shown = if dir.is_empty() { "." } else { dir.as_str() };
            let entries = sftp
                .readdir(Path::new(shown))
                .with_context(|| format!("cannot list {shown}"))?;
            // readdir does not follow links: a link is read if it leads to a file.
            Ok(entries
                .into_iter()
                .filter_map(|(path, stat)| {
                    let name = path.file_name()?.to_str()?.to_string();
                    let stat = match stat.file_type().is_symlink() {
                        true => sftp.stat(&path).ok()?,
                        false => stat,
                    };
                    Some((name, stat))
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let mut files: Vec<RemoteFile> = entries
            .into_iter()
            .filter(|(name, _)| wanted(name))
            .filter_map(|(name, stat)| file_of(RemoteFile::join(directory, &name), &stat))
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    async fn open(&self, file: &RemoteFile) -> anyhow::Result<BlobReader> {
        let sftp = self.sftp.clone();
        let path = file.path.clone();
        Ok(reader_from_thread(move |out| {
            let mut f = sftp
                .open(Path::new(&path))
                .map_err(|e| std::io::Error::other(format!("cannot open {path}: {e}")))?;
            out.copy(&mut f).map(|_| ())
        }))
    }

    async fn stat(&self, path: &str) -> anyhow::Result<Option<RemoteFile>> {
        let sftp = self.sftp.clone();
        let path = path.to_string();
        blocking(move || match sftp.stat(Path::new(&path)) {
            Ok(stat) => Ok(file_of(path, &stat)),
            Err(e) if matches!(e.code(), ssh2::ErrorCode::SFTP(NO_SUCH_FILE)) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot stat {path}: {e}")),
        })
        .await
    }

    async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let sftp = self.sftp.clone();
        let path = path.to_string();
        blocking(move || {
            sftp.unlink(Path::new(&path))
                .with_context(|| format!("cannot delete {path}"))
        })
        .await
    }

    async fn rename(&self, path: &str, to: &str) -> anyhow::Result<()> {
        let sftp = self.sftp.clone();
        let (path, to) = (path.to_string(), to.to_string());
        blocking(move || {
            let target = Path::new(&to);
            if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                mkdir_p(&sftp, dir).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            sftp.rename(Path::new(&path), target, Some(RenameFlags::NATIVE))
                .with_context(|| format!("cannot move {path} to {to}"))
        })
        .await
    }
}
