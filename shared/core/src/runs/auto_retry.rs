//! Automatic retries (a flow's `autoRetry`): a job that ends with retryable errors has its
//! errors run again, later, as a retry job linked to it; that job's own retryable errors the
//! same, on the flow's backoff schedule, until none is left or `maxAttempts` ran.
//!
//! How it stays exactly once without a new stage:
//! - The due time is a durable entry in the store (`Store::set_retry_at`, one per job, indexed
//!   by time like the schedules), written by [`arm`] *before* the job is closed: a process
//!   that dies between the two leaves the job running, and whoever closes it later (the
//!   redelivered message) arms it again, to the same entry. So the after-run work stays
//!   once per job and a crash cannot lose a retry.
//! - The minute tick ([`tick`], with the schedules') starts what is due: minute granularity,
//!   so a delay under a minute means "at the next tick". The retry job's id is derived from
//!   the chain's first job and the attempt, so a tick that stopped halfway (or two ticks at
//!   once) keeps and runs the retry once; the errors it retries are resolved and the entry
//!   cleared only after the retry is kept.
//! - Only errors [`JobError::auto_retry`] allows are retried: a record that may have reached
//!   its target is sent again only when its step sends again after such failures.
//! - The chain stops when the retried job is canceled, the flow is gone, disabled or its
//!   `autoRetry` off, the attempt is past `maxAttempts`, or no retryable error is left.

use super::queue;
use super::start::retry_items;
use crate::{Error, Result, Sluice};
use sluice_model::{
    Job, JobError, JobStatus, QueuedRun, Resend, RetryAttempt, RunKind, RunRequest, RunSource,
    RunStarted,
};

/// The attempt a retry of `job` would be: 1 for a job that is no automatic retry.
fn next_attempt(job: &Job) -> u32 {
    job.auto_retry.as_ref().map_or(1, |a| a.attempt + 1)
}

/// Called with the job about to be closed as completed with errors: keeps when its next
/// automatic retry is due, if the flow retries automatically and the job has errors to retry.
pub(super) async fn arm(sluice: &Sluice, job: &Job) -> Result<()> {
    let flow = match sluice.flow(&job.flow_id).await {
        Ok(f) => f,
        Err(Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let due = match &flow.auto_retry {
        Some(setting) if !flow.disabled => setting.due(next_attempt(job), sluice.clock.now()),
        _ => None,
    };
    let Some(due) = due else {
        return Ok(());
    };
    if retryable(sluice, job).await?.is_empty() {
        return Ok(());
    }
    sluice.store.set_retry_at(&job.id, Some(due)).await?;
    Ok(())
}

/// The unresolved errors of `job` an automatic retry may send again.
async fn retryable(sluice: &Sluice, job: &Job) -> Result<Vec<JobError>> {
    let mut out = Vec::new();
    for e in sluice.store.list_errors(&job.id).await? {
        let yes = match e.auto_retry() {
            Resend::Yes => true,
            Resend::IfStepResends => step_resends(sluice, &e).await?,
            Resend::No => false,
        };
        if yes {
            out.push(e);
        }
    }
    Ok(out)
}

/// Whether the step that failed `e` sends again after a failure that may have reached the
/// target: lookups always (GETs), imports as their `http.retryAmbiguous` / method say.
async fn step_resends(sluice: &Sluice, e: &JobError) -> Result<bool> {
    let Some(import) = &e.import_id else {
        return Ok(true);
    };
    match sluice.import(import).await {
        Ok(i) => Ok(i.http.as_ref().is_none_or(|h| h.retries_ambiguous())),
        Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The minute tick's part: starts (or keeps behind a running job) every automatic retry
/// that is due. One that fails is logged and stays due, for the next tick.
pub async fn tick(sluice: &Sluice) -> Result<Vec<RunStarted>> {
    let mut started = Vec::new();
    for (job_id, _) in sluice.store.due_retries(sluice.clock.now()).await? {
        match fire(sluice, &job_id).await {
            Ok(Some(s)) => started.push(s),
            Ok(None) => {}
            Err(e) => tracing::warn!(job = %job_id, error = %e, "automatic retry did not start"),
        }
    }
    Ok(started)
}

/// Starts the due automatic retry of `job_id`, or ends its chain (the entry cleared).
async fn fire(sluice: &Sluice, job_id: &str) -> Result<Option<RunStarted>> {
    let store = &sluice.store;
    let Some(job) = store.get_job(job_id).await? else {
        store.set_retry_at(job_id, None).await?;
        return Ok(None);
    };
    if !job.status.is_finished() {
        // Armed, and its close has not happened yet: look again at the next tick.
        let later = sluice.clock.now() + chrono::Duration::minutes(1);
        store.set_retry_at(job_id, Some(later)).await?;
        return Ok(None);
    }
    let Some((run, retried)) = next_run(sluice, &job).await? else {
        tracing::info!(job = %job.id, flow = %job.flow_id, "automatic retries of this job end here");
        store.set_retry_at(job_id, None).await?;
        return Ok(None);
    };
    let started = match queue::keep(sluice, &job.flow_id, run).await {
        Ok(started) => started,
        // It cannot start at all (an export the flow no longer has): the chain ends.
        Err(e @ (Error::Validation(_) | Error::NotFound { .. })) => {
            tracing::warn!(job = %job.id, error = %e, "automatic retry cannot start; no more are tried");
            None
        }
        Err(e) => return Err(e),
    };
    store.resolve_errors(&job.id, &retried).await?;
    store.set_retry_at(job_id, None).await?;
    Ok(started)
}

/// The automatic retry of closed `job` that is due with the ids of the errors it retries, or
/// `None` when its chain ends.
async fn next_run(sluice: &Sluice, job: &Job) -> Result<Option<(QueuedRun, Vec<String>)>> {
    if job.status == JobStatus::Canceled {
        return Ok(None);
    }
    let flow = match sluice.flow(&job.flow_id).await {
        Ok(f) => f,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let attempt = next_attempt(job);
    let Some(setting) = flow
        .auto_retry
        .as_ref()
        .filter(|s| s.on && !flow.disabled && attempt <= s.max_attempts())
    else {
        return Ok(None);
    };
    let errors = retryable(sluice, job).await?;
    if errors.is_empty() {
        return Ok(None);
    }
    let original = job
        .auto_retry
        .as_ref()
        .map_or(job.id.clone(), |a| a.original_job_id.clone());
    let event = format!("autoRetry:{original}:{attempt}");
    let run = QueuedRun {
        id: queue::event_run_id(&job.flow_id, &event),
        kind: RunKind::AutoRetry,
        request: RunRequest {
            retry_of: Some(job.id.clone()),
            export_ids: job.export_id.clone().map(|e| vec![e]),
            source: Some(RunSource::Retry {
                items: retry_items(&errors),
            }),
            auto_retry: Some(RetryAttempt {
                attempt,
                max_attempts: setting.max_attempts(),
                original_job_id: original,
            }),
            ..Default::default()
        },
        queued_at: sluice.clock.now(),
    };
    Ok(Some((run, errors.into_iter().map(|e| e.id).collect())))
}

/// Drops the pending automatic retry of `job_id` (a person canceled it). False when none was
/// pending.
pub async fn cancel_auto_retry(sluice: &Sluice, job_id: &str) -> Result<bool> {
    if sluice.store.retry_at(job_id).await?.is_none() {
        return Ok(false);
    }
    sluice.store.set_retry_at(job_id, None).await?;
    Ok(true)
}
