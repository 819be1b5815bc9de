//! Per-connection limits: at most N requests in flight, at most R requests a second.
//!
//! Two layers. The process-local one (a semaphore and a token bucket) always applies and is
//! free. When the connection sets `concurrencyLevel` or `rateLimit` itself, the limits are also
//! kept in the store, so every process sharing it (each Lambda instance, or two `sluice`
//! processes on one database file) counts against the same numbers:
//! - concurrency: N leased slots (the store's slot group `limit:<connection>`), one held for
//!   each request; a process that dies holding one frees it when the lease runs out (or at
//!   once, when the local runtime that takes over its work frees its holder's slots). Waiters
//!   poll with one read of the group, writing only to take a slot they saw free. A process
//!   keeps a slot for its next request instead of giving it back after each one (store
//!   writes per slot, not per request): for at most [`KEEP_SLOT`] after taking it, so the
//!   lease ([`slot_lease`]) still covers any request started on it and other processes get
//!   their turn, and for [`IDLE_SLOT`] at most without a request on it;
//! - rate: GCRA (a token bucket kept as one number, the theoretical arrival time), advanced
//!   with the store's compare-and-set `swap_state`, a block of tokens at a time sized to this
//!   process's demand (doubling while every token is used, up to [`TOKEN_BLOCK`] and one
//!   second's worth): consecutive time slots, each used at its time (see [`Slot`]).

use crate::ports::Store;
use rand::Rng;
use serde_json::json;
use sluice_model::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Without a `concurrencyLevel`, this many requests per process (not shared).
pub(crate) const DEFAULT_CONCURRENCY: u32 = 5;

pub(crate) struct Limiter {
    in_flight: Semaphore,
    rate: Option<Mutex<Bucket>>,
    shared: Option<Shared>,
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
struct Bucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

/// The limits kept in the store for one connection.
struct Shared {
    connection_id: String,
    slots: Option<u32>,
    /// (interval between requests in µs, burst)
    rate: Option<(i64, u32)>,
    /// Slots this process holds between back-to-back requests.
    parked: Arc<Mutex<Parked>>,
    /// Rate tokens taken from the store and not yet used; one taker at a time.
    tokens: tokio::sync::Mutex<Tokens>,
    /// Callers waiting for `tokens`: how many tokens the next take from the store asks for.
    token_waiters: AtomicUsize,
}

/// Held while one request is out; give it back with [`Permit::release`].
pub(crate) struct Permit<'a> {
    _local: SemaphorePermit<'a>,
    slot: Option<HeldSlot>,
}

/// A shared slot held in the store.
struct HeldSlot {
    store: Arc<dyn Store>,
    group: String,
    index: u32,
    owner: String,
    /// When it was taken from the store: it is kept for back-to-back requests for
    /// [`KEEP_SLOT`] at most after this.
    taken: Instant,
    parked: Arc<Mutex<Parked>>,
}

/// A slot is kept between back-to-back requests of this process for at most this long after
/// it was taken, then given back: so it needs no renewal (its lease, [`slot_lease`], still
/// covers a request started on it), and other processes get their turn at it. Each take and
/// give-back is a billed write on DynamoDB: at 10 s a busy slot costs two per 10 s.
pub(crate) const KEEP_SLOT: Duration = Duration::from_secs(10);

/// A shared slot's lease for requests of `timeout`: a request started on it up to
/// [`KEEP_SLOT`] after it was taken still ends within it, with 5 s for clock skew. It outlives
/// its requests only if the holder died (a killed Lambda), and then frees itself.
pub(crate) fn slot_lease(timeout: Duration) -> Duration {
    timeout + KEEP_SLOT + Duration::from_secs(5)
}
/// A kept slot no request of this process used for this long is given back (a Lambda
/// invocation gives back what it kept before it returns, see `settle_slot_releases`). Long
/// enough to bridge the gap between two pages of one invocation (settling one, forwarding
/// it, loading the next: over 100 ms on moto, where 100 ms gave every slot back at every
/// page, and over 500 ms on a loaded machine, where 500 ms tripled the slot writes on the
/// cost bench), and short beside [`KEEP_SLOT`], which bounds what others wait anyway.
const IDLE_SLOT: Duration = Duration::from_secs(2);

