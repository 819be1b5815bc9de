//! deliver's use of the delivery ledger: what a send is claimed as, and when a claimed send
//! may still start.
//!
//! A page's records (one request each) are claimed a chunk at a time: with chunks of `size`
//! (the store's [`crate::ports::Store::ledger_chunk_size`]: 25 on DynamoDB, where each write
//! is billed; 1 on SQLite, where a claim is a row in a group commit), chunk `n` of a page at
//! a processor is its records at positions `n * size ..`, keyed
//! `deliver:{job}:{page}:{processor}:chunk{n}`, so a redelivered page or the next pass of a
//! continued one finds the same chunks. A chunk is claimed in one store call when the first
//! of its records has its turn under the connection's limits, and settled in one write when
//! the last of them in this pass is done: each sent one with its outcome, each not started
//! (time ran out, the job was canceled) given back. A send that gives up before its chunk's
//! claim was made is left out of the claim (nothing would give it back), so the next pass
//! claims it afresh. So the ledger costs two store writes per
//! chunk instead of two per record; the price is that a crash between the two leaves every
//! unsettled send of the chunk in flight (`delivery_unknown`, never resent), at most `size`
//! records, including ones that had not gone out yet.
//!
//! Cancel stays prompt without a job read per record: a claim looks at the job, and a send
//! of a claimed chunk starts only within [`SEND_WINDOW`] of the start of a look that found
//! the job not canceled (else it looks again). `runs::cancel_job` answers only
//! [`crate::runs::CANCEL_SETTLES`] (more than the window) after the cancel committed, so no
//! send starts after a cancel was answered.

use crate::ports::{LedgerState, Settled};
use crate::{Result, Sluice, Stage};
use serde_json::Value;
use sluice_model::{JobStatus, Page, Send};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A claimed send starts only this long after the start of the last look at its job that
/// found it not canceled. Less than [`crate::runs::CANCEL_SETTLES`], by a margin for the
/// moment between the look and the request.
pub(crate) const SEND_WINDOW: Duration = Duration::from_millis(200);

/// What one send is claimed as: a key of its own (a page's one request, `batch`), or one
/// send of a chunk of this pass.
pub(super) enum Claim<'a> {
    One { job_id: &'a str, key: &'a str },
    InChunk { pass: &'a Pass<'a>, record: &'a str },
}

impl Claim<'_> {
    /// Claims the send; `Claimed` only when it may start now.
    pub async fn take(&self, sluice: &Sluice) -> Result<LedgerState> {
        match self {
            Claim::One { job_id, key } => Ok(sluice
                .store
                .ledger_claim(job_id, key, sluice.clock.now())
                .await?),
            Claim::InChunk { pass, record } => pass.claim(record).await,
        }
    }

    /// How the send ended: its outcome, or `None` when it did not start. Called once for
    /// every send of a pass, whatever its claim answered.
    pub async fn finish(&self, sluice: &Sluice, outcome: Option<&Value>) -> Result<()> {
        match (self, outcome) {
            (Claim::One { key, .. }, Some(v)) => Ok(sluice.store.ledger_complete(key, v).await?),
            (Claim::One { .. }, None) => Ok(()),
            (Claim::InChunk { pass, record }, outcome) => pass.finish(record, outcome).await,
        }
    }

    /// Whether an outcome of `bytes` is kept in the ledger item itself (else in the system
    /// bucket): within `max_inline_page_bytes` for the item, which a chunk's outcomes share
    /// (an item is 400 KB at most), first come first kept.
    pub fn fits(&self, sluice: &Sluice, bytes: usize) -> bool {
        let limit = sluice.settings.max_inline_page_bytes;
        match self {
            Claim::One { .. } => bytes <= limit,
            Claim::InChunk { pass, record } => {
                let kept = &pass.chunk(record).inline_bytes;
                kept.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| {
                    (k + bytes <= limit).then_some(k + bytes)
                })
                .is_ok()
            }
        }
    }
}

/// The chunks of one pass of deliver over a page, and the look at its job.
pub(super) struct Pass<'a> {
    sluice: &'a Sluice,
    job_id: &'a str,
    /// Record key -> its chunk's number.
    chunk_of: HashMap<String, usize>,
    chunks: HashMap<usize, Chunk>,
    watch: JobWatch,
}

struct Chunk {
    key: String,
    /// The records of this pass in the chunk, in page order.
    sends: Vec<String>,
    /// Whether the claim has started, and the records that finished unstarted before it:
    /// those are left out of it, since nothing would give them back (they finished).
    gate: Mutex<Gate>,
    /// What the claim answered, per record claimed; set once, by the first record to have
    /// its turn.
    claimed: tokio::sync::OnceCell<HashMap<String, LedgerState>>,
    settled: Mutex<Vec<(String, Settled)>>,
    /// Records of this pass that have not finished.
    open: AtomicUsize,
    /// Bytes of outcomes kept in the item so far (see [`Claim::fits`]).
    inline_bytes: AtomicUsize,
}

