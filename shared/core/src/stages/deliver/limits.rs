//! Per-connection limits: at most N requests in flight, at most R requests a second.
//!
//! Two layers. The process-local one (a semaphore and a token bucket) always applies and is
//! free. When the connection sets `concurrencyLevel` or `rateLimit` itself, the limits are also
//! kept in the store, so every process sharing it (each Lambda instance, or two `sluice`
//! processes on one database file) counts against the same numbers:
//! - concurrency: N leased slots (the store's slot group `limit:<connection>`), one held for
//!   each request; a process that dies holding one frees it when the lease runs out (or at
//!   once, when the local runtime that takes over its work frees its holder's slots). Waiters
//!   poll with one read of the group, writing only to take a slot they saw free;
//! - rate: GCRA (a token bucket kept as one number, the theoretical arrival time), advanced
//!   with the store's compare-and-set `swap_state`.

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
}

impl Permit<'_> {
    /// Frees the shared slot. If that fails the slot's lease frees it later.
    pub async fn release(mut self) {
        if let Some(slot) = self.slot.take() {
            slot.release().await;
        }
    }
}

/// Slot releases running in the background (from dropped permits).
static RELEASES_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

impl Drop for Permit<'_> {
    /// A permit dropped unreleased (its task was aborted: `sluice run` canceled, a stage
    /// shut down) frees its slot in the background rather than leaving it to the lease.
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                RELEASES_IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
                handle.spawn(async move {
                    slot.release().await;
                    RELEASES_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    }
}

/// Waits (up to `max`) until the background slot releases of dropped permits are done: a
/// process about to exit calls this so its slots are free for the next one at once.
pub async fn settle_slot_releases(max: Duration) {
    let deadline = Instant::now() + max;
    while RELEASES_IN_FLIGHT.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
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
        let shared = (connection.concurrency_level.is_some() || rate.is_some()).then(|| Shared {
            connection_id: connection.id.clone(),
            slots: connection.concurrency_level.map(|n| n.max(1)),
            rate: rate.map(|(per_second, burst)| ((1e6 / per_second).ceil() as i64, burst)),
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

impl Shared {
    /// Takes one of `n` leased slots, polling with capped, jittered backoff while all are held.
    async fn take_slot(
        &self,
        store: &Arc<dyn Store>,
        n: u32,
        holder: &str,
        now: &impl Fn() -> chrono::DateTime<chrono::Utc>,
        lease: Duration,
    ) -> anyhow::Result<HeldSlot> {
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
                });
            }
            let jittered = delay.mul_f64(rand::rng().random_range(0.5..1.0));
            tokio::time::sleep(jittered).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// GCRA: a request conforms when it is no more than `burst` intervals ahead of the
    /// theoretical arrival time; taking it moves that time one interval on.
    async fn take_rate_token(
        &self,
        store: &dyn Store,
        interval_us: i64,
        burst: u32,
    ) -> anyhow::Result<()> {
        let key = format!("limit:{}:rate", self.connection_id);
        let tolerance = interval_us * burst as i64;
        loop {
            // Wall time, not the injected clock: the wait below is real.
            let now = chrono::Utc::now().timestamp_micros();
            let stored = store.get_state(&key).await?;
            let tat = stored
                .as_ref()
                .and_then(|v| v.as_i64())
                .unwrap_or(now)
                .max(now);
            let next = tat + interval_us;
            let ahead = next - now - tolerance;
            if ahead > 0 {
                tokio::time::sleep(Duration::from_micros(ahead as u64)).await;
                continue;
            }
            if store
                .swap_state(&key, stored.as_ref(), &json!(next))
                .await?
            {
                return Ok(());
            }
            // Another process took a token between our read and write: read again.
        }
    }
}