/// The shared slots of one connection this process holds with no request on them.
#[derive(Default)]
struct Parked {
    /// Each with the time it was parked.
    slots: Vec<(HeldSlot, Instant)>,
    /// Slots taken out to be given back, not given back yet.
    releasing: usize,
    /// A task gives back the idle ones while any are parked.
    sweeping: bool,
}

impl HeldSlot {
    async fn release(self) {
        if let Err(e) = self
            .store
            .release_slot(&self.group, self.index, &self.owner)
            .await
        {
            let (group, index) = (&self.group, self.index);
            tracing::warn!(%group, index, "could not release a connection slot (its lease will): {e:#}");
        }
    }

    /// Done with one request: kept for the next one (given back by the sweeper when idle),
    /// or given back now once it has been held for [`KEEP_SLOT`].
    async fn finish(self) {
        if self.taken.elapsed() >= KEEP_SLOT {
            return self.release().await;
        }
        self.park();
    }

    /// Parks the slot (for the next request, or for the sweeper to give back); starts the
    /// sweeper if none runs.
    fn park(self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return; // no runtime left: the lease frees it
        };
        let parked = self.parked.clone();
        let mut p = parked.lock().unwrap();
        p.slots.push((self, Instant::now()));
        if !p.sweeping {
            p.sweeping = true;
            handle.spawn(sweep(parked.clone()));
        }
    }
}

/// Gives back parked slots once idle (or held too long), until none is parked.
async fn sweep(parked: Arc<Mutex<Parked>>) {
    loop {
        tokio::time::sleep(IDLE_SLOT / 2).await;
        let idle = |slot: &HeldSlot, since: &Instant| {
            since.elapsed() >= IDLE_SLOT || slot.taken.elapsed() >= KEEP_SLOT
        };
        let Some(done) = take_parked(&parked, idle) else {
            return;
        };
        give_back(&parked, done).await;
    }
}

/// Takes the parked slots `which` picks, counted as releasing; `None` (and the sweeper
/// stops) when none is parked.
fn take_parked(
    parked: &Mutex<Parked>,
    which: impl Fn(&HeldSlot, &Instant) -> bool,
) -> Option<Vec<HeldSlot>> {
    let mut p = parked.lock().unwrap();
    if p.slots.is_empty() {
        p.sweeping = false;
        return None;
    }
    let (go, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut p.slots)
        .into_iter()
        .partition(|(slot, since)| which(slot, since));
    p.slots = keep;
    p.releasing += go.len();
    Some(go.into_iter().map(|(slot, _)| slot).collect())
}

async fn give_back(parked: &Mutex<Parked>, slots: Vec<HeldSlot>) {
    let n = slots.len();
    futures::future::join_all(slots.into_iter().map(HeldSlot::release)).await;
    parked.lock().unwrap().releasing -= n;
}

impl Permit<'_> {
    /// Done with the shared slot: kept for this process's next request for a moment, then
    /// given back. If giving it back fails the slot's lease frees it later.
    pub async fn release(mut self) {
        if let Some(slot) = self.slot.take() {
            slot.finish().await;
        }
    }
}

impl Drop for Permit<'_> {
    /// A permit dropped unreleased (its task was aborted: `sluice run` canceled, a stage
    /// shut down) parks its slot, which the sweeper gives back, rather than leaving it to the
    /// lease.
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.park();
        }
    }
}

impl Limiter {
    /// Gives back every slot parked now, and says how many are still being given back.
    pub(crate) async fn give_back_parked(&self) -> usize {
        let Some(shared) = &self.shared else { return 0 };
        if let Some(slots) = take_parked(&shared.parked, |_, _| true) {
            give_back(&shared.parked, slots).await;
        }
        let p = shared.parked.lock().unwrap();
        p.slots.len() + p.releasing
    }
}

/// What identifies a limiter: a connection's id and its limits, so a changed connection gets
/// a fresh limiter rather than the one built from its old settings.
pub(crate) fn limiter_key(connection: &Connection) -> String {
    format!(
        "{}|{:?}|{:?}",
        connection.id,
        connection.concurrency_level,
        connection
            .rate_limit
            .as_ref()
            .map(|r| (r.requests_per_second, r.burst))
    )
}

