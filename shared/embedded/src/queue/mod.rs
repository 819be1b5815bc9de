//! The local runtime's durable queues: one per stage, with workers that call the stage
//! handler, retries that stand in for a queue's redelivery, and a dead letter after the last
//! attempt.
//!
//! Every message sent is a row in the queue database (see [`db`]) before `send` returns, and
//! its row goes only once its stage has handled it, so a process killed outright loses
//! nothing: the next runtime on the same data adopts its rows ([`LocalQueue::adopt`]) and
//! carries on. Workers take messages from in-memory channels fed as rows are written, so the
//! database is written, never polled.
//!
//! Invariant: a handled message and the messages its handler sent change places in one
//! transaction (an outbox). Sends made while a worker handles a message are held until the
//! handler returns, then written together with the deletion of the message it handled; a
//! handler that fails sends nothing, and its retry starts over. So a crash leaves either the
//! message or what it turned into, never both, and no page is ever handled twice at once
//! (two copies of a page in deliver would make one report the other's sends as
//! `delivery_unknown`). A long handler (the trigger reading a big file) commits as it goes
//! with [`Queue::checkpoint`]: what it sent so far, and its own message replaced by its
//! progress, in one transaction.

mod db;
pub mod runner;

use async_trait::async_trait;
use db::{Finish, NewRow, QueueDb, Row};
use runner::Runner;
use sluice_core::ports::Queue;
use sluice_core::stages::dead_letter::dead_letter;
use sluice_core::{Sluice, Stage};
use sluice_model::StageMessage;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Pages the trigger may have in translate, deliver, extract and upload at once before it
/// waits. Bounds memory on big inputs; evaluate's sends never wait, so the pipeline drains.
pub const MAX_PAGES_IN_FLIGHT: usize = 64;

/// A message on its way to a worker, with its row.
pub(crate) struct Delivery {
    seq: i64,
    message: StageMessage,
}

pub(crate) type Receivers = HashMap<Stage, mpsc::UnboundedReceiver<Delivery>>;

/// The message a worker is handling and what its handler has sent so far (held until the
/// handler returns or checkpoints). Task-local to the worker's task.
struct Handling {
    /// Which queue's worker this is (two runtimes may share a process).
    queue: usize,
    seq: i64,
    held: RefCell<Vec<(Stage, StageMessage)>>,
    /// The message as last checkpointed, if it was: where a retry starts.
    checkpointed: RefCell<Option<StageMessage>>,
}

tokio::task_local! {
    static HANDLING: Handling;
}

/// The sending side, plugged into `Sluice` as its Queue.
pub struct LocalQueue {
    db: QueueDb,
    runner: Runner,
    senders: HashMap<Stage, mpsc::UnboundedSender<Delivery>>,
    /// Messages written and not yet finished here (handled or dead-lettered).
    pending: AtomicUsize,
    /// Messages written and not yet finished, per stage.
    depth: HashMap<Stage, AtomicUsize>,
    /// Messages a worker is handling right now.
    busy: AtomicUsize,
    /// Set by `close`: workers take no new message.
    closing: AtomicBool,
}

impl LocalQueue {
    /// A queue over `<path>` (created if missing) and the receivers its workers take. Its
    /// runner is registered, so other processes see it alive from now on.
    pub(crate) fn open(path: &Path) -> anyhow::Result<(Arc<LocalQueue>, Receivers)> {
        Self::over(QueueDb::open(path)?)
    }

    /// A queue whose rows live in memory (tests): the same code, nothing to resume.
    pub(crate) fn in_memory() -> anyhow::Result<(Arc<LocalQueue>, Receivers)> {
        Self::over(QueueDb::in_memory()?)
    }

    fn over(db: QueueDb) -> anyhow::Result<(Arc<LocalQueue>, Receivers)> {
        let mut senders = HashMap::new();
        let mut receivers = HashMap::new();
        for stage in Stage::ALL {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.insert(stage, tx);
            receivers.insert(stage, rx);
        }
        let depth = Stage::ALL
            .into_iter()
            .map(|st| (st, AtomicUsize::new(0)))
            .collect();
        let runner = Runner::this_process();
        db.register(&runner, chrono::Utc::now())?;
        let queue = LocalQueue {
            db,
            runner,
            senders,
            pending: AtomicUsize::new(0),
            depth,
            busy: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        };
        Ok((Arc::new(queue), receivers))
    }

    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Messages a worker is handling right now.
    pub(crate) fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    fn id(&self) -> usize {
        self as *const LocalQueue as usize
    }

    fn pages_before_evaluate(&self) -> usize {
        [
            Stage::Translate,
            Stage::Deliver,
            Stage::Extract,
            Stage::Upload,
        ]
        .iter()
        .map(|st| self.depth[st].load(Ordering::SeqCst))
        .sum()
    }

    /// Tells the other processes this runner is still alive.
    pub(crate) async fn heartbeat(&self) -> anyhow::Result<()> {
        self.db.heartbeat(&self.runner, chrono::Utc::now()).await
    }

