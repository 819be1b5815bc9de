//! The end of a run: close the job exactly once, then the after-run work.

use crate::ports::secrets::resolve_headers;
use crate::stages::trigger::{self, http_export::watermark_key, RunKind, RunRequest};
use crate::{Error, Result, Sluice};
use serde_json::json;
use sluice_model::{Job, JobStatus};
use std::time::Duration;

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
    if sluice
        .store
        .close_job(job_id, status, sluice.clock.now(), None)
        .await?
    {
        let job = sluice.store.get_job(job_id).await?.unwrap_or(job);
        after_run(sluice, &job).await?;
    }
    Ok(())
}

/// Closes a job as failed (the export could not be read) and does the after-run work.
pub async fn fail_job(sluice: &Sluice, job_id: &str, message: String) -> Result<()> {
    end_job(sluice, job_id, JobStatus::Failed, message).await
}

/// Closes a job that was stopped before it finished (`sluice run` interrupted or out of
/// time): its lock is released, so the flow can run again at once. Records still in flight
/// are not counted; the message says so.
pub async fn cancel_job(sluice: &Sluice, job_id: &str, message: String) -> Result<()> {
    end_job(sluice, job_id, JobStatus::Canceled, message).await
}

async fn end_job(sluice: &Sluice, job_id: &str, status: JobStatus, message: String) -> Result<()> {
    if sluice
        .store
        .close_job(job_id, status, sluice.clock.now(), Some(message))
        .await?
    {
        if let Some(job) = sluice.store.get_job(job_id).await? {
            after_run(sluice, &job).await?;
        }
    }
    Ok(())
}

async fn after_run(sluice: &Sluice, job: &Job) -> Result<()> {
    tracing::info!(job = %job.id, flow = %job.flow_id, status = job.status.as_str(), success = job.num_success, error = job.num_error, ignore = job.num_ignore, "job finished");
    // The watermark moves only when the run went through: a failed export is read again.
    if matches!(
        job.status,
        JobStatus::Completed | JobStatus::CompletedWithErrors
    ) {
        if let Some(end) = job.end_date {
            sluice
                .store
                .put_state(&watermark_key(&job.flow_id), &json!(end.to_rfc3339()))
                .await?;
        }
    }
    sluice.store.release_lock(&job.flow_id, &job.id).await?;

    // A canceled run (its process is stopping) starts nothing: a run queued behind it stays
    // queued until the flow's next run ends.
    let queued = match job.status {
        JobStatus::Canceled => None,
        _ => sluice.store.take_queued_run(&job.flow_id).await?,
    };
    if let Some(order) = queued {
        let request: RunRequest = serde_json::from_value(order).unwrap_or_default();
        if let Err(e) = trigger::start_run(sluice, &job.flow_id, request, RunKind::Schedule).await {
            tracing::warn!(flow = %job.flow_id, error = %e, "queued run could not start");
        }
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
        for next in &flow.run_next_flow_ids {
            if let Err(e) =
                trigger::start_run(sluice, next, RunRequest::default(), RunKind::Chain).await
            {
                tracing::warn!(flow = %job.flow_id, next = %next, error = %e, "chained flow did not start");
            }
        }
    }
    if !flow.after_process.is_empty() {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        for (i, cb) in flow.after_process.iter().enumerate() {
            let field = format!("afterProcess[{i}].headers");
            let headers = match resolve_headers(&*sluice.secrets, &field, &cb.headers) {
                Ok(headers) => headers,
                Err(e) => {
                    tracing::warn!(url = %cb.url, error = %e, "after-process callback not sent");
                    continue;
                }
            };
            let mut req = client.post(&cb.url).json(job);
            for (name, value) in headers {
                req = req.header(name, value);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(url = %cb.url, status = r.status().as_u16(), "after-process callback refused")
                }
                Err(e) => {
                    tracing::warn!(url = %cb.url, error = %e, "after-process callback failed")
                }
            }
        }
    }
    Ok(())
}
