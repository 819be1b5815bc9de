//! Runs waiting for their flow. A run started by an event, the schedule or a chain is kept in
//! the store first (`Store::queue_run`, durable, in arrival order), then the oldest waiting
//! run starts if the flow's run lock is free. Every place that frees the lock (a job's end,
//! an edit that held it) and every place that keeps a run calls [`start_next`], so a waiting
//! run never waits for nothing: whoever comes last finds the other's work.
//!
//! A waiting run leaves the store only once its job exists (or it cannot start, which leaves
//! a failed job saying why), so an event is never dropped between being kept and being read.
//! Its id is its job id: a run kept twice (an event delivered again) runs once.

use super::start::{self, Start};
use crate::{Error, Result, Sluice};
use sha2::{Digest, Sha256};
use sluice_model::{new_id, Job, JobStatus, QueuedRun, RunKind, RunRequest, RunSource, RunStarted};

/// Keeps the run an event asks for (an object created, a batch of table changes) and starts
/// it in turn. `event` names the event (S3's sequencer, the stream records' ids): the run's
/// id comes from it and the flow, so an event delivered again is kept once and runs once.
/// Without it each call is a new run.
pub async fn start_event_run(
    sluice: &Sluice,
    flow_id: &str,
    event: Option<&str>,
    request: RunRequest,
    kind: RunKind,
) -> Result<Option<RunStarted>> {
    let id = match event {
        Some(event) => event_run_id(flow_id, event),
        None => new_id(),
    };
    let run = QueuedRun {
        id,
        kind,
        request,
        queued_at: sluice.clock.now(),
    };
    keep(sluice, flow_id, run).await
}

/// A job id (24 hex characters, as every id) that one flow's run of one event always gets.
pub(super) fn event_run_id(flow_id: &str, event: &str) -> String {
    let digest = Sha256::new()
        .chain_update(flow_id.as_bytes())
        .chain_update([0u8])
        .chain_update(event.as_bytes())
        .finalize();
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Keeps `run` and starts the oldest waiting run if the flow is free. `Some` when that was
/// this run. A run the flow cannot start at all (disabled, unknown export) is refused now.
pub(crate) async fn keep(
    sluice: &Sluice,
    flow_id: &str,
    run: QueuedRun,
) -> Result<Option<RunStarted>> {
    start::check(sluice, flow_id, &run.request, run.kind).await?;
    let run = records_aside(sluice, flow_id, run).await?;
    if !sluice.store.queue_run(flow_id, &run).await? {
        tracing::info!(flow = %flow_id, run = %run.id, kind = run.kind.as_str(), "run kept already");
    }
    let started = start_next(sluice, flow_id).await?;
    Ok(started.filter(|s| s.job_id == run.id))
}

/// A waiting run whose records (a large stream batch) would not fit in a store item keeps
/// them in the system bucket instead, under `waiting/`, and reads them from there.
async fn records_aside(sluice: &Sluice, flow_id: &str, mut run: QueuedRun) -> Result<QueuedRun> {
    let size = serde_json::to_vec(&run)
        .map_err(|e| Error::Internal(e.into()))?
        .len();
    if size <= sluice.settings.max_inline_page_bytes {
        return Ok(run);
    }
    let records = match run.request.source.take() {
        Some(RunSource::Records { records }) => records,
        other => {
            run.request.source = other;
            match run.request.records.take() {
                Some(records) => records,
                None => return Ok(run),
            }
        }
    };
    let mut body = Vec::with_capacity(size);
    for r in &records {
        serde_json::to_writer(&mut body, r).map_err(|e| Error::Internal(e.into()))?;
        body.push(b'\n');
    }
    let bucket = sluice.settings.system_bucket.clone();
    let key = format!("waiting/{flow_id}/{}.ndjson", run.id);
    sluice.blobs.put(&bucket, &key, body.into()).await?;
    run.request.source = Some(RunSource::StoredRecords { bucket, key });
    Ok(run)
}

/// Starts the flow's oldest waiting run if its run lock is free. `None` when nothing waits or
/// the flow is busy (its holder calls this again when it lets go).
pub(crate) async fn start_next(sluice: &Sluice, flow_id: &str) -> Result<Option<RunStarted>> {
    loop {
        let Some(next) = sluice.store.queued_runs(flow_id, 1).await?.pop() else {
            return Ok(None);
        };
        let started =
            start::start_as(sluice, flow_id, &next.id, next.request.clone(), next.kind).await;
        match started {
            Ok(Start::Busy) => return Ok(None),
            Ok(Start::Started(s)) => {
                sluice.store.remove_queued_run(flow_id, &next).await?;
                return Ok(Some(s));
            }
            Ok(Start::Ran) => sluice.store.remove_queued_run(flow_id, &next).await?,
            Err(Error::Internal(e)) => return Err(Error::Internal(e)),
            Err(e) => {
                cannot_start(sluice, flow_id, &next, &e).await?;
                sluice.store.remove_queued_run(flow_id, &next).await?;
            }
        }
    }
}

/// A waiting run that cannot start any more (its flow was disabled, an export it reads was
/// removed) ends as a failed job that says why, so it is seen rather than lost. For a flow
/// that no longer exists there is nothing to show it on: it is logged.
async fn cannot_start(sluice: &Sluice, flow_id: &str, run: &QueuedRun, why: &Error) -> Result<()> {
    let message = format!(
        "this {} run waited for the flow's running job and then could not start: {why}",
        run.kind.as_str()
    );
    if matches!(why, Error::NotFound { .. }) && sluice.flow(flow_id).await.is_err() {
        tracing::warn!(flow = %flow_id, run = %run.id, "{message}");
        return Ok(());
    }
    let now = sluice.clock.now();
    let mut job = Job::new(run.id.clone(), flow_id.to_string(), run.kind, now);
    job.status = JobStatus::Failed;
    job.ended_at = Some(now);
    job.message = Some(message);
    sluice.store.create_job(&job).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::event_run_id;

    #[test]
    fn an_event_gets_one_run_id_per_flow() {
        let id = event_run_id("f1", "s3|in|a.csv|0055AED6DCD90281E5");
        assert_eq!(id.len(), 24);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(id, event_run_id("f1", "s3|in|a.csv|0055AED6DCD90281E5"));
        assert_ne!(id, event_run_id("f2", "s3|in|a.csv|0055AED6DCD90281E5"));
        assert_ne!(id, event_run_id("f1", "s3|in|a.csv|0055AED6DCD90281E6"));
    }
}