    /// Writes `sent` (and settles the message being handled), then hands the new messages to
    /// the workers.
    async fn commit(
        &self,
        finish: Option<Finish>,
        sent: Vec<(Stage, StageMessage)>,
    ) -> anyhow::Result<()> {
        let rows = sent
            .iter()
            .map(|(stage, m)| {
                let (job_id, flow_id) = owner(m);
                Ok(NewRow {
                    stage: *stage,
                    job_id: job_id.to_string(),
                    flow_id: flow_id.to_string(),
                    body: serde_json::to_string(m)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let seqs = self.db.commit(&self.runner.id, finish, rows).await?;
        for (seq, (stage, message)) in seqs.into_iter().zip(sent) {
            self.dispatch(stage, seq, message);
        }
        Ok(())
    }

    fn dispatch(&self, stage: Stage, seq: i64, message: StageMessage) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.depth[&stage].fetch_add(1, Ordering::SeqCst);
        if self.senders[&stage]
            .send(Delivery { seq, message })
            .is_err()
        {
            // The workers are gone (the runtime stopped): the row stays for the next runtime.
            self.finished(stage);
        }
    }

    fn finished(&self, stage: Stage) {
        self.depth[&stage].fetch_sub(1, Ordering::SeqCst);
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }

    /// Takes over the messages of runners that are gone (see [`runner`]), of one flow or of
    /// all. They are this runner's from now on; the caller hands on those worth handling
    /// ([`resume`](Self::resume)) and drops the others ([`drop_rows`](Self::drop_rows)).
    /// Also returns the ids of the runners found gone (what else they held can be freed).
    pub(crate) async fn adopt(
        &self,
        flow_id: Option<&str>,
        stale: Duration,
    ) -> anyhow::Result<(Vec<Adopted>, Vec<String>)> {
        let stale = chrono::Duration::from_std(stale)?;
        let (rows, gone) = self
            .db
            .adopt(&self.runner, flow_id, chrono::Utc::now(), stale)
            .await?;
        let adopted = rows
            .into_iter()
            .map(
                |Row {
                     seq,
                     stage,
                     job_id,
                     body,
                 }| {
                    let message = serde_json::from_str(&body)
                        .map_err(|e| anyhow::anyhow!("queued message {seq} is unreadable: {e}"))?;
                    Ok(Adopted {
                        job_id,
                        stage,
                        seq,
                        message,
                    })
                },
            )
            .collect::<anyhow::Result<_>>()?;
        Ok((adopted, gone))
    }

    /// Hands an adopted message to the workers.
    pub(crate) fn resume(&self, adopted: Adopted) {
        self.dispatch(adopted.stage, adopted.seq, adopted.message);
    }

    /// Deletes adopted messages that are not worth handling (their job has finished).
    pub(crate) async fn drop_rows(&self, seqs: Vec<i64>) -> anyhow::Result<()> {
        self.db.delete(seqs).await
    }

    /// Takes every message of a job out of the queue. Call once no worker handles them
    /// (after `stop`).
    pub async fn take_job(&self, job_id: &str) -> anyhow::Result<Vec<StageMessage>> {
        let bodies = self.db.take_job(job_id).await?;
        bodies
            .iter()
            .map(|body| Ok(serde_json::from_str(body)?))
            .collect()
    }

    /// The jobs this runner still holds messages of (unfinished work it would resume).
    pub async fn held_jobs(&self) -> anyhow::Result<Vec<String>> {
        self.db.jobs_of(&self.runner.id).await
    }

    /// Whether any message of the job is queued on this data, by any process.
    pub async fn has_messages_of(&self, job_id: &str) -> anyhow::Result<bool> {
        self.db.has_job(job_id).await
    }

    /// The process holding a job's messages, when it is not this one and still runs.
    pub async fn other_runner_of(&self, job_id: &str) -> anyhow::Result<Option<runner::RunnerRow>> {
        Ok(self
            .db
            .runner_of(job_id)
            .await?
            .filter(|r| r.id != self.runner.id))
    }

    /// Workers take no new message from now on.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// This runner stops: what it leaves can be adopted at once.
    pub(crate) async fn unregister(&self) -> anyhow::Result<()> {
        self.db.unregister(&self.runner.id).await
    }

    /// Holds `message` when called by one of this queue's workers; gives it back otherwise.
    fn hold(&self, stage: Stage, message: StageMessage) -> Option<StageMessage> {
        let mut message = Some(message);
        let _ = HANDLING.try_with(|h| {
            if h.queue == self.id() {
                h.held
                    .borrow_mut()
                    .push((stage, message.take().expect("not taken yet")));
            }
        });
        message
    }
}

/// A message taken over from a runner that is gone.
pub(crate) struct Adopted {
    pub job_id: String,
    pub stage: Stage,
    pub seq: i64,
    pub message: StageMessage,
}

/// The job and flow a message belongs to.
fn owner(message: &StageMessage) -> (&str, &str) {
    match message {
        StageMessage::Run(order) => (&order.job_id, &order.flow_id),
        StageMessage::Page(page) => (&page.job_id, &page.flow_id),
        StageMessage::AfterProcess { job } | StageMessage::FilesRead { job } => {
            (&job.id, &job.flow_id)
        }
    }
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(&self, stage: Stage, message: StageMessage) -> anyhow::Result<()> {
        // Backpressure on the trigger only: its fresh pages (processor 0) wait for room.
        if stage == Stage::Translate
            && matches!(&message, StageMessage::Page(p) if p.processor_index == 0)
        {
            while self.pages_before_evaluate() >= MAX_PAGES_IN_FLIGHT
                && !self.closing.load(Ordering::SeqCst)
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        match self.hold(stage, message) {
            None => Ok(()),
            Some(message) => self.commit(None, vec![(stage, message)]).await,
        }
    }

    async fn checkpoint(&self, progress: &StageMessage) -> anyhow::Result<()> {
        let Ok(Some((seq, held))) = HANDLING.try_with(|h| {
            (h.queue == self.id()).then(|| (h.seq, std::mem::take(&mut *h.held.borrow_mut())))
        }) else {
            return Ok(());
        };
        let body = serde_json::to_string(progress)?;
        self.commit(Some(Finish::Replace(seq, body)), held).await?;
        let _ = HANDLING.try_with(|h| *h.checkpointed.borrow_mut() = Some(progress.clone()));
        Ok(())
    }
}

/// How often a failing message is tried, and how long to wait between tries.
#[derive(Debug, Clone)]
pub struct Redelivery {
    pub attempts: u32,
    pub backoff: Duration,
}

impl Default for Redelivery {
    fn default() -> Self {
        Redelivery {
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// What a handler run by [`as_handler`] did.
struct Handled<T> {
    result: T,
    /// What it sent (held, not written yet).
    sent: Vec<(Stage, StageMessage)>,
    /// Its message as it last checkpointed it, if it did.
    checkpointed: Option<StageMessage>,
}

/// Runs `work` as the handler of message `seq` of `queue`: what it sends is held.
async fn as_handler<T>(
    queue: &LocalQueue,
    seq: i64,
    work: impl std::future::Future<Output = T>,
) -> Handled<T> {
    let handling = Handling {
        queue: queue.id(),
        seq,
        held: RefCell::new(Vec::new()),
        checkpointed: RefCell::new(None),
    };
    HANDLING
        .scope(handling, async {
            let result = work.await;
            HANDLING.with(|h| Handled {
                result,
                sent: std::mem::take(&mut *h.held.borrow_mut()),
                checkpointed: h.checkpointed.borrow_mut().take(),
            })
        })
        .await
}

/// Handles one delivery: up to `policy.attempts` tries, each starting from the last
/// checkpoint; then the dead letter. Its row goes with what the successful try (or the dead
/// letter) sent.
async fn work(
    sluice: &Sluice,
    queue: &LocalQueue,
    policy: &Redelivery,
    stage: Stage,
    delivery: Delivery,
) {
    let seq = delivery.seq;
    let mut message = delivery.message;
    let mut reason = String::new();
    for attempt in 1..=policy.attempts.max(1) {
        let handled = as_handler(queue, seq, sluice.handle(stage, message.clone())).await;
        if let Some(progress) = handled.checkpointed {
            message = progress;
        }
        let result = match handled.result {
            Ok(()) => queue.commit(Some(Finish::Delete(seq)), handled.sent).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(()) => return,
            Err(e) => reason = format!("{e:#}"),
        }
        if attempt < policy.attempts {
            tokio::time::sleep(policy.backoff * attempt).await;
        }
    }
    let handled = as_handler(queue, seq, dead_letter(sluice, stage, message, &reason)).await;
    let settled = match handled.result {
        Ok(()) => queue.commit(Some(Finish::Delete(seq)), handled.sent).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = settled {
        // The row stays: the next runtime on this data tries it again.
        tracing::error!(stage = stage.name(), error = %e, "dead letter could not be recorded");
    }
}

/// Starts `workers` tasks per stage taking from the receivers.
pub(crate) fn spawn_workers(
    sluice: Arc<Sluice>,
    queue: Arc<LocalQueue>,
    receivers: Receivers,
    workers: impl Fn(Stage) -> usize,
    policy: Redelivery,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for (stage, rx) in receivers {
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..workers(stage).max(1) {
            let (rx, sluice, queue, policy) =
                (rx.clone(), sluice.clone(), queue.clone(), policy.clone());
            handles.push(tokio::spawn(async move {
                loop {
                    let Some(delivery) = rx.lock().await.recv().await else {
                        break;
                    };
                    if queue.closing.load(Ordering::SeqCst) {
                        break;
                    }
                    queue.busy.fetch_add(1, Ordering::SeqCst);
                    work(&sluice, &queue, &policy, stage, delivery).await;
                    queue.busy.fetch_sub(1, Ordering::SeqCst);
                    queue.finished(stage);
                }
            }));
        }
    }
    handles
}
