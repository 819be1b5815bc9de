//! Pipeline cleaning: jobs older than their flow's retention period go, with their errors,
//! page outcomes and delivery-ledger entries (`Store::purge_jobs`), so the store does not
//! grow for ever. A flow's `retentionDays` sets its period, else the deployment's
//! (`Settings::retention_days`, `SLUICE_RETENTION_DAYS`, 30 days; 0 keeps jobs for ever).
//! Run by `sluice clean` and, once a day, by the schedule's minute tick ([`tick`]: the
//! trigger function on AWS, `sluice dev` locally).
//!
//! Invariant: nothing a running job or a pending retry still needs is purged. Only finished
//! jobs go; a job whose flow execution group has an unfinished job (its retry running or
//! waiting, which numbers its pages on from the group's jobs and resolves its errors) stays,
//! as does one a waiting run is to retry or whose automatic retry is pending. The ledger rows of completed jobs go earlier, when
//! the flow's next job opens (the embedded store's own pruning, which no redelivery can
//! need); this purge is what removes those of failed and canceled jobs, and everything else.

use crate::ports::{JobQuery, Purged};
use crate::{Result, Sluice};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sluice_model::{Flow, Job};
use std::collections::HashMap;

/// What a clean-up is asked to do.
#[derive(Debug, Clone, Default)]
pub struct CleanRequest {
    /// Only this flow's jobs.
    pub flow_id: Option<String>,
    /// Say what would go, delete nothing.
    pub dry_run: bool,
    /// Purge finished jobs older than this instead of each flow's retention (`sluice clean
    /// --older-than-days`).
    pub older_than: Option<Duration>,
}

/// A job the clean-up chose, or kept although it is old enough, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanedJob {
    #[serde(rename = "_jobId")]
    pub job_id: String,
    #[serde(rename = "_flowId")]
    pub flow_id: String,
    #[serde(with = "sluice_model::time::ms")]
    pub created_at: DateTime<Utc>,
    /// Its stored errors.
    pub errors: usize,
    /// Why it stays (kept jobs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_because: Option<String>,
}

/// What a clean-up did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanReport {
    pub dry_run: bool,
    /// Jobs purged (or that would be).
    pub purged: Vec<CleanedJob>,
    /// Jobs past their retention that stay, each saying why.
    pub kept: Vec<CleanedJob>,
    /// What the store deleted (nothing in a dry run, whose ledger entries are not counted).
    pub deleted: Purged,
}

/// How many jobs one `purge_jobs` call takes.
const BATCH: usize = 50;

