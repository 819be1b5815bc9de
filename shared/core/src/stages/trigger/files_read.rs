//! The files a completed job read of ftp exports, deleted or moved to the export's backup
//! directory (`StageMessage::FilesRead`, queued by the job's closer: [`runs::pickup`]).
//!
//! Invariants: only files of a job that completed (every record judged) get here, and only
//! after the export remembered them. A file is touched only while it is the version read
//! (same size and modification time): one written again since is new, and stays to be read.
//! Safe to redeliver: a file already gone is done.

use crate::ports::{FileSource, RemoteFile};
use crate::{remote, runs, Error, Result, Sluice};
use sluice_model::{AfterRead, Job};

pub async fn handle(sluice: &Sluice, job: Job) -> Result<()> {
    for export_id in &job.uses.export_ids {
        let export = match sluice.export(export_id).await {
            Ok(e) => e,
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let after = match export.after_read() {
            Some(AfterRead::Keep) | None => continue,
            Some(after) => after,
        };
        let files = runs::pickup::noted(&*sluice.store, &job.id, export_id).await?;
        if files.is_empty() {
            continue;
        }
        let connection = sluice
            .connection(export.connection_id.as_deref().unwrap_or_default())
            .await?;
        let source = remote::source_for(sluice, &connection)
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!(e)))?;
        for file in files.iter().filter_map(|k| RemoteFile::from_memory_key(k)) {
            settle(&*source, &file, &after, &job.id).await?;
        }
    }
    Ok(())
}

/// Deletes or moves one file, if it is still the version read.
async fn settle(
    source: &dyn FileSource,
    file: &RemoteFile,
    after: &AfterRead,
    job_id: &str,
) -> Result<()> {
    match source.stat(&file.path).await? {
        None => return Ok(()),
        Some(now) if !file.same_version(&now) => {
            tracing::warn!(path = %file.path, "written again since it was read: left to be read by the next run");
            return Ok(());
        }
        Some(_) => {}
    }
    match after {
        AfterRead::Delete => source.delete(&file.path).await?,
        AfterRead::MoveTo(dir) => {
            let mut to = RemoteFile::join(dir, &file.name);
            // A name taken in the backup directory is kept: this one gets the job's id.
            if source.stat(&to).await?.is_some() {
                to = format!("{to}.{job_id}");
            }
            source.rename(&file.path, &to).await?
        }
        AfterRead::Keep => {}
    }
    Ok(())
}