impl<'a> Pass<'a> {
    /// The chunks of `records` (key, position in the page) of `page`.
    pub fn new(sluice: &'a Sluice, page: &'a Page, records: &[(String, usize)]) -> Self {
        let size = sluice.store.ledger_chunk_size().max(1);
        let mut chunks: HashMap<usize, Chunk> = HashMap::new();
        let mut chunk_of = HashMap::new();
        for (record, position) in records {
            let n = position / size;
            chunk_of.insert(record.clone(), n);
            let chunk = chunks.entry(n).or_insert_with(|| Chunk {
                key: chunk_key(page, n),
                sends: vec![],
                gate: Mutex::default(),
                claimed: tokio::sync::OnceCell::new(),
                settled: Mutex::default(),
                open: AtomicUsize::new(0),
                inline_bytes: AtomicUsize::new(0),
            });
            chunk.sends.push(record.clone());
            chunk.open.fetch_add(1, Ordering::SeqCst);
        }
        Pass {
            sluice,
            job_id: &page.job_id,
            chunk_of,
            chunks,
            watch: JobWatch::default(),
        }
    }

    fn chunk(&self, record: &str) -> &Chunk {
        &self.chunks[&self.chunk_of[record]]
    }

    async fn claim(&self, record: &str) -> Result<LedgerState> {
        let chunk = self.chunk(record);
        let states = self.claim_chunk(chunk).await?;
        let state = states[record].clone();
        if state == LedgerState::Claimed && !self.watch.running(self.sluice, self.job_id).await? {
            return Ok(LedgerState::JobCanceled);
        }
        Ok(state)
    }

    /// The chunk's claim: made once, in one store call, for its records that have not
    /// finished unstarted; later callers wait for it.
    async fn claim_chunk(&self, chunk: &'a Chunk) -> Result<&HashMap<String, LedgerState>> {
        chunk
            .claimed
            .get_or_try_init(|| async {
                let sends: Vec<String> = {
                    let mut gate = chunk.gate.lock().unwrap();
                    gate.claiming = true;
                    let skipped = &gate.skipped;
                    chunk
                        .sends
                        .iter()
                        .filter(|s| !skipped.contains(*s))
                        .cloned()
                        .collect()
                };
                let started = Instant::now();
                let states = self
                    .sluice
                    .store
                    .ledger_claim_chunk(self.job_id, &chunk.key, &sends, self.sluice.clock.now())
                    .await?;
                let canceled = states.contains(&LedgerState::JobCanceled);
                self.watch.saw(started, canceled);
                Ok::<_, crate::Error>(sends.into_iter().zip(states).collect())
            })
            .await
    }

    async fn finish(&self, record: &str, outcome: Option<&Value>) -> Result<()> {
        let chunk = self.chunk(record);
        // A send that never started before the chunk's claim is left out of the claim; one
        // that stops after the claim began is given back once the claim's answer is known.
        let before_claim = outcome.is_none() && {
            let mut gate = chunk.gate.lock().unwrap();
            if !gate.claiming {
                gate.skipped.insert(record.to_string());
            }
            !gate.claiming
        };
        let claimed = !before_claim
            && self
                .claim_chunk(chunk)
                .await?
                .get(record)
                .is_some_and(|state| *state == LedgerState::Claimed);
        if claimed {
            let how = match outcome {
                Some(v) => Settled::Sent(v.clone()),
                None => Settled::NotSent,
            };
            chunk
                .settled
                .lock()
                .unwrap()
                .push((record.to_string(), how));
        }
        if chunk.open.fetch_sub(1, Ordering::SeqCst) > 1 {
            return Ok(());
        }
        let settled = std::mem::take(&mut *chunk.settled.lock().unwrap());
        if !settled.is_empty() {
            self.sluice
                .store
                .ledger_settle_chunk(&chunk.key, &settled)
                .await?;
        }
        Ok(())
    }
}

fn chunk_key(page: &Page, n: usize) -> String {
    crate::ports::ledger_key(
        Stage::Deliver,
        &page.send_id(Send::Record(&format!("chunk{n}"))),
    )
}

/// Whether a chunk's claim has started, and which of its sends finished unstarted before.
#[derive(Default)]
struct Gate {
    claiming: bool,
    skipped: std::collections::HashSet<String>,
}

/// The last look at a job: when the last one that found it running started, or that it was
/// found canceled (for good).
#[derive(Default)]
struct JobWatch {
    state: tokio::sync::Mutex<Looked>,
}

#[derive(Default, Clone, Copy)]
enum Looked {
    #[default]
    Never,
    Running(Instant),
    Canceled,
}

impl JobWatch {
    fn saw(&self, started: Instant, canceled: bool) {
        if let Ok(mut state) = self.state.try_lock() {
            *state = match (canceled, *state) {
                (true, _) | (_, Looked::Canceled) => Looked::Canceled,
                (false, Looked::Running(t)) if t > started => Looked::Running(t),
                (false, _) => Looked::Running(started),
            };
        }
    }

    /// True when a send may start now: a look started within [`SEND_WINDOW`] found the job
    /// running (looking again if the last one is older).
    async fn running(&self, sluice: &Sluice, job_id: &str) -> Result<bool> {
        let mut state = self.state.lock().await;
        match *state {
            Looked::Canceled => return Ok(false),
            Looked::Running(t) if t.elapsed() < SEND_WINDOW => return Ok(true),
            _ => {}
        }
        let started = Instant::now();
        let job = sluice.store.get_job(job_id).await?;
        let canceled = job.is_some_and(|j| j.status == JobStatus::Canceled);
        *state = match canceled {
            true => Looked::Canceled,
            false => Looked::Running(started),
        };
        Ok(!canceled)
    }
}
