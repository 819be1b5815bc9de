use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_model::api::Listing;
use sluice_model::{Job, JobError, JobStatus, QueuedRun};
use std::time::Duration;

/// Which jobs `Store::find_jobs` returns: newest first (by createdAt), all conditions met.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobQuery {
    pub flow_id: Option<String>,
    pub status: Option<JobStatus>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (at least 1).
    pub limit: usize,
    /// The `nextCursor` of the page before; what it holds is the adapter's business.
    pub cursor: Option<String>,
}

impl JobQuery {
    /// The conditions the adapters' indexes do not answer themselves.
    pub fn matches(&self, job: &Job) -> bool {
        self.status.is_none_or(|s| job.status == s)
            && self.flow_id.as_ref().is_none_or(|f| &job.flow_id == f)
    }
}

/// Which errors of a job `Store::find_errors` returns: ordered by `_id`, all conditions met.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorQuery {
    pub processor_index: Option<i64>,
    pub code: Option<sluice_model::FailureCode>,
    pub resolved: Option<bool>,
    /// At most this many (at least 1).
    pub limit: usize,
    /// The `nextCursor` of the page before: the last `_id` it held.
    pub cursor: Option<String>,
}

impl ErrorQuery {
    pub fn matches(&self, e: &JobError) -> bool {
        self.processor_index.is_none_or(|p| e.processor_index == p)
            && self.code.is_none_or(|c| e.code == c)
            && self.resolved.is_none_or(|r| e.resolved == r)
    }

    /// Takes matching errors (already ordered by `_id`, after the cursor) into a page.
    pub fn page(&self, ordered: impl IntoIterator<Item = JobError>) -> Listing<JobError> {
        let mut items = Vec::new();
        let mut more = false;
        for e in ordered.into_iter().filter(|e| self.matches(e)) {
            if items.len() == self.limit.max(1) {
                more = true;
                break;
            }
            items.push(e);
        }
        let next_cursor = more
            .then(|| items.last().map(|e: &JobError| e.id.clone()))
            .flatten();
        Listing { items, next_cursor }
    }
}

/// The kinds of definitions users write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Connection,
    Export,
    Import,
    Flow,
    Integration,
    Script,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Connection,
        Kind::Export,
        Kind::Import,
        Kind::Flow,
        Kind::Integration,
        Kind::Script,
    ];
    /// The name used in paths and tables: `connections`, `exports`, ...
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Connection => "connections",
            Kind::Export => "exports",
            Kind::Import => "imports",
            Kind::Flow => "flows",
            Kind::Integration => "integrations",
            Kind::Script => "scripts",
        }
    }
    /// The name used in messages: "Export not found: exp123".
    pub fn label(self) -> &'static str {
        match self {
            Kind::Connection => "Connection",
            Kind::Export => "Export",
            Kind::Import => "Import",
            Kind::Flow => "Flow",
            Kind::Integration => "Integration",
            Kind::Script => "Script",
        }
    }
}

/// Who changed what and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"_id": "0a1b2c3d4e5f60718293a4b5", "resourceType": "flow",
    "_resourceId": "orders-to-erp", "action": "update", "time": "2026-11-22T10:15:00.041Z",
    "actor": "ops", "changes": {"disabled": {"oldValue": false, "newValue": true}}}))]
pub struct AuditEntry {
    #[serde(rename = "_id")]
    pub id: String,
    pub resource_type: Kind,
    #[serde(rename = "_resourceId")]
    pub resource_id: String,
    /// create, update, delete, run, cancel, cancelAutoRetry (a pending automatic retry of a finished job)
    pub action: String,
    #[serde(with = "sluice_model::time::ms")]
    pub time: DateTime<Utc>,
    /// The API key's name, or `cli`.
    pub actor: String,
    /// Field-level changes: `{"field": {"oldValue": .., "newValue": ..}}` (secrets masked).
    #[serde(default)]
    pub changes: Value,
}

