//! The Store port over one SQLite file. Every call runs on the database's own thread (see
//! [`crate::sqlite`]), atomically: in a savepoint of a transaction that takes the write lock
//! first, which it may share with the calls made at the same moment (group commit). So each
//! method is correct under concurrency, between processes too, as one transaction would be.
//! The statements of the calls made per record (ledger, slots, state, outcomes) are prepared
//! once per connection (`prepare_cached`).

use crate::sqlite::{parse_ts, ts, Db};
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use sluice_core::ports::{
    ledger_prefixes, AuditEntry, ErrorQuery, JobQuery, Kind, LedgerState, LockHolder, PageOutcome,
    Purged, SecretStore, Settled, Store,
};
use sluice_model::api::Listing;
use sluice_model::{Job, JobError, JobStatus, QueuedRun};
use std::path::Path;
use std::time::Duration;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS definitions (kind TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, resource_id TEXT NOT NULL, entry TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_resource ON audit (resource_id, seq);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, flow_id TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_flow ON jobs (flow_id, created_at);
CREATE TABLE IF NOT EXISTS outcomes (job_id TEXT NOT NULL, page_id TEXT NOT NULL, processor INTEGER NOT NULL, PRIMARY KEY (job_id, page_id, processor));
CREATE TABLE IF NOT EXISTS errors (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS errors_by_job ON errors (job_id, id);
CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY, claimed_at TEXT NOT NULL, outcome TEXT);
CREATE TABLE IF NOT EXISTS locks (flow_id TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until TEXT NOT NULL);
DROP TABLE IF EXISTS queued_runs;
CREATE TABLE IF NOT EXISTS waiting_runs (flow_id TEXT NOT NULL, queued_at TEXT NOT NULL, id TEXT NOT NULL, key TEXT NOT NULL, run TEXT NOT NULL, PRIMARY KEY (flow_id, queued_at, id), UNIQUE (flow_id, key));
CREATE TABLE IF NOT EXISTS schedules (flow_id TEXT PRIMARY KEY, next_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS schedules_by_time ON schedules (next_at);
CREATE TABLE IF NOT EXISTS retry_times (job_id TEXT PRIMARY KEY, next_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS retry_times_by_time ON retry_times (next_at);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS written_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slots (grp TEXT NOT NULL, idx INTEGER NOT NULL, owner TEXT NOT NULL, lease_until TEXT NOT NULL, PRIMARY KEY (grp, idx));
"#;

#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(SqliteStore {
            db: Db::open(path, SCHEMA, "store")?,
        })
    }

    pub fn open_in_memory() -> anyhow::Result<Self> {
        Ok(SqliteStore {
            db: Db::in_memory(SCHEMA, "store")?,
        })
    }

    /// Frees the connection slots held by a process that is gone (`holder` is its
    /// `Settings::instance`), instead of waiting for their leases to run out.
    pub async fn release_slots_of(&self, holder: &str) -> anyhow::Result<usize> {
        let prefix = format!("{holder}:");
        self.with(move |c| {
            Ok(c.execute(
                "DELETE FROM slots WHERE substr(owner, 1, length(?1)) = ?1",
                [prefix],
            )?)
        })
        .await
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.db.with(f).await
    }
}

fn job_from(doc: String) -> anyhow::Result<Job> {
    serde_json::from_str(&doc).context("unreadable job")
}

fn read_job(conn: &Connection, id: &str) -> anyhow::Result<Option<Job>> {
    conn.prepare_cached("SELECT doc FROM jobs WHERE id = ?1")?
        .query_row([id], |r| r.get::<_, String>(0))
        .optional()?
        .map(job_from)
        .transpose()
}