impl Limiter {
    pub fn for_connection(connection: &Connection) -> Self {
        let rate = connection
            .rate_limit
            .as_ref()
            .map(|r| (r.requests_per_second, r.burst.unwrap_or(1).max(1)));
        let shared = (connection.concurrency_level.is_some() || rate.is_some()).then(|| {
            Shared::new(
                connection.id.clone(),
                connection.concurrency_level.map(|n| n.max(1)),
                rate.map(|(per_second, burst)| ((1e6 / per_second).ceil() as i64, burst)),
            )
        });
        let concurrency = connection.concurrency_level.unwrap_or(DEFAULT_CONCURRENCY);
        Limiter {
            shared,
            ..Self::new(concurrency as usize, rate)
        }
    }

    /// Process-local limits only.
    pub fn new(concurrency: usize, rate: Option<(f64, u32)>) -> Self {
        Limiter {
            in_flight: Semaphore::new(concurrency.max(1)),
            rate: rate.map(|(per_second, burst)| {
                Mutex::new(Bucket {
                    per_second,
                    burst: burst as f64,
                    tokens: burst as f64,
                    last: Instant::now(),
                })
            }),
            shared: None,
        }
    }

    /// Waits until one more request may go out: a local slot, then (if shared) a slot and a
    /// rate token in the store. `lease` bounds how long a dead holder keeps its shared slot;
    /// a shared slot's owner starts with `holder:` (this process, see `Settings::instance`).
    pub async fn acquire(
        &self,
        store: &Arc<dyn Store>,
        holder: &str,
        now: impl Fn() -> chrono::DateTime<chrono::Utc>,
        lease: Duration,
    ) -> anyhow::Result<Permit<'_>> {
        // With a shared rate the local bucket would only count this process's share twice.
        let local = self
            .local(self.shared.as_ref().is_none_or(|s| s.rate.is_none()))
            .await;
        let Some(shared) = &self.shared else {
            return Ok(Permit {
                _local: local,
                slot: None,
            });
        };
        let slot = match shared.slots {
            Some(n) => Some(shared.take_slot(store, n, holder, &now, lease).await?),
            None => None,
        };
        let permit = Permit {
            _local: local,
            slot,
        };
        if let Some((interval, burst)) = shared.rate {
            if let Err(e) = shared
                .take_rate_token(store.as_ref(), interval, burst)
                .await
            {
                permit.release().await;
                return Err(e);
            }
        }
        Ok(permit)
    }

    /// The process-local layer: a rate token (when `with_rate`), then an in-flight slot.
    pub(crate) async fn local(&self, with_rate: bool) -> SemaphorePermit<'_> {
        if with_rate {
            self.local_rate_token().await;
        }
        self.in_flight
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    async fn local_rate_token(&self) {
        let Some(bucket) = &self.rate else { return };
        loop {
            let wait = {
                let mut b = bucket.lock().unwrap();
                let now = Instant::now();
                b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * b.per_second)
                    .min(b.burst);
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    None
                } else {
                    Some(Duration::from_secs_f64((1.0 - b.tokens) / b.per_second))
                }
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }
}

/// Rate tokens are taken from the store in blocks sized to this process's demand, at most
/// this many (see [`Tokens::next_block`]).
const TOKEN_BLOCK: usize = 64;
/// A block reaches at most this far past the theoretical arrival time it starts from, so a
/// process's block keeps other processes waiting no longer than that.
const TOKEN_HORIZON_US: i64 = 1_000_000;

/// This process's view of a connection's shared rate state.
#[derive(Default)]
struct Tokens {
    /// The stored theoretical arrival time as this process last read or wrote it (the
    /// expected value of the next compare-and-set); `None`: read it first.
    seen: Option<Option<serde_json::Value>>,
    /// Tokens of the last block not used yet, soonest first.
    spare: std::collections::VecDeque<Slot>,
    /// The size of the last block taken, and how many of its tokens were dropped unused.
    last_block: usize,
    dropped: usize,
    /// When a compare-and-set of this process last lost to another process's.
    lost: Option<Instant>,
}

