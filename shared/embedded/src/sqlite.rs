//! One SQLite database owned by a thread of its own, used from async code. Shared by the store
//! and the queue (each has a file of its own, so neither waits for the other's writes). Files
//! use WAL with `synchronous=NORMAL`: a commit survives the process being killed, without an
//! fsync per transaction.
//!
//! Group commit: the thread takes every call waiting for it (up to [`MAX_BATCH`]) and runs
//! them in one `BEGIN IMMEDIATE` transaction, each inside a savepoint of its own, in the order
//! they were made. A call that fails rolls back to its savepoint and leaves the others be; a
//! call's answer is handed back only once the transaction has committed, so a caller never
//! acts on a write that a failed commit lost. The invariant each call relied on as "one
//! transaction" holds: the write lock is taken before the first read of the batch, so no other
//! process writes between a call's reads and its writes. Under load (deliver's concurrent
//! ledger claims and completions) many calls share one commit, which is where the store's
//! cost per record went: a commit writes every page it touched to the WAL.

use anyhow::Context;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// At most this many calls share one transaction, so a commit stays small.
const MAX_BATCH: usize = 256;

/// What the thread hands a call: the connection inside the batch's transaction, or why the
/// transaction could not start.
type Start<'c> = Result<&'c mut Connection, String>;
/// What a call leaves behind to answer its caller, told whether the batch committed.
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A call: runs, then says whether it failed (so its writes are undone) and how to answer.
type Call = Box<dyn for<'c> FnOnce(Start<'c>) -> (bool, Answer) + Send>;

#[derive(Clone)]
pub(crate) struct Db {
    calls: mpsc::Sender<Call>,
}

impl Db {
    /// Opens (or creates) the file with `schema`; `what` names it in errors.
    pub fn open(path: &Path, schema: &str, what: &str) -> anyhow::Result<Db> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the {what} {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::init(conn, schema, what)
    }

    pub fn in_memory(schema: &str, what: &str) -> anyhow::Result<Db> {
        Self::init(Connection::open_in_memory()?, schema, what)
    }

    fn init(conn: Connection, schema: &str, what: &str) -> anyhow::Result<Db> {
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(schema)
            .with_context(|| format!("cannot create the {what}'s tables"))?;
        let (calls, queued) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name(format!("sqlite-{what}"))
            .spawn(move || serve(conn, queued))
            .with_context(|| format!("cannot start the {what}'s thread"))?;
        Ok(Db { calls })
    }

    /// Hands `f` to the database's thread and waits for its answer (after the commit).
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.context("the database call panicked")?
    }

    /// The same, waiting on this thread (for a call made once, at start).
    pub fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().context("the database call panicked")?
    }

    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
        answer: impl FnOnce(anyhow::Result<T>) + Send + 'static,
    ) -> anyhow::Result<()> {
        let call: Call = Box::new(move |start: Start<'_>| {
            let result = match start {
                Ok(conn) => f(conn),
                Err(e) => Err(anyhow::anyhow!(e)),
            };
            let failed = result.is_err();
            let answer: Answer = Box::new(move |committed: Result<(), String>| {
                answer(match committed {
                    Ok(()) => result,
                    Err(e) => Err(anyhow::anyhow!(e)),
                })
            });
            (failed, answer)
        });
        self.calls
            .send(call)
            .map_err(|_| anyhow::anyhow!("the database thread has stopped"))
    }
}

/// The database thread: batches of waiting calls, one transaction each, until every [`Db`]
/// handle is gone.
fn serve(mut conn: Connection, queued: mpsc::Receiver<Call>) {
    while let Ok(first) = queued.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(call) => batch.push(call),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch);
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<Call>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let why = format!("cannot start a transaction: {e}");
        for call in batch {
            call(Err(why.clone())).1(Err(why.clone()));
        }
        return;
    }
    let answers: Vec<Answer> = batch
        .into_iter()
        .filter_map(|call| one(conn, call))
        .collect();
    let committed = conn
        .execute_batch("COMMIT")
        .map_err(|e| format!("the transaction did not commit: {e}"));
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for answer in answers {
        answer(committed.clone());
    }
}

/// Runs one call in a savepoint, rolled back if the call failed or panicked (a panicked
/// call is answered by its dropped channel, so it has no answer here).
fn one(conn: &mut Connection, call: Call) -> Option<Answer> {
    if let Err(e) = conn.execute_batch("SAVEPOINT call") {
        return Some(call(Err(format!("cannot start a savepoint: {e}"))).1);
    }
    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| call(Ok(&mut *conn))));
    let failed = ran.as_ref().map_or(true, |(failed, _)| *failed);
    let end = if failed {
        "ROLLBACK TO call; RELEASE call"
    } else {
        "RELEASE call"
    };
    let _ = conn.execute_batch(end);
    ran.ok().map(|(_, answer)| answer)
}

/// Times are stored as RFC 3339 with fixed width (UTC, microseconds) so text order is time order.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(crate) fn parse_ts(s: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc))
}
