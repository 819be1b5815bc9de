//! The local queue's rows in SQLite: `queue.db` beside the store (a file of its own, so queue
//! writes never wait for the store's), or in memory for tests. Each method is one
//! transaction; a commit survives the process being killed (see [`crate::sqlite`]).

use super::runner::{Runner, RunnerRow};
use crate::sqlite::{parse_ts, ts, Db};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use sluice_core::Stage;
use std::path::Path;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runners (id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, seen_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, runner TEXT NOT NULL, stage TEXT NOT NULL, job_id TEXT NOT NULL, flow_id TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_runner ON messages (runner, flow_id);
CREATE INDEX IF NOT EXISTS messages_by_job ON messages (job_id);
"#;

/// A message as it is written: which stage, for which job, and its JSON.
pub(crate) struct NewRow {
    pub stage: Stage,
    pub job_id: String,
    pub flow_id: String,
    pub body: String,
}

/// A stored message.
pub(crate) struct Row {
    pub seq: i64,
    pub stage: Stage,
    pub job_id: String,
    pub body: String,
}

/// What becomes of the message being handled, in the transaction that writes what it sent.
pub(crate) enum Finish {
    /// Handled (or dead-lettered): gone.
    Delete(i64),
    /// Part handled: replaced by its progress (a checkpoint).
    Replace(i64, String),
}

#[derive(Clone)]
pub(crate) struct QueueDb {
    db: Db,
}

impl QueueDb {
    pub fn open(path: &Path) -> anyhow::Result<QueueDb> {
        Ok(QueueDb {
            db: Db::open(path, SCHEMA, "queue")?,
        })
    }

    pub fn in_memory() -> anyhow::Result<QueueDb> {
        Ok(QueueDb {
            db: Db::in_memory(SCHEMA, "queue")?,
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.db.with(f).await
    }

    /// Registers the runner (blocking: called once, when the queue opens).
    pub fn register(&self, runner: &Runner, now: DateTime<Utc>) -> anyhow::Result<()> {
        let runner = runner.clone();
        self.db.blocking(move |c| upsert_runner(c, &runner, now))
    }

    /// Refreshes the runner's heartbeat (or registers it again if it was forgotten).
    pub async fn heartbeat(&self, runner: &Runner, now: DateTime<Utc>) -> anyhow::Result<()> {
        let r = runner.clone();
        self.with(move |c| upsert_runner(c, &r, now)).await
    }

    /// The runner stopped: its messages (if any are left) can be adopted at once.
    pub async fn unregister(&self, runner_id: &str) -> anyhow::Result<()> {
        let id = runner_id.to_string();
        self.with(move |c| {
            c.execute("DELETE FROM runners WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
    }

    /// Writes `new` for `runner` and settles the message being handled, in one transaction.
    /// Returns the new rows' sequence numbers, in order.
    pub async fn commit(
        &self,
        runner: &str,
        finish: Option<Finish>,
        new: Vec<NewRow>,
    ) -> anyhow::Result<Vec<i64>> {
        let runner = runner.to_string();
        self.with(move |c| {
            let tx = c.savepoint()?;
            let mut seqs = Vec::with_capacity(new.len());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO messages (runner, stage, job_id, flow_id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for m in &new {
                    insert.execute(params![runner, m.stage.name(), m.job_id, m.flow_id, m.body])?;
                    seqs.push(tx.last_insert_rowid());
                }
            }
            match finish {
                Some(Finish::Delete(seq)) => {
                    tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])?;
                }
                Some(Finish::Replace(seq, body)) => {
                    tx.execute(
                        "UPDATE messages SET body = ?2 WHERE seq = ?1",
                        params![seq, body],
                    )?;
                }
                None => {}
            }
            tx.commit()?;
            Ok(seqs)
        })
        .await
    }

    /// Deletes the messages with these sequence numbers (of finished jobs).
    pub async fn delete(&self, seqs: Vec<i64>) -> anyhow::Result<()> {
        self.with(move |c| {
            let tx = c.savepoint()?;
            for seq in seqs {
                tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Deletes every message of a job (it was canceled) and answers their bodies.
    pub async fn take_job(&self, job_id: &str) -> anyhow::Result<Vec<String>> {
        let job = job_id.to_string();
        self.with(move |c| {
            let mut st = c.prepare("DELETE FROM messages WHERE job_id = ?1 RETURNING body")?;
            let rows = st.query_map([job], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The jobs `runner` still has messages of.
    pub async fn jobs_of(&self, runner: &str) -> anyhow::Result<Vec<String>> {
        let runner = runner.to_string();
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT DISTINCT job_id FROM messages WHERE runner = ?1 ORDER BY job_id",
            )?;
            let rows = st.query_map([runner], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Whether any message of the job is queued, whoever holds it.
    pub async fn has_job(&self, job_id: &str) -> anyhow::Result<bool> {
        let job = job_id.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE job_id = ?1)",
                [job],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// The runner holding a job's messages, if any (the process working on it).
    pub async fn runner_of(&self, job_id: &str) -> anyhow::Result<Option<RunnerRow>> {
        let job = job_id.to_string();
        self.with(move |c| {
            let row = c
                .query_row(
                    "SELECT r.id, r.host, r.pid, r.seen_at FROM messages m JOIN runners r ON r.id = m.runner
                     WHERE m.job_id = ?1 LIMIT 1",
                    [job],
                    runner_row,
                )
                .optional()?;
            row.transpose()
        })
        .await
    }

    /// Moves to `me` the messages of runners that are gone (of `flow_id` only, when given)
    /// and forgets those runners. Returns the moved messages in the order they were sent, and
    /// the runners found gone. One IMMEDIATE transaction, so two processes adopting at once
    /// never both take a row.
    pub async fn adopt(
        &self,
        me: &Runner,
        flow_id: Option<&str>,
        now: DateTime<Utc>,
        stale: chrono::Duration,
    ) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
        let (me, flow) = (me.clone(), flow_id.map(str::to_string));
        self.with(move |c| {
            let tx = c.savepoint()?;
            let gone = gone_runners(&tx, &me, now, stale)?;
            let mut adopted = Vec::new();
            for runner in &gone {
                // A gone runner is forgotten, so its other messages stay adoptable even if
                // its pid is taken by another process later.
                tx.execute("DELETE FROM runners WHERE id = ?1", [runner])?;
                let mut select = tx.prepare(
                    "SELECT seq, stage, job_id, body FROM messages WHERE runner = ?1 AND (?2 IS NULL OR flow_id = ?2)",
                )?;
                let rows = select.query_map(params![runner, flow], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?))
                })?;
                for row in rows {
                    let (seq, stage, job_id, body) = row?;
                    let stage = stage.parse().map_err(anyhow::Error::msg)?;
                    adopted.push(Row { seq, stage, job_id, body });
                }
                tx.execute(
                    "UPDATE messages SET runner = ?1 WHERE runner = ?2 AND (?3 IS NULL OR flow_id = ?3)",
                    params![me.id, runner, flow],
                )?;
            }
            tx.commit()?;
            adopted.sort_by_key(|r| r.seq);
            Ok((adopted, gone))
        })
        .await
    }
}

/// The runners other than `me` that are gone: registered ones that are (see
/// [`RunnerRow::is_gone`]), and unregistered ones that still hold messages.
fn gone_runners(
    tx: &Connection,
    me: &Runner,
    now: DateTime<Utc>,
    stale: chrono::Duration,
) -> anyhow::Result<Vec<String>> {
    let mut gone = Vec::new();
    let mut registered = tx.prepare("SELECT id, host, pid, seen_at FROM runners WHERE id != ?1")?;
    for row in registered.query_map([&me.id], runner_row)? {
        let row = row??;
        if row.is_gone(me, now, stale) {
            gone.push(row.id);
        }
    }
    let mut orphans = tx.prepare(
        "SELECT DISTINCT runner FROM messages WHERE runner != ?1 AND runner NOT IN (SELECT id FROM runners)",
    )?;
    for id in orphans.query_map([&me.id], |r| r.get::<_, String>(0))? {
        gone.push(id?);
    }
    Ok(gone)
}

fn upsert_runner(c: &Connection, r: &Runner, now: DateTime<Utc>) -> anyhow::Result<()> {
    c.execute(
        "INSERT INTO runners (id, host, pid, seen_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
        params![r.id, r.host, r.pid, ts(now)],
    )?;
    Ok(())
}

fn runner_row(r: &rusqlite::Row) -> rusqlite::Result<anyhow::Result<RunnerRow>> {
    let (id, host, pid, seen): (String, String, u32, String) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    Ok(parse_ts(&seen).map(|seen_at| RunnerRow {
        id,
        host,
        pid,
        seen_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(job: &str, flow: &str) -> NewRow {
        NewRow {
            stage: Stage::Translate,
            job_id: job.into(),
            flow_id: flow.into(),
            body: format!("{{\"job\": \"{job}\"}}"),
        }
    }

    #[tokio::test]
    async fn the_rows_of_gone_runners_are_adopted_once_and_live_ones_are_left() {
        let db = QueueDb::in_memory().unwrap();
        let now = Utc::now();
        let stale = chrono::Duration::minutes(15);
        let (me, alive, stopped) = (
            Runner::this_process(),
            Runner::this_process(),
            Runner::this_process(),
        );
        for r in [&me, &alive, &stopped] {
            db.register(r, now).unwrap();
        }
        db.commit(&alive.id, None, vec![row("j1", "f")])
            .await
            .unwrap();
        db.commit(&stopped.id, None, vec![row("j2", "f"), row("j3", "g")])
            .await
            .unwrap();
        db.unregister(&stopped.id).await.unwrap();

        // Only flow g's rows of the stopped runner; the live runner keeps its own.
        let (rows, gone) = db.adopt(&me, Some("g"), now, stale).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>(),
            ["j3"]
        );
        assert_eq!(gone, vec![stopped.id.clone()]);
        let (rows, _) = db.adopt(&me, None, now, stale).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>(),
            ["j2"]
        );
        assert!(
            db.adopt(&me, None, now, stale).await.unwrap().0.is_empty(),
            "once"
        );
        assert_eq!(db.jobs_of(&me.id).await.unwrap(), ["j2", "j3"]);
        assert_eq!(db.jobs_of(&alive.id).await.unwrap(), ["j1"]);
        // A runner silent for longer than the stale limit is gone, wherever it runs.
        let later = now + stale * 2;
        let (rows, _) = db.adopt(&me, None, later, stale).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>(),
            ["j1"]
        );
    }

    #[tokio::test]
    async fn a_checkpoint_replaces_the_message_and_writes_what_was_sent_with_it() {
        let db = QueueDb::in_memory().unwrap();
        let me = Runner::this_process();
        let seq = db.commit(&me.id, None, vec![row("j", "f")]).await.unwrap()[0];
        let sent = db
            .commit(
                &me.id,
                Some(Finish::Replace(seq, "{\"progress\": 1}".into())),
                vec![row("j", "f")],
            )
            .await
            .unwrap();
        assert_eq!(sent.len(), 1);
        db.unregister(&me.id).await.unwrap();
        let other = Runner::this_process();
        let (rows, _) = db
            .adopt(&other, None, Utc::now(), chrono::Duration::minutes(1))
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].body, "{\"progress\": 1}");
        db.commit(&other.id, Some(Finish::Delete(rows[0].seq)), vec![])
            .await
            .unwrap();
        assert_eq!(db.take_job("j").await.unwrap().len(), 1);
    }
}