/// After a compare-and-set lost to another process, blocks are sized to what this process
/// used of the last one for this long; otherwise it is alone on the connection's rate.
const CONTENDED: Duration = Duration::from_secs(10);

impl Tokens {
    /// How many tokens the next block asks for: at least one per request waiting now; twice
    /// the last block when every token of it was used (requests keep coming as fast as the
    /// rate lets them, though few wait at any one moment, since each holds a token of the
    /// block ahead), else, while another process takes tokens too, as many as were used. So
    /// a busy process makes one compare-and-set per up to [`TOKEN_BLOCK`] requests, and one
    /// whose demand falls drops few tokens another process could use. A process alone on
    /// the rate (no compare-and-set lost for [`CONTENDED`]) does not shrink its blocks for
    /// tokens it dropped: nobody else wanted them, and shrinking to what was used made
    /// blocks of a process sending a little below the rate dwindle to one or two tokens
    /// (measured on the cost bench: a compare-and-set per 5.5 requests, now one per ~40).
    /// A process that comes later still waits no longer than the horizon for its turn.
    fn next_block(&self, waiting: usize, horizon: usize) -> usize {
        let alone = self.lost.is_none_or(|t| t.elapsed() >= CONTENDED);
        let demand = match self.dropped {
            0 => self.last_block * 2,
            _ if alone => self.last_block * 2,
            dropped => self.last_block.saturating_sub(dropped),
        };
        waiting.max(demand).min(horizon).clamp(1, TOKEN_BLOCK)
    }
}

/// One token of a block: a time slot one interval after the one before it. A request may go
/// from its theoretical time less the burst tolerance (as GCRA lets a request go); a token
/// no request took by its time plus one interval (1 ms at least) is dropped, so tokens are
/// never saved up for a burst later. Times in µs of wall time.
#[derive(Clone, Copy)]
struct Slot {
    from: i64,
    until: i64,
}

impl Shared {
    fn new(connection_id: String, slots: Option<u32>, rate: Option<(i64, u32)>) -> Self {
        Shared {
            connection_id,
            slots,
            rate,
            parked: Arc::default(),
            tokens: tokio::sync::Mutex::default(),
            token_waiters: AtomicUsize::new(0),
        }
    }