/// Deletes the ledger rows of the flow's completed jobs created before `before`, since the
/// last time (the state `ledger-pruned:<flow>`). No redelivery can need them: a job is only
/// opened under its flow's run lock, so every earlier job of the flow is closed, and a
/// completed one had every page done (a retry of its errors is a job with keys of its own).
/// The rows of failed and canceled jobs stay: a page of a job closed as abandoned may still
/// be with a process that outlived its lease, and its sends must still find their claims.
/// (DynamoDB lets its TTL delete ledger items instead.)
fn prune_ledger(c: &Connection, flow_id: &str, before: &str) -> anyhow::Result<()> {
    let marker = format!("ledger-pruned:{flow_id}");
    let since: String = c
        .prepare_cached("SELECT value FROM state WHERE key = ?1")?
        .query_row([&marker], |r| r.get::<_, String>(0))
        .optional()?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default();
    let done: Vec<(String, String)> = c
        .prepare_cached(
            "SELECT id, created_at FROM jobs WHERE flow_id = ?1 AND created_at >= ?2 AND created_at < ?3
               AND json_extract(doc, '$.status') IN ('completed', 'completed_with_errors')",
        )?
        .query_map(params![flow_id, since, before], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (job, _) in &done {
        delete_ledger_of(c, job)?;
    }
    if let Some(newest) = done.iter().map(|(_, at)| at).max() {
        c.prepare_cached("INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
            .execute(params![marker, serde_json::to_string(newest)?])?;
    }
    Ok(())
}

/// Claims the ledger row `key`: as it stands when claimed before, else inserted, unless
/// `canceled()` (asked only then, so a job is read only for a new claim).
fn claim_row(
    c: &Connection,
    key: &str,
    now: DateTime<Utc>,
    canceled: impl FnOnce() -> anyhow::Result<bool>,
) -> anyhow::Result<LedgerState> {
    let existing: Option<Option<String>> = c
        .prepare_cached("SELECT outcome FROM ledger WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    Ok(match existing {
        Some(Some(outcome)) => LedgerState::Done(serde_json::from_str(&outcome)?),
        Some(None) => LedgerState::InFlight,
        None if canceled()? => LedgerState::JobCanceled,
        None => {
            c.prepare_cached("INSERT INTO ledger (key, claimed_at) VALUES (?1, ?2)")?
                .execute(params![key, ts(now)])?;
            LedgerState::Claimed
        }
    })
}

fn job_canceled(c: &Connection, job_id: &str) -> anyhow::Result<bool> {
    Ok(job_status(c, job_id)?.as_deref() == Some(JobStatus::Canceled.as_str()))
}

/// The row of one send of a ledger chunk: a row per send, under the chunk's key (so a job's
/// prefix still covers it).
fn chunk_row(chunk: &str, send: &str) -> String {
    format!("{chunk}/{send}")
}

/// Deletes the ledger rows of one job; how many went.
fn delete_ledger_of(c: &Connection, job_id: &str) -> anyhow::Result<usize> {
    let mut delete = c.prepare_cached("DELETE FROM ledger WHERE key >= ?1 AND key < ?2")?;
    let mut deleted = 0;
    for prefix in ledger_prefixes(job_id) {
        // The keys starting with `<stage>:<job>:` sort before `<stage>:<job>;`.
        let end = format!("{};", prefix.trim_end_matches(':'));
        deleted += delete.execute(params![prefix, end])?;
    }
    Ok(deleted)
}

/// A job's status as stored (without reading the whole job).
fn job_status(conn: &Connection, id: &str) -> anyhow::Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT json_extract(doc, '$.status') FROM jobs WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

fn write_job(conn: &Connection, job: &Job) -> anyhow::Result<()> {
    conn.prepare_cached("UPDATE jobs SET doc = ?2 WHERE id = ?1")?
        .execute(params![job.id, serde_json::to_string(job)?])?;
    Ok(())
}

/// A table of due times, one per id, indexed by time: the flows' schedules and the jobs'
/// automatic retries share the code that sets and reads them.
struct Timers {
    table: &'static str,
    id: &'static str,
}

const SCHEDULES: Timers = Timers {
    table: "schedules",
    id: "flow_id",
};
const RETRY_TIMES: Timers = Timers {
    table: "retry_times",
    id: "job_id",
};

impl SqliteStore {
    async fn set_time(
        &self,
        timers: Timers,
        id: &str,
        at: Option<DateTime<Utc>>,
    ) -> anyhow::Result<()> {
        let id = id.to_string();
        let Timers { table, id: col } = timers;
        self.with(move |c| {
            match at {
                Some(t) => c.execute(&format!("INSERT INTO {table} ({col}, next_at) VALUES (?1, ?2) ON CONFLICT ({col}) DO UPDATE SET next_at = excluded.next_at"), params![id, ts(t)])?,
                None => c.execute(&format!("DELETE FROM {table} WHERE {col} = ?1"), [id])?,
            };
            Ok(())
        })
        .await
    }

    async fn due(
        &self,
        timers: Timers,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(String, DateTime<Utc>)>> {
        let Timers { table, id: col } = timers;
        self.with(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {col}, next_at FROM {table} WHERE next_at <= ?1 ORDER BY next_at, {col}"
            ))?;
            let rows = st.query_map([ts(now)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.map(|row| {
                let (id, t) = row?;
                Ok((id, parse_ts(&t)?))
            })
            .collect()
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_definition(&self, kind: Kind, id: &str, doc: &Value) -> anyhow::Result<()> {
        let (id, doc) = (id.to_string(), serde_json::to_string(doc)?);
        self.with(move |c| {
            c.execute("INSERT INTO definitions (kind, id, doc) VALUES (?1, ?2, ?3) ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc", params![kind.collection(), id, doc])?;
            Ok(())
        })
        .await
    }

    async fn get_definition(&self, kind: Kind, id: &str) -> anyhow::Result<Option<Value>> {
        let id = id.to_string();
        self.with(move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM definitions WHERE kind = ?1 AND id = ?2",
                    params![kind.collection(), id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(doc.map(|d| serde_json::from_str(&d)).transpose()?)
        })
        .await
    }

    async fn list_definitions(&self, kind: Kind) -> anyhow::Result<Vec<Value>> {
        self.with(move |c| {
            let mut st = c.prepare("SELECT doc FROM definitions WHERE kind = ?1 ORDER BY id")?;
            let rows = st.query_map([kind.collection()], |r| r.get::<_, String>(0))?;
            rows.map(|d| Ok(serde_json::from_str(&d?)?)).collect()
        })
        .await
    }

    async fn delete_definition(&self, kind: Kind, id: &str) -> anyhow::Result<bool> {
        let id = id.to_string();
        self.with(move |c| {
            Ok(c.execute(
                "DELETE FROM definitions WHERE kind = ?1 AND id = ?2",
                params![kind.collection(), id],
            )? > 0)
        })
        .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> anyhow::Result<()> {
        let (rid, e) = (entry.resource_id.clone(), serde_json::to_string(entry)?);
        self.with(move |c| {
            c.execute(
                "INSERT INTO audit (resource_id, entry) VALUES (?1, ?2)",
                params![rid, e],
            )?;
            Ok(())
        })
        .await
    }

    async fn list_audit(&self, resource_id: &str) -> anyhow::Result<Vec<AuditEntry>> {
        let rid = resource_id.to_string();
        self.with(move |c| {
            let mut st =
                c.prepare("SELECT entry FROM audit WHERE resource_id = ?1 ORDER BY seq")?;
            let rows = st.query_map([rid], |r| r.get::<_, String>(0))?;
            rows.map(|e| Ok(serde_json::from_str(&e?)?)).collect()
        })
        .await
    }

    async fn create_job(&self, job: &Job) -> anyhow::Result<bool> {
        let job = job.clone();
        self.with(move |c| {
            let created = ts(job.created_at.unwrap_or_else(Utc::now));
            let fresh = c.execute(
                "INSERT OR IGNORE INTO jobs (id, flow_id, created_at, doc) VALUES (?1, ?2, ?3, ?4)",
                params![job.id, job.flow_id, created, serde_json::to_string(&job)?],
            )? == 1;
            if fresh {
                prune_ledger(c, &job.flow_id, &created)?;
            }
            Ok(fresh)
        })
        .await
    }

    async fn purge_jobs(&self, job_ids: &[String]) -> anyhow::Result<Purged> {
        let ids = job_ids.to_vec();
        self.with(move |c| {
            let tx = c.savepoint()?;
            let mut purged = Purged::default();
            for id in &ids {
                purged.errors += tx.execute("DELETE FROM errors WHERE job_id = ?1", [id])?;
                tx.execute("DELETE FROM outcomes WHERE job_id = ?1", [id])?;
                tx.execute("DELETE FROM retry_times WHERE job_id = ?1", [id])?;
                purged.ledger_entries += delete_ledger_of(&tx, id)?;
                purged.jobs += tx.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
            }
            tx.commit()?;
            Ok(purged)
        })
        .await
    }

    async fn get_job(&self, id: &str) -> anyhow::Result<Option<Job>> {
        let id = id.to_string();
        self.with(move |c| read_job(c, &id)).await
    }

    async fn list_jobs(&self, flow_id: &str, limit: usize) -> anyhow::Result<Vec<Job>> {
        let flow_id = flow_id.to_string();
        self.with(move |c| {
            let mut st = c.prepare("SELECT doc FROM jobs WHERE flow_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2")?;
            let rows = st.query_map(params![flow_id, limit as i64], |r| r.get::<_, String>(0))?;
            rows.map(|d| job_from(d?)).collect()
        })
        .await
    }

    async fn find_jobs(&self, query: &JobQuery) -> anyhow::Result<Listing<Job>> {
        let query = query.clone();
        self.with(move |c| {
            let since = query.since.map(ts).unwrap_or_default();
            let until = query.until.map(ts).unwrap_or_else(|| "~".into());
            // The cursor is the last job's `<created_at>#<id>`: rows strictly before it.
            let before = query.cursor.clone().unwrap_or_else(|| "~".into());
            let mut st = c.prepare(
                "SELECT created_at, id, doc FROM jobs
                 WHERE (?1 IS NULL OR flow_id = ?1) AND created_at >= ?2 AND created_at < ?3
                   AND created_at || '#' || id < ?4
                 ORDER BY created_at DESC, id DESC",
            )?;
            let rows = st.query_map(params![query.flow_id, since, until, before], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let limit = query.limit.max(1);
            let mut items = Vec::new();
            let mut next_cursor = None;
            let mut last = String::new();
            for row in rows {
                let (created, id, doc) = row?;
                let job = job_from(doc)?;
                if !query.matches(&job) {
                    continue;
                }
                if items.len() == limit {
                    next_cursor = Some(last);
                    break;
                }
                last = format!("{created}#{id}");
                items.push(job);
            }
            Ok(Listing { items, next_cursor })
        })
        .await
    }

    async fn finish_paging(&self, job_id: &str, num_pages: u64) -> anyhow::Result<Job> {
        let id = job_id.to_string();
        self.with(move |c| {
            let tx = c.savepoint()?;
            let mut job = read_job(&tx, &id)?.with_context(|| format!("job {id} not found"))?;
            job.num_pages = num_pages;
            job.paging_done = true;
            write_job(&tx, &job)?;
            tx.commit()?;
            Ok(job)
        })
        .await
    }

    async fn record_outcome(&self, o: &PageOutcome) -> anyhow::Result<Option<Job>> {
        let o = o.clone();
        self.with(move |c| {
            let tx = c.savepoint()?;
            let fresh = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO outcomes (job_id, page_id, processor) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![o.job_id, o.page_id, o.processor_index as i64])?
                == 1;
            if !fresh {
                return Ok(None);
            }
            let mut job =
                read_job(&tx, &o.job_id)?.with_context(|| format!("job {} not found", o.job_id))?;
            job.num_success += o.num_success;
            job.num_error += o.num_error;
            job.num_ignore += o.num_ignore;
            if o.page_done {
                job.num_pages_done += 1;
            }
            job.num_branch_pages += o.branch_pages;
            write_job(&tx, &job)?;
            tx.commit()?;
            Ok(Some(job))
        })
        .await
    }

    async fn close_job(
        &self,
        job_id: &str,
        status: JobStatus,
        ended_at: DateTime<Utc>,
        message: Option<String>,
    ) -> anyhow::Result<bool> {
        let id = job_id.to_string();
        self.with(move |c| {
            let tx = c.savepoint()?;
            let Some(mut job) = read_job(&tx, &id)? else {
                return Ok(false);
            };
            if job.status.is_finished() {
                return Ok(false);
            }
            job.status = status;
            job.ended_at = Some(ended_at);
            if message.is_some() {
                job.message = message;
            }
            write_job(&tx, &job)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Idempotent on `_id`: a redelivered page must not undo a resolution or an edit.
    async fn put_errors(&self, errors: &[JobError]) -> anyhow::Result<()> {
        let rows: Vec<(String, String, String)> = errors
            .iter()
            .map(|e| Ok((e.id.clone(), e.job_id.clone(), serde_json::to_string(e)?)))
            .collect::<anyhow::Result<_>>()?;
        self.with(move |c| {
            let tx = c.savepoint()?;
            for (id, job, doc) in rows {
                tx.execute("INSERT INTO errors (id, job_id, doc) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING", params![id, job, doc])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_errors(&self, job_id: &str) -> anyhow::Result<Vec<JobError>> {
        let id = job_id.to_string();
        self.with(move |c| {
            let mut st = c.prepare("SELECT doc FROM errors WHERE job_id = ?1 ORDER BY id")?;
            let rows = st.query_map([id], |r| r.get::<_, String>(0))?;
            rows.map(|d| Ok(serde_json::from_str(&d?)?)).collect()
        })
        .await
    }

    async fn find_errors(
        &self,
        job_id: &str,
        query: &ErrorQuery,
    ) -> anyhow::Result<Listing<JobError>> {
        let (id, query) = (job_id.to_string(), query.clone());
        self.with(move |c| {
            let after = query.cursor.clone().unwrap_or_default();
            let mut st =
                c.prepare("SELECT doc FROM errors WHERE job_id = ?1 AND id > ?2 ORDER BY id")?;
            let rows = st.query_map(params![id, after], |r| r.get::<_, String>(0))?;
            // Filters are read in Rust (one predicate for both adapters); rows stream, so
            // only what the page needs is parsed.
            let mut parsed = Vec::new();
            for doc in rows {
                let e: JobError = serde_json::from_str(&doc?)?;
                if query.matches(&e) {
                    parsed.push(e);
                    if parsed.len() > query.limit.max(1) {
                        break;
                    }
                }
            }
            Ok(query.page(parsed))
        })
        .await
    }

    async fn update_error(&self, error: &JobError) -> anyhow::Result<bool> {
        let (id, job, doc) = (
            error.id.clone(),
            error.job_id.clone(),
            serde_json::to_string(error)?,
        );
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE errors SET doc = ?3 WHERE id = ?1 AND job_id = ?2",
                params![id, job, doc],
            )? == 1)
        })
        .await
    }

    async fn mark_errors(
        &self,
        job_id: &str,
        error_ids: &[String],
        resolved: bool,
    ) -> anyhow::Result<usize> {
        let (job, ids) = (job_id.to_string(), error_ids.to_vec());
        self.with(move |c| {
            let tx = c.savepoint()?;
            let mut found = 0;
            for id in ids {
                let doc: Option<String> = tx
                    .query_row(
                        "SELECT doc FROM errors WHERE id = ?1 AND job_id = ?2",
                        params![id, job],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(doc) = doc {
                    found += 1;
                    let mut e: JobError = serde_json::from_str(&doc)?;
                    e.resolved = resolved;
                    tx.execute(
                        "UPDATE errors SET doc = ?2 WHERE id = ?1",
                        params![id, serde_json::to_string(&e)?],
                    )?;
                }
            }
            tx.commit()?;
            Ok(found)
        })
        .await
    }

    async fn ledger_claim(
        &self,
        job_id: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<LedgerState> {
        let (job_id, key) = (job_id.to_string(), key.to_string());
        self.with(move |c| {
            let tx = c.savepoint()?;
            let state = claim_row(&tx, &key, now, || job_canceled(&tx, &job_id))?;
            tx.commit()?;
            Ok(state)
        })
        .await
    }

    async fn ledger_complete(&self, key: &str, outcome: &Value) -> anyhow::Result<()> {
        let (key, outcome) = (key.to_string(), serde_json::to_string(outcome)?);
        self.with(move |c| {
            c.prepare_cached("UPDATE ledger SET outcome = ?2 WHERE key = ?1")?
                .execute(params![key, outcome])?;
            Ok(())
        })
        .await
    }

    async fn ledger_claim_chunk(
        &self,
        job_id: &str,
        chunk: &str,
        sends: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<LedgerState>> {
        let (job_id, chunk, sends) = (job_id.to_string(), chunk.to_string(), sends.to_vec());
        self.with(move |c| {
            let tx = c.savepoint()?;
            let canceled = job_canceled(&tx, &job_id)?;
            let states = sends
                .iter()
                .map(|send| claim_row(&tx, &chunk_row(&chunk, send), now, || Ok(canceled)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(states)
        })
        .await
    }

    async fn ledger_settle_chunk(
        &self,
        chunk: &str,
        settled: &[(String, Settled)],
    ) -> anyhow::Result<()> {
        let rows = settled
            .iter()
            .map(|(send, how)| {
                let outcome = match how {
                    Settled::Sent(v) => Some(serde_json::to_string(v)?),
                    Settled::NotSent => None,
                };
                Ok((chunk_row(chunk, send), outcome))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.with(move |c| {
            let tx = c.savepoint()?;
            for (key, outcome) in &rows {
                match outcome {
                    Some(o) => tx
                        .prepare_cached("UPDATE ledger SET outcome = ?2 WHERE key = ?1")?
                        .execute(params![key, o])?,
                    // Given back: as if never claimed.
                    None => tx
                        .prepare_cached("DELETE FROM ledger WHERE key = ?1")?
                        .execute([key])?,
                };
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn acquire_lock(
        &self,
        flow_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<bool> {
        let (flow, owner) = (flow_id.to_string(), owner.to_string());
        let until = ts(now + chrono::Duration::from_std(lease)?);
        self.with(move |c| {
            // Free or expired: take it. Held (by anyone, this owner too): refuse, so two
            // starters of one waiting run, which share its id, cannot both hold it.
            let n = c.execute(
                "INSERT INTO locks (flow_id, owner, lease_until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (flow_id) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
                 WHERE locks.lease_until <= ?4",
                params![flow, owner, until, ts(now)],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn renew_lock(
        &self,
        flow_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<bool> {
        let (flow, owner) = (flow_id.to_string(), owner.to_string());
        let until = ts(now + chrono::Duration::from_std(lease)?);
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE locks SET lease_until = ?3 WHERE flow_id = ?1 AND owner = ?2",
                params![flow, owner, until],
            )? == 1)
        })
        .await
    }

    async fn lock_holder(&self, flow_id: &str) -> anyhow::Result<Option<LockHolder>> {
        let flow = flow_id.to_string();
        self.with(move |c| {
            let row: Option<(String, String)> = c
                .query_row(
                    "SELECT owner, lease_until FROM locks WHERE flow_id = ?1",
                    [flow],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            row.map(|(owner, until)| {
                Ok(LockHolder {
                    owner,
                    lease_until: parse_ts(&until)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn release_lock(&self, flow_id: &str, owner: &str) -> anyhow::Result<()> {
        let (flow, owner) = (flow_id.to_string(), owner.to_string());
        self.with(move |c| {
            c.execute(
                "DELETE FROM locks WHERE flow_id = ?1 AND owner = ?2",
                params![flow, owner],
            )?;
            Ok(())
        })
        .await
    }

    async fn take_slot(
        &self,
        group: &str,
        slots: u32,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Option<u32>> {
        let (group, owner) = (group.to_string(), owner.to_string());
        let until = ts(now + chrono::Duration::from_std(lease)?);
        self.with(move |c| {
            let tx = c.savepoint()?;
            let held: std::collections::HashSet<u32> = tx
                .prepare_cached("SELECT idx FROM slots WHERE grp = ?1 AND lease_until > ?2")?
                .query_map(params![group, ts(now)], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let Some(free) = (0..slots).find(|i| !held.contains(i)) else {
                return Ok(None);
            };
            tx.prepare_cached(
                "INSERT INTO slots (grp, idx, owner, lease_until) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (grp, idx) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until",
            )?
            .execute(params![group, free, owner, until])?;
            tx.commit()?;
            Ok(Some(free))
        })
        .await
    }

    async fn release_slot(&self, group: &str, index: u32, owner: &str) -> anyhow::Result<()> {
        let (group, owner) = (group.to_string(), owner.to_string());
        self.with(move |c| {
            c.prepare_cached("DELETE FROM slots WHERE grp = ?1 AND idx = ?2 AND owner = ?3")?
                .execute(params![group, index, owner])?;
            Ok(())
        })
        .await
    }

    async fn queue_run(&self, flow_id: &str, run: &QueuedRun) -> anyhow::Result<bool> {
        let (flow, at, id, key) = (
            flow_id.to_string(),
            ts(run.queued_at),
            run.id.clone(),
            run.key().to_string(),
        );
        let doc = serde_json::to_string(run)?;
        self.with(move |c| {
            let tx = c.savepoint()?;
            let ran: bool = tx
                .query_row("SELECT 1 FROM jobs WHERE id = ?1", [&id], |_| Ok(()))
                .optional()?
                .is_some();
            let kept = !ran
                && tx.execute(
                    "INSERT OR IGNORE INTO waiting_runs (flow_id, queued_at, id, key, run) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![flow, at, id, key, doc],
                )? == 1;
            tx.commit()?;
            Ok(kept)
        })
        .await
    }

    async fn queued_runs(&self, flow_id: &str, limit: usize) -> anyhow::Result<Vec<QueuedRun>> {
        let flow = flow_id.to_string();
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT run FROM waiting_runs WHERE flow_id = ?1 ORDER BY queued_at, id LIMIT ?2",
            )?;
            let rows = st.query_map(params![flow, limit as i64], |r| r.get::<_, String>(0))?;
            rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
        })
        .await
    }

    async fn remove_queued_run(&self, flow_id: &str, run: &QueuedRun) -> anyhow::Result<()> {
        let (flow, id) = (flow_id.to_string(), run.id.clone());
        self.with(move |c| {
            c.execute(
                "DELETE FROM waiting_runs WHERE flow_id = ?1 AND id = ?2",
                params![flow, id],
            )?;
            Ok(())
        })
        .await
    }

    async fn set_next_run(&self, flow_id: &str, at: Option<DateTime<Utc>>) -> anyhow::Result<()> {
        self.set_time(SCHEDULES, flow_id, at).await
    }

    async fn due_flows(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<(String, DateTime<Utc>)>> {
        self.due(SCHEDULES, now).await
    }

    async fn set_retry_at(&self, job_id: &str, at: Option<DateTime<Utc>>) -> anyhow::Result<()> {
        self.set_time(RETRY_TIMES, job_id, at).await
    }

    async fn retry_at(&self, job_id: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
        let id = job_id.to_string();
        self.with(move |c| {
            let t: Option<String> = c
                .prepare_cached("SELECT next_at FROM retry_times WHERE job_id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            t.map(|t| parse_ts(&t)).transpose()
        })
        .await
    }

    async fn due_retries(
        &self,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(String, DateTime<Utc>)>> {
        self.due(RETRY_TIMES, now).await
    }

    async fn get_state(&self, key: &str) -> anyhow::Result<Option<Value>> {
        let key = key.to_string();
        self.with(move |c| {
            let v: Option<String> = c
                .prepare_cached("SELECT value FROM state WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?;
            Ok(v.map(|v| serde_json::from_str(&v)).transpose()?)
        })
        .await
    }

    async fn put_state(&self, key: &str, value: &Value) -> anyhow::Result<()> {
        let (key, value) = (key.to_string(), serde_json::to_string(value)?);
        self.with(move |c| {
            c.execute("INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", params![key, value])?;
            Ok(())
        })
        .await
    }

    async fn swap_state(
        &self,
        key: &str,
        expected: Option<&Value>,
        new: &Value,
    ) -> anyhow::Result<bool> {
        let (key, expected, new) = (
            key.to_string(),
            expected.cloned(),
            serde_json::to_string(new)?,
        );
        self.with(move |c| {
            // IMMEDIATE: the write lock is taken before the read, so another process sharing
            // the file cannot change the value between our compare and our write.
            let tx = c.savepoint()?;
            let stored: Option<String> = tx
                .prepare_cached("SELECT value FROM state WHERE key = ?1")?
                .query_row([&key], |r| r.get(0))
                .optional()?;
            let stored: Option<Value> = stored.map(|v| serde_json::from_str(&v)).transpose()?;
            if stored != expected {
                return Ok(false);
            }
            tx.prepare_cached("INSERT INTO state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
                .execute(params![key, new])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

/// Secrets Sluice writes (a rotated OAuth2 refresh token), in the same file as the rest, so
/// the next process to open it reads them. The file holds them in clear: it is the local
/// runtime's, as private as the shell's environment the other secrets come from.
#[async_trait]
impl SecretStore for SqliteStore {
    async fn read(&self, name: &str) -> anyhow::Result<Option<String>> {
        let name = name.to_string();
        self.with(move |c| {
            Ok(
                c.prepare_cached("SELECT value FROM written_secrets WHERE name = ?1")?
                    .query_row([name], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    async fn write(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let (name, value) = (name.to_string(), value.to_string());
        self.with(move |c| {
            c.execute("INSERT INTO written_secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value", params![name, value])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_written_secrets_across_opens() {
        use sluice_core::ports::contract::secret_store_contract;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        secret_store_contract(&SqliteStore::open(&path).unwrap()).await;
        let reopened = SqliteStore::open(&path).unwrap();
        assert_eq!(
            SecretStore::read(&reopened, "RT").await.unwrap().as_deref(),
            Some("refresh-2")
        );
    }

    #[tokio::test]
    async fn passes_the_store_contract_in_memory() {
        sluice_core::ports::contract::store_contract(&SqliteStore::open_in_memory().unwrap()).await;
    }

    #[tokio::test]
    async fn passes_the_store_contract_on_a_file_and_keeps_data_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        sluice_core::ports::contract::store_contract(&SqliteStore::open(&path).unwrap()).await;
        let again = SqliteStore::open(&path).unwrap();
        assert!(
            again
                .get_definition(Kind::Flow, "f0")
                .await
                .unwrap()
                .is_some(),
            "data survives reopening"
        );
    }

    #[tokio::test]
    async fn a_new_job_prunes_the_ledger_rows_of_its_flows_completed_jobs_only() {
        let store = SqliteStore::open_in_memory().unwrap();
        let t0 = Utc::now() - chrono::Duration::minutes(10);
        let job = |id: &str, flow: &str, minutes: i64| {
            Job::new(
                id.into(),
                flow.into(),
                sluice_model::RunKind::Manual,
                t0 + chrono::Duration::minutes(minutes),
            )
        };
        let rows = |store: &SqliteStore| {
            store.db.blocking(|c| {
                let mut st = c.prepare("SELECT key FROM ledger ORDER BY key")?;
                let keys = st.query_map([], |r| r.get::<_, String>(0))?;
                Ok(keys.collect::<Result<Vec<String>, _>>()?)
            })
        };
        let ran = [
            ("done", "f", JobStatus::Completed),
            ("other", "g", JobStatus::Completed),
            ("failed", "f", JobStatus::Failed),
        ];
        for (i, (id, flow, status)) in ran.iter().enumerate() {
            assert!(store.create_job(&job(id, flow, i as i64)).await.unwrap());
            if *id == "other" {
                assert_eq!(
                    rows(&store).unwrap().len(),
                    2,
                    "another flow's job prunes nothing"
                );
            }
            for stage in sluice_core::ports::LEDGER_STAGES {
                let key = sluice_core::ports::ledger_key(stage, &format!("{id}:p0:0:r1"));
                assert_eq!(
                    store.ledger_claim(id, &key, t0).await.unwrap(),
                    LedgerState::Claimed
                );
                store
                    .ledger_complete(&key, &serde_json::json!({"reply": {}}))
                    .await
                    .unwrap();
            }
            assert!(store.close_job(id, *status, t0, None).await.unwrap());
        }
        let kept = [
            "deliver:failed:p0:0:r1",
            "deliver:other:p0:0:r1",
            "upload:failed:p0:0:r1",
            "upload:other:p0:0:r1",
        ];
        assert_eq!(
            rows(&store).unwrap(),
            kept,
            "the completed job of flow f lost its rows when f's next job started"
        );
        assert!(store.create_job(&job("next", "f", 5)).await.unwrap());
        assert_eq!(rows(&store).unwrap(), kept, "a failed job keeps its rows");
    }

    #[tokio::test]
    async fn concurrent_outcomes_for_one_page_count_once() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .create_job(&Job::new(
                "j".into(),
                "f".into(),
                sluice_model::RunKind::Manual,
                Utc::now(),
            ))
            .await
            .unwrap();
        let o = PageOutcome {
            job_id: "j".into(),
            page_id: "p".into(),
            processor_index: 0,
            num_success: 10,
            num_error: 0,
            num_ignore: 0,
            page_done: true,
            branch_pages: 0,
        };
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let s = store.clone();
                let o = o.clone();
                tokio::spawn(async move { s.record_outcome(&o).await.unwrap().is_some() })
            })
            .collect();
        let mut applied = 0;
        for t in tasks {
            applied += t.await.unwrap() as u32;
        }
        assert_eq!(applied, 1);
        assert_eq!(store.get_job("j").await.unwrap().unwrap().num_success, 10);
    }
}
