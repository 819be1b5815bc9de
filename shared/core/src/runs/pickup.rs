//! File pickup memory: which files an export's runs have read, so a run that reads its
//! export's whole location (an s3 prefix on a schedule or by hand) reads only files no
//! completed run read before.
//!
//! Invariants: a job notes the files it is about to read (`job:{job}:export:{export}:files`)
//! before it reads them; only when that job completes (with or without record errors) are
//! they remembered for the export (`export:{export}:read:{file}`), before its run lock is
//! released, so the flow's next run cannot read them again. A failed or canceled run's
//! files are read again by the next run. The memory is per export: two flows reading one
//! export share it, as they share its files. Both stores keep it as small state
//! (`Store::get_state` / `put_state`), so the contract's state rules hold it.
//!
//! A file of an ftp export is named by [`RemoteFile::memory_key`](crate::ports::RemoteFile)
//! (its size and modification time with its path), an S3 object by its key. The files a
//! completed job read of an ftp export that deletes or moves them are handed to the trigger
//! stage ([`files_read_later`]), after they are remembered: a file the settling misses stays
//! on the server but is not read again.

use crate::ports::Store;
use crate::{Error, Result, Sluice, Stage};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use sluice_model::{AfterRead, Job, JobStatus, StageMessage};

/// The state key that says `file` of `export_id` was read by a completed run.
fn read_key(export_id: &str, file: &str) -> String {
    format!("export:{export_id}:read:{file}")
}

/// The state key of the files job `job_id` reads of `export_id`.
fn job_key(job_id: &str, export_id: &str) -> String {
    format!("job:{job_id}:export:{export_id}:files")
}

/// How many files' memory is looked up at once: a prefix of thousands of objects is one
/// store read each (a DynamoDB GetItem), which one after another would hold up the run.
const LOOKUPS_IN_FLIGHT: usize = 16;

/// The files of `names` that no completed run of the export read, in the order given.
pub async fn new_files(
    store: &dyn Store,
    export_id: &str,
    names: Vec<String>,
) -> Result<Vec<String>> {
    let seen = futures::stream::iter(names)
        .map(|name| async move {
            let read = store.get_state(&read_key(export_id, &name)).await?;
            Ok::<_, crate::Error>((name, read.is_some()))
        })
        .buffered(LOOKUPS_IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(seen
        .into_iter()
        .filter_map(|(name, read)| (!read).then_some(name))
        .collect())
}

/// Notes that job `job_id` reads these files of `export_id` (its first invocation lists
/// them; a continuation reads on in the same list). Files noted already stay noted.
pub async fn reading(
    store: &dyn Store,
    job_id: &str,
    export_id: &str,
    names: &[String],
) -> Result<()> {
    let key = job_key(job_id, export_id);
    let mut noted = noted(store, job_id, export_id).await?;
    let before = noted.len();
    let mut known: std::collections::HashSet<String> = noted.iter().cloned().collect();
    for n in names {
        if known.insert(n.clone()) {
            noted.push(n.clone());
        }
    }
    if noted.len() != before || before == 0 {
        store.put_state(&key, &json!(noted)).await?;
    }
    Ok(())
}

/// The files job `job_id` noted it reads of `export_id`, in the order noted.
pub async fn noted(store: &dyn Store, job_id: &str, export_id: &str) -> Result<Vec<String>> {
    Ok(match store.get_state(&job_key(job_id, export_id)).await? {
        Some(Value::Array(v)) => v
            .into_iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    })
}

fn completed(job: &Job) -> bool {
    matches!(
        job.status,
        JobStatus::Completed | JobStatus::CompletedWithErrors
    )
}

/// After `job` closed: if it completed, every file it noted is remembered for its export.
/// Idempotent (a closer stopped midway is followed by another), and nothing for a failed or
/// canceled job.
pub async fn remember(store: &dyn Store, job: &Job) -> Result<()> {
    if !completed(job) {
        return Ok(());
    }
    for export_id in &job.uses.export_ids {
        let mark = json!({"_jobId": job.id, "at": job.ended_at});
        for file in noted(store, &job.id, export_id).await? {
            store.put_state(&read_key(export_id, &file), &mark).await?;
        }
    }
    Ok(())
}

/// After `job` closed and its files were remembered: if it completed and read files of an
/// ftp export that deletes or moves them, the trigger stage is asked to
/// ([`StageMessage::FilesRead`]); the stage that closed the job may have no SFTP or FTP
/// client.
pub async fn files_read_later(sluice: &Sluice, job: &Job) -> Result<()> {
    if !completed(job) {
        return Ok(());
    }
    for export_id in &job.uses.export_ids {
        let export = match sluice.export(export_id).await {
            Ok(e) => e,
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let settles = matches!(
            export.after_read(),
            Some(AfterRead::Delete | AfterRead::MoveTo(_))
        );
        if settles && !noted(&*sluice.store, &job.id, export_id).await?.is_empty() {
            let message = StageMessage::FilesRead { job: job.clone() };
            sluice.queue.send(Stage::Trigger, message).await?;
            return Ok(());
        }
    }
    Ok(())
}
