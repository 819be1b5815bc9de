//! One SQLite database behind a mutex, used from async code: every call runs on a blocking
//! thread. Shared by the store and the queue (each has a file of its own, so neither waits
//! for the other's writes). Files use WAL with `synchronous=NORMAL`: a commit survives the
//! process being killed, without an fsync per transaction.

use anyhow::Context;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
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
        conn.execute_batch(schema)
            .with_context(|| format!("cannot create the {what}'s tables"))?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection, on a blocking thread.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock().unwrap_or_else(|p| p.into_inner())))
            .await?
    }

    /// Runs `f` on the connection here (for a call made once, at start).
    pub fn blocking<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        f(&mut self.conn.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Times are stored as RFC 3339 with fixed width (UTC, microseconds) so text order is time order.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(crate) fn parse_ts(s: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc))
}
