//! Starting a run: the flow's run lock, the job, the run order to the trigger queue. A run a
//! person asked for is refused when the flow is busy; the others wait in [`super::queue`].

use super::{finish, hold, queue, watermark};
use crate::{Error, Result, Sluice, Stage};
use chrono::{DateTime, Utc};
use sluice_model::{
    new_id, Export, Flow, Job, JobError, JobStatus, QueuedRun, RetryItem, RunKind, RunOrder,
    RunRequest, RunSource, RunStarted, StageMessage,
};

/// Starts a run of `flow_id`. A run a person asked for (manual, retry) starts now or
/// fails with `Error::Conflict("Flow is currently running")`; runs started by events, the
/// schedule or a chain are kept in the store and start in turn ([`super::queue`]): `Ok(None)`
/// when this one waits.
pub async fn start_run(
    sluice: &Sluice,
    flow_id: &str,
    request: RunRequest,
    kind: RunKind,
) -> Result<Option<RunStarted>> {
    if kind.queues_when_busy() {
        let run = QueuedRun {
            id: new_id(),
            kind,
            request,
            queued_at: sluice.clock.now(),
        };
        return queue::keep(sluice, flow_id, run).await;
    }
    match start_as(sluice, flow_id, &new_id(), request, kind).await? {
        Start::Started(started) => Ok(Some(started)),
        Start::Busy | Start::Ran => Err(Error::Conflict(refusal(sluice, flow_id).await)),
    }
}

/// Why the flow's run lock refuses a run a person asked for, or a change to what the flow
/// uses ([`super::hold`]): which job holds it, since when, how long its lease holds if that
/// job stops making progress (then the next run closes it as abandoned), and how to end it.
pub(super) async fn refusal(sluice: &Sluice, flow_id: &str) -> String {
    const BUSY: &str = "Flow is currently running";
    let Ok(Some(holder)) = sluice.store.lock_holder(flow_id).await else {
        return format!("{BUSY}: try again");
    };
    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let until = rfc3339(holder.lease_until);
    match sluice.store.get_job(&holder.owner).await {
        Ok(Some(job)) => format!(
            "{BUSY}: job {}{}; its run lock's lease ends at {until} (renewed while the job makes progress): wait for it to end, or cancel it (POST /jobs/{}/cancel, `sluice cancel {}`)",
            job.id,
            job.started_at
                .map(|t| format!(", started {}", rfc3339(t)))
                .unwrap_or_default(),
            job.id,
            job.id,
        ),
        _ => format!("{BUSY}: its run lock is held by {} until {until}", holder.owner),
    }
}

/// What [`start_as`] did.
pub(super) enum Start {
    Started(RunStarted),
    /// The flow's run lock is held: by its running job, or by an edit of what it uses.
    Busy,
    /// A job with this id exists already: this run started before.
    Ran,
}

/// The generators a request runs (all, or those of `_exportIds`), checked against the flow
/// and the store, so a run that cannot start says so before it is kept or started. A
/// disabled flow runs only by hand.
pub(super) async fn check(
    sluice: &Sluice,
    flow_id: &str,
    request: &RunRequest,
    kind: RunKind,
) -> Result<(Flow, Vec<(usize, Export)>)> {
    request.validate()?;
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
    let mut exports = Vec::with_capacity(generators.len());
    for i in generators {
        exports.push((i, sluice.export(&flow.page_generators[i].export_id).await?));
    }
    Ok((flow, exports))
}

/// Starts the run as job `job_id` if the flow's run lock is free: lock, job, run order to the
/// trigger queue.
pub(super) async fn start_as(
    sluice: &Sluice,
    flow_id: &str,
    job_id: &str,
    request: RunRequest,
    kind: RunKind,
) -> Result<Start> {
    let (flow, generators) = check(sluice, flow_id, &request, kind).await?;
    let now = sluice.clock.now();
    if !lock(sluice, flow_id, job_id, now).await? {
        return Ok(Start::Busy);
    }
    close_abandoned_jobs(sluice, flow_id).await?;
    let exports: Vec<&Export> = generators.iter().map(|(_, e)| e).collect();
    let mut job = Job::new(job_id.to_string(), flow_id.to_string(), kind, now);
    job.export_id = exports.first().map(|e| e.id.clone());
    job.flow_execution_group_id = Some(new_id());
    job.retry_of = request.retry_of.clone();
    job.auto_retry = request.auto_retry.clone();
    if let Some(retried) = &request.retry_of {
        let (group, first) = number_on(sluice, retried).await?;
        job.flow_execution_group_id = Some(group);
        job.first_page_index = first;
    }
    job.uses = hold::uses(sluice, &flow, &exports).await?;
    job.delta_exports = watermark::plan(sluice, flow_id, &exports, &request, kind).await?;
    // The job's window (what templates see): the one asked for, else its first export's
    // (its delta window's start, lag included, when it reads one).
    job.start_date = match (request.start_date, &job.export_id) {
        (Some(start), _) => Some(start),
        (None, Some(first)) => match job.delta_exports.get(first) {
            Some(start) => *start,
            None => watermark::read(sluice, flow_id, first).await?,
        },
        (None, None) => None,
    };
    job.end_date = Some(request.end_date.unwrap_or(now));
    let created = sluice.store.create_job(&job).await;
    if !matches!(created, Ok(true)) {
        sluice.store.release_lock(flow_id, job_id).await?;
        // A waiting run whose job exists started before (its removal from the waiting runs
        // did not happen): it is not run twice.
        return created.map(|_| Start::Ran).map_err(Into::into);
    }
    if let (Some(_), Some(group)) = (&request.retry_of, &job.flow_execution_group_id) {
        let last = serde_json::json!(job_id);
        sluice.store.put_state(&last_of_group(group), &last).await?;
    }
    let source = match (request.source, request.records) {
        (Some(s), _) => s,
        (None, Some(records)) => RunSource::Records { records },
        (None, None) => RunSource::Export,
    };
    let order = RunOrder {
        job_id: job_id.to_string(),
        flow_id: flow_id.to_string(),
        generator_index: match generators.as_slice() {
            [(only, _)] => Some(*only),
            _ => None,
        },
        export_ids: request.export_ids,
        source,
        resume: None,
    };
    sluice
        .queue
        .send(Stage::Trigger, StageMessage::Run(order))
        .await?;
    Ok(Start::Started(RunStarted {
        job_id: job_id.to_string(),
        export_id: job.export_id,
        flow_execution_group_id: job.flow_execution_group_id.unwrap_or_default(),
    }))
}