    /// A parked slot of this process (held for less than [`KEEP_SLOT`]), else one of `n`
    /// leased slots from the store, polling with capped, jittered backoff while all are held.
    async fn take_slot(
        &self,
        store: &Arc<dyn Store>,
        n: u32,
        holder: &str,
        now: &impl Fn() -> chrono::DateTime<chrono::Utc>,
        lease: Duration,
    ) -> anyhow::Result<HeldSlot> {
        if let Some(slot) = self.unpark() {
            return Ok(slot);
        }
        let owner = format!("{holder}:{}", sluice_model::new_id());
        let group = format!("limit:{}", self.connection_id);
        let mut delay = Duration::from_millis(10);
        loop {
            if let Some(index) = store.take_slot(&group, n, &owner, now(), lease).await? {
                return Ok(HeldSlot {
                    store: store.clone(),
                    group,
                    index,
                    owner,
                    taken: Instant::now(),
                    parked: self.parked.clone(),
                });
            }
            let jittered = delay.mul_f64(rand::rng().random_range(0.5..1.0));
            tokio::time::sleep(jittered).await;
            // A request of this process may have finished meanwhile and parked its slot.
            if let Some(slot) = self.unpark() {
                return Ok(slot);
            }
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    fn unpark(&self) -> Option<HeldSlot> {
        let mut p = self.parked.lock().unwrap();
        let at = p
            .slots
            .iter()
            .rposition(|(slot, _)| slot.taken.elapsed() < KEEP_SLOT)?;
        Some(p.slots.swap_remove(at).0)
    }

    /// GCRA: a request conforms when it is no more than `burst` intervals ahead of the
    /// theoretical arrival time; taking it moves that time one interval on. Callers of this
    /// process take turns; the one whose turn it is takes a block of tokens sized to the
    /// demand ([`Tokens::next_block`]) with one compare-and-set (the first conforming now,
    /// each next one an interval later), and those behind it take the rest, each waiting for
    /// its slot.
    async fn take_rate_token(
        &self,
        store: &dyn Store,
        interval_us: i64,
        burst: u32,
    ) -> anyhow::Result<()> {
        self.token_waiters.fetch_add(1, Ordering::SeqCst);
        let mut tokens = self.tokens.lock().await;
        let wanted = self.token_waiters.fetch_sub(1, Ordering::SeqCst);
        let key = format!("limit:{}:rate", self.connection_id);
        let tolerance = interval_us * burst as i64;
        // Wall time, not the injected clock: the waits are real.
        let wall = || chrono::Utc::now().timestamp_micros();
        let slot = loop {
            let now = wall();
            while tokens.spare.front().is_some_and(|s| s.until < now) {
                tokens.spare.pop_front();
                tokens.dropped += 1;
            }
            if let Some(slot) = tokens.spare.pop_front() {
                break slot;
            }
            let stored = match tokens.seen.take() {
                Some(seen) => seen,
                None => store.get_state(&key).await?,
            };
            let tat = stored
                .as_ref()
                .and_then(|v| v.as_i64())
                .unwrap_or(now)
                .max(now);
            let ahead = tat + interval_us - tolerance - now;
            if ahead > 0 {
                tokens.seen = Some(stored);
                tokio::time::sleep(Duration::from_micros(ahead as u64)).await;
                continue;
            }
            let horizon = (TOKEN_HORIZON_US / interval_us).max(1) as usize;
            let block = tokens.next_block(wanted, horizon);
            let next = json!(tat + interval_us * block as i64);
            if store.swap_state(&key, stored.as_ref(), &next).await? {
                tokens.seen = Some(Some(next));
                (tokens.last_block, tokens.dropped) = (block, 0);
                tokens.spare = (1..=block as i64)
                    .map(|i| {
                        let at = tat + i * interval_us;
                        Slot {
                            from: at - tolerance,
                            until: at + interval_us.max(1000),
                        }
                    })
                    .collect();
                continue;
            }
            // Another process took tokens since we read: read again.
            tokens.lost = Some(Instant::now());
        };
        drop(tokens);
        let wait = slot.from - wall();
        if wait > 0 {
            tokio::time::sleep(Duration::from_micros(wait as u64)).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that lost a compare-and-set a moment ago.
    fn after(last_block: usize, dropped: usize) -> Tokens {
        Tokens {
            last_block,
            dropped,
            lost: Some(Instant::now()),
            ..Tokens::default()
        }
    }

    #[test]
    fn a_process_alone_on_the_rate_keeps_its_blocks_when_it_drops_tokens() {
        let alone = |last_block, dropped| Tokens {
            last_block,
            dropped,
            ..Tokens::default()
        };
        assert_eq!(alone(32, 30).next_block(1, 100), TOKEN_BLOCK);
        assert_eq!(alone(2, 1).next_block(1, 100), 4);
        assert_eq!(
            alone(32, 30).next_block(1, 20),
            20,
            "a second's worth at most"
        );
        let long_ago = Tokens {
            lost: Instant::now().checked_sub(CONTENDED),
            ..alone(32, 30)
        };
        assert_eq!(long_ago.next_block(1, 100), TOKEN_BLOCK, "contention ended");
        assert_eq!(
            after(32, 30).next_block(1, 100),
            2,
            "contended: what was used"
        );
    }

    #[test]
    fn a_block_grows_while_all_of_it_is_used_and_shrinks_to_what_was() {
        assert_eq!(after(0, 0).next_block(1, 100), 1, "the first: the waiters");
        assert_eq!(after(1, 0).next_block(1, 100), 2);
        assert_eq!(after(16, 0).next_block(1, 100), 32);
        assert_eq!(after(48, 0).next_block(1, 100), TOKEN_BLOCK, "capped");
        assert_eq!(
            after(48, 0).next_block(1, 20),
            20,
            "a second's worth at most"
        );
        assert_eq!(
            after(32, 30).next_block(1, 100),
            2,
            "demand fell: what was used"
        );
        assert_eq!(
            after(32, 32).next_block(5, 100),
            5,
            "never fewer than wait now"
        );
    }
}