impl AuditEntry {
    /// A flow's job was started or canceled by `actor`: the entry names the job.
    pub fn of_job(
        flow_id: &str,
        job_id: &str,
        action: &str,
        actor: &str,
        time: DateTime<Utc>,
    ) -> Self {
        AuditEntry {
            id: sluice_model::new_id(),
            resource_type: Kind::Flow,
            resource_id: flow_id.to_string(),
            action: action.to_string(),
            time,
            actor: actor.to_string(),
            changes: serde_json::json!({ "_jobId": job_id }),
        }
    }
}

/// Counters one evaluate step adds to its job, applied at most once per
/// (job, page, processor) however often the page is redelivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageOutcome {
    pub job_id: String,
    pub page_id: String,
    pub processor_index: usize,
    pub num_success: u64,
    pub num_error: u64,
    pub num_ignore: u64,
    /// The page has left its last processor (adds one to the job's numPagesDone).
    pub page_done: bool,
    /// Pages this one became beyond itself at a router: going down k branches it is k
    /// pages, k - 1 of them new (added to the job's numBranchPages).
    #[serde(default)]
    pub branch_pages: u64,
}

/// What [`Store::purge_jobs`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Purged {
    pub jobs: usize,
    pub errors: usize,
    pub ledger_entries: usize,
}

/// The holder of a run lock: its owner (the running job's id) and when its lease ends.
#[derive(Debug, Clone, PartialEq)]
pub struct LockHolder {
    pub owner: String,
    pub lease_until: DateTime<Utc>,
}

/// The stages that keep a delivery ledger. Each of their keys is `<stage>:<job>:...`
/// ([`ledger_key`]), so a job's keys share a prefix per stage ([`ledger_prefixes`]).
pub const LEDGER_STAGES: [crate::Stage; 2] = [crate::Stage::Deliver, crate::Stage::Upload];

/// The ledger key of one send of `stage` (one of [`LEDGER_STAGES`]); `send` starts with the
/// job's id ([`sluice_model::Page::send_id`]).
pub fn ledger_key(stage: crate::Stage, send: &str) -> String {
    format!("{}:{send}", stage.name())
}

/// What every ledger key of job `job_id` starts with: one prefix per stage keeping a ledger.
pub fn ledger_prefixes(job_id: &str) -> Vec<String> {
    LEDGER_STAGES
        .iter()
        .map(|stage| ledger_key(*stage, &format!("{job_id}:")))
        .collect()
}

/// What the delivery ledger knew of a key when it was claimed.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerState {
    /// Nobody had it: the caller owns it now and must send, then complete it.
    Claimed,
    /// Someone claimed it and never completed: the send may or may not have happened.
    InFlight,
    /// Sent before; here is the recorded outcome.
    Done(Value),
    /// Not claimed, and not to be sent: the job was canceled.
    JobCanceled,
}

/// How one send of a claimed chunk ends in the ledger ([`Store::ledger_settle_chunk`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Sent (or failed for good): the outcome a redelivery reuses.
    Sent(Value),
    /// Claimed with its chunk but never started (its invocation ran short of time, its job
    /// was canceled): free to be claimed again.
    NotSent,
}