/// Purges the jobs past their retention (or, with `dry_run`, says which would go).
pub async fn clean(sluice: &Sluice, request: &CleanRequest) -> Result<CleanReport> {
    let now = sluice.clock.now();
    let retention = match request.older_than {
        Some(age) => Retention {
            default: Some(age),
            flows: HashMap::new(),
        },
        None => Retention::read(sluice).await?,
    };
    let mut report = CleanReport {
        dry_run: request.dry_run,
        ..Default::default()
    };
    let Some(shortest) = retention.shortest(request.flow_id.as_deref()) else {
        return Ok(report);
    };
    let mut query = JobQuery {
        flow_id: request.flow_id.clone(),
        until: Some(now - shortest),
        limit: 100,
        ..Default::default()
    };
    let mut flows: HashMap<String, FlowNow> = HashMap::new();
    loop {
        let page = sluice.store.find_jobs(&query).await?;
        for job in page.items {
            let Some(created) = job.created_at.or(job.started_at) else {
                continue;
            };
            if retention
                .of(&job.flow_id)
                .is_none_or(|keep| created >= now - keep)
            {
                continue;
            }
            if !flows.contains_key(&job.flow_id) {
                flows.insert(
                    job.flow_id.clone(),
                    FlowNow::read(sluice, &job.flow_id).await?,
                );
            }
            let needed = match flows[&job.flow_id].needs(&job) {
                Some(why) => Some(why),
                // Its automatic retry reads its errors and links to it.
                None => sluice
                    .store
                    .retry_at(&job.id)
                    .await?
                    .map(|at| format!("its automatic retry is due at {}", at.to_rfc3339())),
            };
            let entry = CleanedJob {
                job_id: job.id.clone(),
                flow_id: job.flow_id.clone(),
                created_at: created,
                errors: sluice.store.list_errors(&job.id).await?.len(),
                kept_because: needed,
            };
            match entry.kept_because {
                Some(_) => report.kept.push(entry),
                None => report.purged.push(entry),
            }
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    if !request.dry_run {
        for batch in report.purged.chunks(BATCH) {
            let ids: Vec<String> = batch.iter().map(|j| j.job_id.clone()).collect();
            let purged = sluice.store.purge_jobs(&ids).await?;
            report.deleted.jobs += purged.jobs;
            report.deleted.errors += purged.errors;
            report.deleted.ledger_entries += purged.ledger_entries;
        }
    }
    Ok(report)
}

/// What a flow is doing now, as far as its old jobs' purge is concerned.
struct FlowNow {
    /// Its newest job: the only one that can be unfinished (a job opens under the run lock).
    newest: Option<Job>,
    /// Its waiting runs.
    waiting: Vec<sluice_model::QueuedRun>,
}

impl FlowNow {
    async fn read(sluice: &Sluice, flow_id: &str) -> Result<FlowNow> {
        Ok(FlowNow {
            newest: sluice.store.list_jobs(flow_id, 1).await?.pop(),
            waiting: sluice.store.queued_runs(flow_id, 1000).await?,
        })
    }

    /// Why `job` must stay although it is old enough, if it must.
    fn needs(&self, job: &Job) -> Option<String> {
        if !job.status.is_finished() {
            return Some(format!("it is {}", job.status.as_str()));
        }
        let running = self.newest.as_ref().filter(|n| !n.status.is_finished());
        if let Some(newest) = running.filter(|n| {
            n.flow_execution_group_id.is_some()
                && n.flow_execution_group_id == job.flow_execution_group_id
        }) {
            return Some(format!(
                "job {} of its flow execution group (a retry) is {}",
                newest.id,
                newest.status.as_str()
            ));
        }
        self.waiting
            .iter()
            .find(|r| r.request.retry_of.as_deref() == Some(job.id.as_str()))
            .map(|run| format!("run {} waits to retry it", run.id))
    }
}

/// Each flow's retention period, and the deployment's for the rest (jobs of flows deleted
/// since included).
struct Retention {
    default: Option<Duration>,
    flows: HashMap<String, Duration>,
}

impl Retention {
    async fn read(sluice: &Sluice) -> Result<Retention> {
        let days = |d: u32| Duration::days(i64::from(d));
        let mut flows = HashMap::new();
        for doc in sluice
            .store
            .list_definitions(crate::ports::Kind::Flow)
            .await?
        {
            let Ok(flow) = serde_json::from_value::<Flow>(doc) else {
                continue;
            };
            if let Some(d) = flow.retention_days {
                flows.insert(flow.id, days(d));
            }
        }
        let global = sluice.settings.retention_days;
        Ok(Retention {
            default: (global > 0).then(|| days(global)),
            flows,
        })
    }

    fn of(&self, flow_id: &str) -> Option<Duration> {
        self.flows.get(flow_id).copied().or(self.default)
    }

    /// The shortest period that applies (to `flow`, or to any): no job younger can go.
    fn shortest(&self, flow: Option<&str>) -> Option<Duration> {
        match flow {
            Some(f) => self.of(f),
            None => self.flows.values().copied().chain(self.default).min(),
        }
    }
}

/// The state key of the next daily clean-up's time.
const NEXT_CLEAN: &str = "clean:nextAt";

/// Called by every schedule tick: runs the clean-up once a day, in the first tick after its
/// time (one process wins the day's turn, by a compare-and-set on [`NEXT_CLEAN`]).
pub async fn tick(sluice: &Sluice) -> Result<Option<CleanReport>> {
    let now = sluice.clock.now();
    let stored = sluice.store.get_state(NEXT_CLEAN).await?;
    let due = stored
        .as_ref()
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<DateTime<Utc>>().ok());
    if due.is_some_and(|at| at > now) {
        return Ok(None);
    }
    let next = serde_json::json!(sluice_model::time::format(&(now + Duration::days(1))));
    if !sluice
        .store
        .swap_state(NEXT_CLEAN, stored.as_ref(), &next)
        .await?
    {
        return Ok(None);
    }
    let report = clean(sluice, &CleanRequest::default()).await?;
    tracing::info!(
        jobs = report.deleted.jobs,
        errors = report.deleted.errors,
        ledger_entries = report.deleted.ledger_entries,
        kept = report.kept.len(),
        "daily clean-up"
    );
    Ok(Some(report))
}
