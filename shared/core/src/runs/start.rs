//! Starting a run: the flow's run lock, the job, the run order to the trigger queue; a run
//! that finds the flow busy waits in the store or is refused, by its kind.

use super::watermark;
use crate::{Error, Result, Sluice, Stage};
use sluice_model::{
    new_id, Job, JobStatus, QueuedRun, RetryItem, RunKind, RunOrder, RunRequest, RunSource,
    RunStarted, StageMessage,
};

/// Starts a run of `flow_id`: lock, job, run order to the trigger queue.
/// Manual runs of a running flow fail with `Error::Conflict("Flow is currently running")`;
/// scheduled and event runs queue behind it (at most one), returning `Ok(None)` when queued.
pub async fn start_run(
    sluice: &Sluice,
    flow_id: &str,
    request: RunRequest,
    kind: RunKind,
) -> Result<Option<RunStarted>> {
    let flow = sluice.flow(flow_id).await?;
    if flow.disabled && !kind.is_by_hand() {
        return Err(Error::invalid(
            "disabled",
            "Flow is disabled: it runs only by hand (POST /flows/{id}/run, sluice run)",
        ));
    }
    let mut generators: Vec<usize> = (0..flow.page_generators.len()).collect();
    if let Some(ids) = &request.export_ids {
        for (i, id) in ids.iter().enumerate() {
            if !flow.page_generators.iter().any(|g| &g.export_id == id) {
                return Err(Error::invalid(
                    format!("_exportIds[{i}]"),
                    format!("Export not found in this flow: {id}"),
                ));
            }
        }
        generators.retain(|&i| ids.contains(&flow.page_generators[i].export_id));
    }
    for &i in &generators {
        sluice.export(&flow.page_generators[i].export_id).await?;
    }
    let job_id = new_id();
    let now = sluice.clock.now();
    if !sluice
        .store
        .acquire_lock(flow_id, &job_id, now, sluice.settings.lock_lease)
        .await?
    {
        if kind.queues_when_busy() {
            let queued = QueuedRun { kind, request };
            sluice.store.set_queued_run(flow_id, &queued).await?;
            return Ok(None);
        }
        return Err(Error::Conflict("Flow is currently running".into()));
    }
    close_abandoned_jobs(sluice, flow_id).await?;
    let mut job = Job::new(job_id.clone(), flow_id.to_string(), kind, now);
    job.export_id = generators
        .first()
        .map(|&i| flow.page_generators[i].export_id.clone());
    job.flow_execution_group_id = Some(new_id());
    job.start_date = match request.start_date {
        Some(start) => Some(start),
        None => watermark::read(sluice, flow_id).await?,
    };
    job.end_date = Some(request.end_date.unwrap_or(now));
    if let Err(e) = sluice.store.create_job(&job).await {
        sluice.store.release_lock(flow_id, &job_id).await?;
        return Err(e.into());
    }
    let source = match (request.source, request.records) {
        (Some(s), _) => s,
        (None, Some(records)) => RunSource::Records { records },
        (None, None) => RunSource::Export,
    };
    let order = RunOrder {
        job_id: job_id.clone(),
        flow_id: flow_id.to_string(),
        generator_index: if generators.len() == 1 {
            generators.first().copied()
        } else {
            None
        },
        export_ids: request.export_ids,
        source,
        resume: None,
    };
    sluice
        .queue
        .send(Stage::Trigger, StageMessage::Run(order))
        .await?;
    Ok(Some(RunStarted {
        job_id,
        export_id: job.export_id,
        flow_execution_group_id: job.flow_execution_group_id.unwrap_or_default(),
    }))
}

/// Called holding the flow's run lock. A job is only opened under that lock and its lock is
/// released only after the job is closed, so an unfinished job found now lost its lock: its
/// lease ran out without progress (the process running it was killed). It is closed as
/// failed, saying so, rather than left `running` for ever. Only the flow's newest job can be
/// such a job (every older one was closed before the lock passed on, or by this check when
/// the next run started), so one job is read: this runs on every run's start.
async fn close_abandoned_jobs(sluice: &Sluice, flow_id: &str) -> Result<()> {
    for job in sluice.store.list_jobs(flow_id, 1).await? {
        if job.status.is_finished() {
            continue;
        }
        let message = format!(
            "abandoned: no progress for {} min and its run lock ran out (the process running it stopped); {} of {} pages were done, records not counted may or may not have been delivered",
            sluice.settings.lock_lease.as_secs() / 60,
            job.num_pages_done,
            if job.paging_done { job.num_pages.to_string() } else { "?".into() }
        );
        if sluice
            .store
            .close_job(
                &job.id,
                JobStatus::Failed,
                sluice.clock.now(),
                Some(message),
            )
            .await?
        {
            tracing::warn!(job = %job.id, flow = %flow_id, "closed an abandoned job");
        }
    }
    Ok(())
}

/// Re-runs the failed records of a job (all unresolved errors, or those named), each from the
/// processor where it failed, as a new job; the errors are marked resolved.
pub async fn retry_errors(
    sluice: &Sluice,
    job_id: &str,
    error_ids: Option<Vec<String>>,
) -> Result<RunStarted> {
    let job = sluice
        .store
        .get_job(job_id)
        .await?
        .ok_or_else(|| Error::not_found("Job", job_id))?;
    let errors = sluice.store.list_errors(job_id).await?;
    let chosen: Vec<_> = match &error_ids {
        Some(ids) => {
            let mut out = Vec::new();
            for id in ids {
                out.push(
                    errors
                        .iter()
                        .find(|e| &e.id == id)
                        .ok_or_else(|| Error::not_found("Error", id))?
                        .clone(),
                );
            }
            out
        }
        None => errors.into_iter().filter(|e| !e.resolved).collect(),
    };
    // Export-level errors (processor -1) have no record to retry: run the export again.
    let items: Vec<RetryItem> = chosen
        .iter()
        .filter(|e| e.processor_index >= 0)
        .map(|e| RetryItem {
            processor_index: e.processor_index as usize,
            record: e.record.clone(),
        })
        .collect();
    if items.is_empty() && !chosen.iter().any(|e| e.processor_index < 0) {
        return Err(Error::invalid(
            "errorIds",
            "this job has no unresolved errors to retry",
        ));
    }
    let request = RunRequest {
        export_ids: job.export_id.clone().map(|e| vec![e]),
        source: if items.is_empty() {
            None
        } else {
            Some(RunSource::Retry { items })
        },
        ..Default::default()
    };
    let started = start_run(sluice, &job.flow_id, request, RunKind::Retry)
        .await?
        .ok_or_else(|| Error::Conflict("Flow is currently running".into()))?;
    let ids: Vec<String> = chosen.iter().map(|e| e.id.clone()).collect();
    sluice.store.resolve_errors(job_id, &ids).await?;
    Ok(started)
}