/// Definitions, jobs, errors, the delivery ledger, run locks and small state.
///
/// Every method is safe to call concurrently from several processes: the AWS adapter uses
/// conditional writes, the embedded one SQLite transactions.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- definitions: JSON documents by kind and id
    async fn put_definition(&self, kind: Kind, id: &str, doc: &Value) -> anyhow::Result<()>;
    async fn get_definition(&self, kind: Kind, id: &str) -> anyhow::Result<Option<Value>>;
    /// All of a kind, ordered by id.
    async fn list_definitions(&self, kind: Kind) -> anyhow::Result<Vec<Value>>;
    /// True when something was deleted.
    async fn delete_definition(&self, kind: Kind, id: &str) -> anyhow::Result<bool>;
    async fn append_audit(&self, entry: &AuditEntry) -> anyhow::Result<()>;
    /// Oldest first.
    async fn list_audit(&self, resource_id: &str) -> anyhow::Result<Vec<AuditEntry>>;

    // --- jobs
    /// Stores a new job. False (and nothing written) when a job with this id exists: two
    /// starters of one queued run cannot both open it.
    async fn create_job(&self, job: &Job) -> anyhow::Result<bool>;
    async fn get_job(&self, id: &str) -> anyhow::Result<Option<Job>>;
    /// Newest first (by createdAt), at most `limit`.
    async fn list_jobs(&self, flow_id: &str, limit: usize) -> anyhow::Result<Vec<Job>>;
    /// Jobs of every flow (or one), newest first, a page at a time.
    async fn find_jobs(&self, query: &JobQuery) -> anyhow::Result<Listing<Job>>;
    /// The trigger has cut all `num_pages` pages. Returns the job as it now stands.
    async fn finish_paging(&self, job_id: &str, num_pages: u64) -> anyhow::Result<Job>;
    /// Adds the counters atomically, once per (job, page, processor). `None` when this outcome
    /// was applied before (a redelivery); else the job as it now stands.
    async fn record_outcome(&self, outcome: &PageOutcome) -> anyhow::Result<Option<Job>>;
    /// Moves an unfinished job to a finished status. True only for the one caller that did it,
    /// so the after-run work (release the lock, chain flows, callbacks) happens exactly once.
    async fn close_job(
        &self,
        job_id: &str,
        status: JobStatus,
        ended_at: DateTime<Utc>,
        message: Option<String>,
    ) -> anyhow::Result<bool>;

    /// Deletes these jobs with everything kept for them: their errors, page outcomes,
    /// delivery-ledger entries and the indexes that list them. The caller (`runs::clean`)
    /// passes only finished jobs nothing still needs; ids not stored are skipped, so a
    /// clean-up that stopped midway can run again.
    async fn purge_jobs(&self, job_ids: &[String]) -> anyhow::Result<Purged>;

    // --- errors
    /// Idempotent on each error's `_id`.
    async fn put_errors(&self, errors: &[JobError]) -> anyhow::Result<()>;
    /// Every error of the job, ordered by `_id`.
    async fn list_errors(&self, job_id: &str) -> anyhow::Result<Vec<JobError>>;
    /// A page of the job's errors, ordered by `_id`.
    async fn find_errors(
        &self,
        job_id: &str,
        query: &ErrorQuery,
    ) -> anyhow::Result<Listing<JobError>>;
    /// Replaces a stored error (its retry data, tags, resolution) by `_id`. False when the
    /// job has no such error.
    async fn update_error(&self, error: &JobError) -> anyhow::Result<bool>;
    /// Sets `resolved` on the named errors of the job; returns how many exist. Ids the job
    /// does not have are skipped.
    async fn mark_errors(
        &self,
        job_id: &str,
        error_ids: &[String],
        resolved: bool,
    ) -> anyhow::Result<usize>;
    async fn resolve_errors(&self, job_id: &str, error_ids: &[String]) -> anyhow::Result<()> {
        self.mark_errors(job_id, error_ids, true).await.map(|_| ())
    }

    // --- delivery ledger: what was already sent, so a redelivered page never sends twice
    /// Claims `key` for a send of job `job_id`, and looks at the job once the claim is made: a
    /// job canceled by then gets no claim (`JobCanceled`, none left behind), so nothing of it
    /// is sent after the cancel. A key claimed before answers as it stands whatever the job's
    /// status.
    async fn ledger_claim(
        &self,
        job_id: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<LedgerState>;
    async fn ledger_complete(&self, key: &str, outcome: &Value) -> anyhow::Result<()>;
    /// How many sends deliver claims in one [`Store::ledger_claim_chunk`] call at most: a
    /// crash between a chunk's claim and its settling leaves that many `delivery_unknown`.
    /// One where a claim is cheap (SQLite: a row in a group commit), so a crash leaves only
    /// the sends in flight; more where each write is billed (DynamoDB).
    fn ledger_chunk_size(&self) -> usize {
        1
    }
    /// Claims the sends `sends` (keys unique within the chunk) of chunk `chunk` of job
    /// `job_id` in one call, answering for each in order as [`Store::ledger_claim`] does for
    /// one key: a send claimed before answers as it stands (`Done`, or `InFlight` when it
    /// was claimed and never settled); one settled `NotSent` is claimed again; a new one is
    /// `Claimed`, or `JobCanceled` (and left unclaimed) when the job was canceled by then.
    async fn ledger_claim_chunk(
        &self,
        job_id: &str,
        chunk: &str,
        sends: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<LedgerState>>;
    /// Settles sends of a chunk this caller claimed, in one write.
    async fn ledger_settle_chunk(
        &self,
        chunk: &str,
        settled: &[(String, Settled)],
    ) -> anyhow::Result<()>;

    // --- run locks: one run of a flow at a time; a lease so a crashed run cannot hold it forever
    /// Takes the lock if free or its lease has run out. True when `owner` now holds it; a
    /// held lock refuses everyone, its holder too.
    async fn acquire_lock(
        &self,
        flow_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<bool>;
    /// Extends the lease if `owner` still holds it. False when it does not.
    async fn renew_lock(
        &self,
        flow_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<bool>;
    async fn release_lock(&self, flow_id: &str, owner: &str) -> anyhow::Result<()>;
    /// Who holds the flow's run lock and until when (a lease already run out included), for
    /// saying why a run is refused. `None` when nobody does.
    async fn lock_holder(&self, flow_id: &str) -> anyhow::Result<Option<LockHolder>>;

    // --- runs waiting for their flow: kept durably, in arrival order, until they start
    /// Keeps `run` behind the flow's running job. False (nothing written) when it is kept
    /// already: a waiting run has the same [`QueuedRun::key`], or a job with its id exists.
    async fn queue_run(&self, flow_id: &str, run: &QueuedRun) -> anyhow::Result<bool>;
    /// The flow's waiting runs, oldest (`queuedAt`, then id) first, at most `limit`.
    async fn queued_runs(&self, flow_id: &str, limit: usize) -> anyhow::Result<Vec<QueuedRun>>;
    /// Forgets a waiting run (it started, or cannot); nothing if it is not there.
    async fn remove_queued_run(&self, flow_id: &str, run: &QueuedRun) -> anyhow::Result<()>;

    // --- leased slots: at most N holders of a group at once (a connection's concurrencyLevel,
    // shared by every process); a holder that dies frees its slot when the lease runs out
    /// Takes one of the `slots` slots of `group` (free, or its lease ran out) for `owner`.
    /// `Some(index)` when taken; `None` when all are held. Waiters poll this, so it reads the
    /// group once and writes only when a slot looks free.
    async fn take_slot(
        &self,
        group: &str,
        slots: u32,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Option<u32>>;
    /// Frees the slot if `owner` still holds it.
    async fn release_slot(&self, group: &str, index: u32, owner: &str) -> anyhow::Result<()>;

    // --- schedules: the next due time per flow, so a tick reads only what is due
    async fn set_next_run(&self, flow_id: &str, at: Option<DateTime<Utc>>) -> anyhow::Result<()>;
    /// Flows whose next run is at or before `now`, with that time.
    async fn due_flows(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<(String, DateTime<Utc>)>>;

    // --- automatic retries: when each closed job's next automatic retry is due (one entry
    // per job), indexed by time like the schedules, so a tick reads only what is due
    /// Sets when the automatic retry of job `job_id`'s errors is due; `None` clears it.
    async fn set_retry_at(&self, job_id: &str, at: Option<DateTime<Utc>>) -> anyhow::Result<()>;
    /// When the automatic retry of job `job_id` is due, if one is pending.
    async fn retry_at(&self, job_id: &str) -> anyhow::Result<Option<DateTime<Utc>>>;
    /// Jobs whose automatic retry is due at or before `now`, with that time, earliest first.
    async fn due_retries(&self, now: DateTime<Utc>)
        -> anyhow::Result<Vec<(String, DateTime<Utc>)>>;

    // --- small state: watermarks (lastExportDateTime), token caches
    async fn get_state(&self, key: &str) -> anyhow::Result<Option<Value>>;
    async fn put_state(&self, key: &str, value: &Value) -> anyhow::Result<()>;
    /// Writes `new` under `key` only if the stored value is `expected` (`None`: no value yet).
    /// True when written; false when someone else changed it first (read again and retry).
    /// Compare scalars only (numbers, strings): the shared rate limiter keeps a number here.
    async fn swap_state(
        &self,
        key: &str,
        expected: Option<&Value>,
        new: &Value,
    ) -> anyhow::Result<bool>;
}
