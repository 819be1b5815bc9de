//! The end of a run: close the job exactly once, then the after-run work, in order.

use super::{after, auto_retry, pickup, queue, watermark};
use crate::{Error, Result, Sluice};
use sluice_model::{Job, JobStatus};

/// Closes the job with the status its counters give. Only the caller whose close wins does
/// the after-run work, so it happens once however many evaluates race here.
pub async fn complete_job(sluice: &Sluice, job_id: &str) -> Result<()> {
    let Some(job) = sluice.store.get_job(job_id).await? else {
        return Err(Error::not_found("Job", job_id));
    };
    if job.status.is_finished() {
        return Ok(());
    }
    let status = job.final_status();
    if status == JobStatus::CompletedWithErrors {
        // Before the close: a crash between the two leaves the job open, and whoever
        // closes it arms its retry again (the after-run work stays once per job).
        auto_retry::arm(sluice, &job).await?;
    }
    if sluice
        .store
        .close_job(job_id, status, sluice.clock.now(), None)
        .await?
    {
        let job = sluice.store.get_job(job_id).await?.unwrap_or(job);
        after_run(sluice, &job, Then::StartNext).await?;
    }
    Ok(())
}

/// Closes a job as failed (the export could not be read) and does the after-run work.
pub async fn fail_job(sluice: &Sluice, job_id: &str, message: String) -> Result<()> {
    end_job(sluice, job_id, JobStatus::Failed, message, Then::StartNext).await?;
    Ok(())
}

/// Whether the process ending a job goes on to start the flow's next waiting run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// It carries on (the API, a stage): the flow's next waiting run starts now.
    StartNext,
    /// It is stopping, or is not the one running the flow's jobs (`sluice run` interrupted,
    /// `sluice dev` shutting down, `sluice cancel`): a run started here would be cut off at
    /// once, so waiting runs stay kept until the flow's next run ends or another is kept.
    StartNothing,
}

/// Cancels an unfinished job: closed as `canceled` with `message`, its run lock released at
/// once. From then on no stage sends a record of it (the ledger refuses a canceled job's
/// claims, and the trigger stops reading): records whose turn had not come are counted as
/// ignored, records already sent keep their outcome, so the counts stay exact. A canceled
/// job chains nothing. False when the job had already finished (nothing changed).
///
/// It answers [`CANCEL_SETTLES`] after the close: deliver starts a send of a claimed ledger
/// chunk only within a shorter window after a look that found the job running
/// (`deliver/ledger.rs`), so once this returns no send of the job starts any more.
pub async fn cancel_job(
    sluice: &Sluice,
    job_id: &str,
    message: String,
    then: Then,
) -> Result<bool> {
    let closed = end_job(sluice, job_id, JobStatus::Canceled, message, then).await?;
    if closed {
        tokio::time::sleep(CANCEL_SETTLES).await;
    }
    Ok(closed)
}

/// How long after a cancel committed a send that looked at the job before it may still
/// start (see `deliver/ledger.rs`'s `SEND_WINDOW`, which is shorter); `cancel_job` waits it
/// out before answering.
pub const CANCEL_SETTLES: std::time::Duration = std::time::Duration::from_millis(250);

async fn end_job(
    sluice: &Sluice,
    job_id: &str,
    status: JobStatus,
    message: String,
    then: Then,
) -> Result<bool> {
    let closed = sluice
        .store
        .close_job(job_id, status, sluice.clock.now(), Some(message))
        .await?;
    if closed {
        if let Some(job) = sluice.store.get_job(job_id).await? {
            after_run(sluice, &job, then).await?;
        }
    }
    Ok(closed)
}

/// Frees the flow's run lock if the job holding it is closed. Its closer stopped between the
/// close and the release (a killed `sluice run`, a Lambda out of time), and the message it
/// was handling, delivered again, finds the job closed and does nothing more: without this
/// the flow would wait for the lease to run out. The closed job's watermark moves first (that
/// step is idempotent, and the next run reads from it); chained flows and callbacks are not
/// run again, since they may have happened. True when the lock is free (now or already).
pub(super) async fn free_lock_of_closed_job(sluice: &Sluice, flow_id: &str) -> Result<bool> {
    let Some(holder) = sluice.store.lock_holder(flow_id).await? else {
        return Ok(true);
    };
    // An owner that is no job (an edit of what the flow uses) or a running job keeps it.
    let Some(job) = sluice.store.get_job(&holder.owner).await? else {
        return Ok(false);
    };
    if !job.status.is_finished() {
        return Ok(false);
    }
    watermark::advance(sluice, &job).await?;
    pickup::remember(&*sluice.store, &job).await?;
    sluice.store.release_lock(flow_id, &job.id).await?;
    tracing::warn!(job = %job.id, flow = %flow_id, "freed the run lock of a closed job whose after-run work stopped");
    Ok(true)
}

/// The work after a job closed, done once by the caller whose close won.
async fn after_run(sluice: &Sluice, job: &Job, then: Then) -> Result<()> {
    tracing::info!(job = %job.id, flow = %job.flow_id, status = job.status.as_str(), success = job.num_success, error = job.num_error, ignore = job.num_ignore, "job finished");
    watermark::advance(sluice, job).await?;
    // Before the release: the flow's next run must not read these files again.
    pickup::remember(&*sluice.store, job).await?;
    pickup::files_read_later(sluice, job).await?;
    sluice.store.release_lock(&job.flow_id, &job.id).await?;
    if then == Then::StartNext {
        queue::start_next(sluice, &job.flow_id).await?;
    }
    let flow = match sluice.flow(&job.flow_id).await {
        Ok(f) => f,
        Err(Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if matches!(
        job.status,
        JobStatus::Completed | JobStatus::CompletedWithErrors
    ) {
        after::chain(sluice, &flow).await;
    }
    after::callbacks(sluice, &flow, job).await
}