/// Takes the flow's run lock for `job_id`. A lock held by a job that is closed already is
/// taken over at once: the process that closed it stopped before releasing it.
async fn lock(sluice: &Sluice, flow_id: &str, job_id: &str, now: DateTime<Utc>) -> Result<bool> {
    let lease = sluice.settings.lock_lease;
    if sluice
        .store
        .acquire_lock(flow_id, job_id, now, lease)
        .await?
    {
        return Ok(true);
    }
    Ok(finish::free_lock_of_closed_job(sluice, flow_id).await?
        && sluice
            .store
            .acquire_lock(flow_id, job_id, now, lease)
            .await?)
}

/// A retry of `retried` joins its flow execution group and numbers its pages on from the
/// group's last job, so `{{page.index}}` (and the file names made of it) is never used twice
/// in a run and its retries. Called holding the flow's run lock: every earlier job of the
/// group is closed, so the last one's page count is final. The group's last job is kept as
/// small state (`flowExecutionGroup:{id}:lastJob`), written once the retry's job exists.
async fn number_on(sluice: &Sluice, retried: &str) -> Result<(String, u64)> {
    let retried_job = sluice
        .store
        .get_job(retried)
        .await?
        .ok_or_else(|| Error::not_found("Job", retried))?;
    let group = retried_job
        .flow_execution_group_id
        .clone()
        .unwrap_or_else(|| retried_job.id.clone());
    let key = last_of_group(&group);
    // No state yet: the group's only job is the one retried.
    let last = match sluice
        .store
        .get_state(&key)
        .await?
        .as_ref()
        .and_then(|v| v.as_str())
    {
        Some(id) => sluice.store.get_job(id).await?,
        None => None,
    }
    .unwrap_or(retried_job);
    Ok((group, last.first_page_index + last.num_pages))
}

/// The state key naming the last job of a flow execution group that a retry joined.
fn last_of_group(group: &str) -> String {
    format!("flowExecutionGroup:{group}:lastJob")
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
            tracing::warn!(abandoned_job = %job.id, flow = %flow_id, "closed an abandoned job");
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
    let items = retry_items(&chosen);
    if items.is_empty() && !chosen.iter().any(|e| e.processor_index < 0) {
        return Err(Error::invalid(
            "errorIds",
            "this job has no unresolved errors to retry",
        ));
    }
    let request = RunRequest {
        retry_of: Some(job.id.clone()),
        export_ids: job.export_id.clone().map(|e| vec![e]),
        source: if items.is_empty() {
            None
        } else {
            Some(RunSource::Retry { items })
        },
        ..Default::default()
    };
    let Some(started) = start_run(sluice, &job.flow_id, request, RunKind::Retry).await? else {
        return Err(Error::Conflict(refusal(sluice, &job.flow_id).await));
    };
    let ids: Vec<String> = chosen.iter().map(|e| e.id.clone()).collect();
    sluice.store.resolve_errors(job_id, &ids).await?;
    if error_ids.is_none() {
        // Every unresolved error is in this retry: an automatic one would find none.
        sluice.store.set_retry_at(job_id, None).await?;
    }
    Ok(started)
}

/// What a retry of `errors` runs: each record from the processor where it failed. Errors of
/// the export itself (processor -1) have no record and are left out.
pub(super) fn retry_items(errors: &[JobError]) -> Vec<RetryItem> {
    errors
        .iter()
        .filter(|e| e.processor_index >= 0)
        .map(|e| RetryItem {
            processor_index: e.processor_index as usize,
            record: e.record.clone(),
            reshape: e.code.reshapes_on_retry(),
        })
        .collect()
}
