//! deliver: sends rendered requests over the connection (auth, timeout, retries with backoff
//! and jitter honouring Retry-After, rate and concurrency limits) and keeps each reply; then
//! applies the step's responseMapping (`stages::extract`, in the same invocation) and hands
//! the page to evaluate.
//!
//! Idempotency: each record's send is claimed in the store's ledger first
//! (`deliver:{job}:{page}:{processor}:{record}`, from [`Page::send_id`]); a redelivered page
//! reuses the recorded reply, and a claim left in flight by a crashed process is never resent
//! blindly. The same id goes to the target as the import's `Idempotency-Key` (added by
//! translate), so a target that honours it acts once on a record sent twice. A POST or PATCH
//! whose attempt may have reached the target is sent again only if the import allows it
//! ([`Ambiguous`]).

mod alerts;
mod auth;
mod batch;
pub(crate) mod bounded;
mod callbacks;
// The HTTP client (reqwest) only with sluice-core's `http` feature, asked for by the functions
// that send (trigger, deliver) and the local runtime; the others compile a stub that fails
// every request saying so, and link no HTTP client (see ARCHITECTURE.md, "On AWS").
#[cfg(feature = "http")]
mod client;
#[cfg(not(feature = "http"))]
#[path = "no_client.rs"]
mod client;
// Without a client, what only the client reads or makes (a request's parts, the address
// policy, most failures) goes unused: that is what such a build is for.
mod authorize;
mod custom_refresh;
#[cfg_attr(not(feature = "http"), allow(dead_code))]
mod guard;
mod ledger;
mod limits;
mod oauth;
mod retry;
mod send;
#[cfg(all(test, feature = "http"))]
mod tests;
#[cfg_attr(not(feature = "http"), allow(dead_code))]
mod transport;

pub use authorize::{authorization_url, complete_authorization, Authorization, STATE_LIFETIME};
pub use retry::{backoff_delay, parse_retry_after, Ambiguous};

use super::processor::Processor;
use crate::budget;
use crate::ports::{LedgerState, Measurement};
use crate::{Result, Sluice, Stage};
use client::GuardedClient;
use futures::StreamExt;
use guard::AddressPolicy;
use send::{SendError, Sender};
use serde_json::json;
use sluice_model::{
    Connection, Failure, FailureCode, NameValue, Page, RecordState, RenderedRequest, Reply, Send,
    StageMessage,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use limits::DEFAULT_CONCURRENCY;
const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// HTTP clients, OAuth2 token cache, per-connection limiters. Process-wide: concurrent runs in
/// one process share a connection's limiter, and limits the connection sets itself are also
/// kept in the store, so every process (each Lambda instance) shares them (see `limits`).
#[derive(Default)]
pub struct HttpState {
    /// One client (and connection pool) per address policy: it refuses what the policy does.
    clients: Mutex<HashMap<AddressPolicy, GuardedClient>>,
    pub(crate) tokens: oauth::TokenCache,
    limiters: Mutex<HashMap<String, Arc<limits::Limiter>>>,
}

impl HttpState {
    /// The client for requests under `policy` (see [`GuardedClient`]).
    pub(crate) fn client(&self, policy: AddressPolicy) -> GuardedClient {
        let mut clients = self.clients.lock().unwrap();
        clients
            .entry(policy)
            .or_insert_with(|| GuardedClient::new(policy))
            .clone()
    }

    /// See [`settle_slot_releases`].
    async fn settle_slot_releases(&self, max: Duration) {
        let deadline = Instant::now() + max;
        loop {
            let limiters: Vec<_> = self.limiters.lock().unwrap().values().cloned().collect();
            let mut pending = 0;
            for limiter in limiters {
                pending += limiter.give_back_parked().await;
            }
            if pending == 0 || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn limiter(&self, connection: &Connection) -> Arc<limits::Limiter> {
        let mut map = self.limiters.lock().unwrap();
        map.entry(limits::limiter_key(connection))
            .or_insert_with(|| Arc::new(limits::Limiter::for_connection(connection)))
            .clone()
    }
}

/// Waits (up to `max`) until the connection slots `sluice` holds between requests (and those
/// of deliveries cut off) are given back: a process about to exit calls this so its slots
/// are free for the next one at once.
pub async fn settle_slot_releases(sluice: &Sluice, max: Duration) {
    sluice.caches.http.settle_slot_releases(max).await
}

/// The deliver stage's entry point (what its Lambda function runs): pages to send, and
/// closed jobs to post to their flow's after-process callbacks.
pub const HANDLER: super::StageHandler = super::StageHandler::pages_and_closed_jobs(
    Stage::Deliver,
    |sluice, page| Box::pin(handle(sluice, page)),
    |sluice, job| Box::pin(callbacks::after_process(sluice, job)),
);

pub async fn handle(sluice: &Sluice, mut page: Page) -> Result<()> {
    let p = Processor::load(sluice, &page.flow_id, page.processor_index).await?;
    let connection = &p.connection;
    if connection.http.is_none() {
        for r in page.records.iter_mut().filter(|r| r.is_active()) {
            r.fail(
                FailureCode::Config,
                format!("connection {} is not an http connection", connection.id),
            );
        }
        return forward(sluice, &p, page).await;
    }
    let ambiguous = p.ambiguous_failures();
    let needs = bounded::Needs::of(sluice, &p);
    let limiter = sluice.caches.http.limiter(connection);
    let refs = p.definition_headers();
    let concurrency = connection
        .concurrency_level
        .unwrap_or(DEFAULT_CONCURRENCY)
        .max(1) as usize;

    if !page.batches.is_empty() {
        let route = Route {
            connection,
            refs,
            limiter: &limiter,
            ambiguous,
        };
        let deferred = deliver_batches(sluice, &p, &mut page, route, &needs, concurrency).await?;
        if deferred > 0 {
            return continue_later(sluice, page, deferred).await;
        }
    } else {
        // Records that already have a reply were sent by an earlier pass over this page.
        let work: Vec<(usize, RenderedRequest, String)> = page
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_active())
            .filter_map(|(i, r)| {
                r.exchange
                    .as_ref()
                    .filter(|e| e.reply.is_none())
                    .map(|e| (i, e.request.clone(), r.key.clone()))
            })
            .collect();
        let lock = LockKeeper::new(&page);
        let chunks: Vec<(String, usize)> = work.iter().map(|(i, _, k)| (k.clone(), *i)).collect();
        let pass = ledger::Pass::new(sluice, &page, &chunks);
        let results: Vec<(usize, Result<Sent>)> = futures::stream::iter(work)
            .map(|(i, req, record)| {
                let (limiter, lock, flow, needs, pass, page) = (
                    limiter.clone(),
                    &lock,
                    p.flow.id.as_str(),
                    &needs,
                    &pass,
                    &page,
                );
                async move {
                    let route = Route {
                        connection,
                        refs,
                        limiter: &limiter,
                        ambiguous,
                    };
                    let key = ledger_key(page, Send::Record(&record));
                    let claim = ledger::Claim::InChunk {
                        pass,
                        record: &record,
                    };
                    let outcome = deliver_once(sluice, flow, route, needs, &claim, &key, req).await;
                    lock.keep(sluice).await;
                    (i, outcome)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        drop(pass);
        let mut deferred = 0;
        for (i, result) in results {
            let r = &mut page.records[i];
            match result? {
                Sent::Done(Ok(reply)) => {
                    if let Some(e) = r.exchange.as_mut() {
                        e.reply = Some(reply);
                    }
                }
                Sent::Done(Err(f)) => r.fail(f.code, f.message),
                Sent::JobCanceled => r.state = not_sent(&page.job_id),
                Sent::Later => deferred += 1,
            }
        }
        if deferred > 0 {
            return continue_later(sluice, page, deferred).await;
        }
        callbacks::notify(sluice, &p, &page).await;
    }
    forward(sluice, &p, page).await
}

/// The ledger key of one send: the page's [`Page::send_id`], which the idempotency key is too.
fn ledger_key(page: &Page, send: Send<'_>) -> String {
    crate::ports::ledger_key(Stage::Deliver, &page.send_id(send))
}

/// Sends the page's batches not sent yet, up to `concurrency` at once, each once (see
/// [`batch`]), and settles each batch's records from its reply. How many were deferred
/// (too little time left in the invocation).
async fn deliver_batches(
    sluice: &Sluice,
    p: &Processor,
    page: &mut Page,
    route: Route<'_>,
    needs: &bounded::Needs,
    concurrency: usize,
) -> Result<usize> {
    let active: HashSet<&str> = page
        .records
        .iter()
        .filter(|r| r.is_active())
        .map(|r| r.key.as_str())
        .collect();
    let work: Vec<(usize, RenderedRequest, String)> = page
        .batches
        .iter()
        .enumerate()
        .filter(|(_, b)| b.replies.is_none())
        .filter(|(_, b)| b.record_keys.iter().any(|k| active.contains(k.as_str())))
        .map(|(i, b)| {
            let key = ledger_key(page, Send::Batch(&b.record_keys[0]));
            (i, b.request.clone(), key)
        })
        .collect();
    // The reply is split before it is bounded: kept whole until then.
    let whole = bounded::Needs::whole();
    let lock = LockKeeper::new(page);
    let (flow, job_id) = (p.flow.id.as_str(), page.job_id.as_str());
    let results: Vec<(usize, String, Result<Sent>)> = futures::stream::iter(work)
        .map(|(i, request, key)| {
            let (whole, lock) = (&whole, &lock);
            async move {
                let claim = ledger::Claim::One { job_id, key: &key };
                let sent = deliver_once(sluice, flow, route, whole, &claim, &key, request).await;
                lock.keep(sluice).await;
                (i, key, sent)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let response = p.import_response();
    let job = page.job_id.clone();
    let mut deferred = 0;
    for (i, key, result) in results {
        let carried: HashSet<String> = page.batches[i].record_keys.iter().cloned().collect();
        let each = |page: &mut Page, state: &dyn Fn(&mut sluice_model::PageRecord)| {
            for r in page.records.iter_mut().filter(|r| r.is_active()) {
                if carried.contains(&r.key) {
                    state(r);
                }
            }
        };
        match result? {
            Sent::Done(Ok(reply)) => {
                batch::settle(page, i, reply, response);
                bounded::bound_batch(sluice, needs, &key, &mut page.batches[i]).await;
            }
            Sent::Done(Err(f)) => each(page, &|r| r.fail(f.code, f.message.clone())),
            Sent::JobCanceled => each(page, &|r| r.state = not_sent(&job)),
            Sent::Later => deferred += 1,
        }
    }
    Ok(deferred)
}

/// What one send goes over: the connection, the definition's own headers, the connection's
/// limiter, and whether ambiguous failures are retried.
#[derive(Clone, Copy)]
pub(crate) struct Route<'a> {
    pub connection: &'a Connection,
    pub refs: &'a [NameValue],
    pub limiter: &'a limits::Limiter,
    pub ambiguous: Ambiguous,
}

/// Renews the job's run lock while a slow page is delivered (a tight rateLimit can keep one
/// page here for longer than the lease), every quarter lease at most. Evaluate renews it per
/// page; without this a lapsed lease would let the next run close this job as abandoned.
struct LockKeeper {
    flow_id: String,
    job_id: String,
    last: Mutex<Instant>,
}

impl LockKeeper {
    fn new(page: &Page) -> Self {
        LockKeeper {
            flow_id: page.flow_id.clone(),
            job_id: page.job_id.clone(),
            last: Mutex::new(Instant::now()),
        }
    }

    async fn keep(&self, sluice: &Sluice) {
        {
            let mut last = self.last.lock().unwrap();
            if last.elapsed() < sluice.settings.lock_lease / 4 {
                return;
            }
            *last = Instant::now();
        }
        let (now, lease) = (sluice.clock.now(), sluice.settings.lock_lease);
        if let Err(e) = sluice
            .store
            .renew_lock(&self.flow_id, &self.job_id, now, lease)
            .await
        {
            tracing::warn!(job = %self.job_id, "could not renew the run lock: {e:#}");
        }
    }
}

/// The invocation is running out of time: the page goes back on the deliver queue with what
/// this pass did (replies and failures recorded in it), and the next pass sends the rest.
async fn continue_later(sluice: &Sluice, page: Page, deferred: usize) -> Result<()> {
    tracing::info!(
        deferred,
        "deliver ran short of time; the rest of the page continues in the next invocation"
    );
    sluice.measure(Measurement::Continued {
        flow: page.flow_id.clone(),
        stage: Stage::Deliver,
    });
    sluice
        .queue
        .send(Stage::Deliver, StageMessage::Page(page))
        .await?;
    Ok(())
}

/// The page, its responseMapping applied, on to evaluate. Extract runs here, in deliver's
/// invocation, rather than as a hop of its own: it is a plain function over the page (no
/// I/O), and its hop cost a queue message (two or three billed SQS requests for a page of
/// replies), an invocation and the definitions read again. The extract stage still takes a
/// page sent to it (one queued before this change).
async fn forward(sluice: &Sluice, p: &Processor, mut page: Page) -> Result<()> {
    super::extract::extract(&mut page, p);
    sluice
        .queue
        .send(Stage::Evaluate, StageMessage::Page(page))
        .await?;
    Ok(())
}

/// A reply, or a record-level failure.
pub(crate) type Outcome = std::result::Result<Reply, Failure>;

/// What became of one send.
// Sent lives for one record's turn and is matched at once: boxing the reply would cost an
// allocation per record for nothing.
#[allow(clippy::large_enum_variant)]
enum Sent {
    /// Sent now or before: the reply, or the record-level failure.
    Done(Outcome),
    /// Too little time left in the invocation: nothing claimed or sent.
    Later,
    /// The job was canceled: not sent, and never will be.
    JobCanceled,
}

/// A record a canceled job did not send: ignored (so the job's counts still cover every
/// record read), saying why.
pub(crate) fn not_sent(job_id: &str) -> RecordState {
    RecordState::Ignored {
        reason: format!("not sent: job {job_id} was canceled before this record's turn"),
    }
}

/// Sends one request (a record's, or a page's batch) at most once, within the invocation's
/// time: `Later` when too little time is left to send it (not sent, and given back if its
/// chunk was claimed; the page continues in the next invocation). The invocation's first
/// send always goes, so every pass makes progress. Its turn under the connection's limits
/// comes before the ledger claim, so a record still waiting for its turn when time runs out
/// is not claimed by it. `key` names the send (its blobs); a request sent is measured under
/// `flow`.
async fn deliver_once(
    sluice: &Sluice,
    flow: &str,
    route: Route<'_>,
    needs: &bounded::Needs,
    claim: &ledger::Claim<'_>,
    key: &str,
    request: RenderedRequest,
) -> Result<Sent> {
    let Route {
        connection,
        limiter,
        ..
    } = route;
    let needed = time_to_send(connection);
    let Some(first) = budget::start(needed) else {
        claim.finish(sluice, None).await?;
        return Ok(Sent::Later);
    };
    let permit = match take_turn(sluice, connection, limiter).await {
        Ok(permit) => permit,
        Err(failure) => {
            claim.finish(sluice, None).await?;
            return Ok(Sent::Done(Err(failure)));
        }
    };
    // Waiting for the turn took time: check again, unless this is the one send that must go.
    if !first && budget::running_out(needed) {
        permit.release().await;
        claim.finish(sluice, None).await?;
        return Ok(Sent::Later);
    }
    let claimed = match claim.take(sluice).await {
        Ok(LedgerState::Done(v)) => bounded::recorded_outcome(sluice, v)
            .await
            .map(LedgerState::Done),
        other => other,
    };
    let earlier = match claimed {
        Ok(LedgerState::Claimed) => None,
        Ok(LedgerState::JobCanceled) => {
            permit.release().await;
            claim.finish(sluice, None).await?;
            return Ok(Sent::JobCanceled);
        }
        Ok(LedgerState::Done(v)) => Some(match v.get("reply") {
            Some(reply) => serde_json::from_value(reply.clone()).map_err(|e| Failure::new(FailureCode::Ledger, e.to_string())),
            // The code recorded with the failure (older entries have none: `network`), so a
            // redelivered page keeps saying whether the send may have arrived.
            None => Err(Failure::new(
                serde_json::from_value(v["code"].clone()).unwrap_or(FailureCode::Network),
                v["error"].as_str().unwrap_or("failed before"),
            )),
        }),
        Ok(LedgerState::InFlight) => Some(Err(Failure::new(FailureCode::DeliveryUnknown,
            "an earlier attempt may have delivered this record and did not finish; it was not sent again to avoid a duplicate; retry it if the target did not receive it",
        ))),
        Err(e) => {
            permit.release().await;
            return Err(e);
        }
    };
    if let Some(outcome) = earlier {
        permit.release().await;
        claim.finish(sluice, None).await?;
        return Ok(Sent::Done(outcome));
    }
    let outcome = match send_with_retries(sluice, route, Some(permit), &request).await {
        Ok(reply) => Ok(bounded::bound(sluice, needs, key, reply).await),
        failed => failed,
    };
    let record = match &outcome {
        Ok(reply) => {
            sluice.measure(Measurement::Delivery {
                flow: flow.to_string(),
                latency: Duration::from_millis(reply.elapsed_ms),
            });
            json!({"reply": bounded::for_ledger(needs, reply)})
        }
        Err(f) => json!({"error": f.message, "code": f.code}),
    };
    let record = bounded::ledger_outcome(sluice, key, record, |n| claim.fits(sluice, n)).await?;
    claim.finish(sluice, Some(&record)).await?;
    Ok(Sent::Done(outcome))
}

/// The time a request needs once started: its timeout, plus a margin for the ledger writes,
/// re-queueing the page and answering the invocation. Less than this left in the invocation
/// and the request is not started.
/// The sample reply of a preview as the reply of every batch of the page, split as a
/// delivered reply is.
pub(crate) fn settle_batches(page: &mut Page, p: &Processor, reply: &Reply) {
    for at in 0..page.batches.len() {
        batch::settle(page, at, reply.clone(), p.import_response());
    }
}

pub(crate) fn time_to_send(connection: &Connection) -> Duration {
    request_timeout(connection) + Duration::from_secs(3)
}

/// The request as deliver would send it for this step (its auth, the connection's and the
/// import's headers, the content type), credentials masked, without sending it: a preview.
pub(crate) async fn as_it_would_go(
    sluice: &Sluice,
    p: &Processor,
    request: &RenderedRequest,
) -> std::result::Result<RenderedRequest, String> {
    let out = send::Outbound::new(sluice, &p.connection, p.definition_headers())?;
    out.masked(request).await
}

fn request_timeout(connection: &Connection) -> Duration {
    let ms = connection
        .http
        .as_ref()
        .and_then(|h| h.request_timeout_ms)
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    Duration::from_millis(ms)
}

/// Waits for a turn under the connection's limits (a local slot, and the shared slot and
/// rate token when the connection sets limits).
async fn take_turn<'l>(
    sluice: &Sluice,
    connection: &Connection,
    limiter: &'l limits::Limiter,
) -> std::result::Result<limits::Permit<'l>, Failure> {
    let lease = limits::slot_lease(request_timeout(connection));
    limiter
        .acquire(
            &sluice.store,
            &sluice.settings.instance,
            || sluice.clock.now(),
            lease,
        )
        .await
        .map_err(|e| {
            Failure::new(
                FailureCode::Limits,
                format!(
                    "could not take a turn under connection {}'s limits: {e:#}",
                    connection.id
                ),
            )
        })
}

/// The OAuth2 access token requests over `connection` carry: this process's cached one, else
/// a new one from its token endpoint (a refresh token the server rotated is stored). For
/// checking a connection's set-up, and for tests of several processes refreshing at once.
pub async fn access_token(sluice: &Sluice, connection: &Connection) -> Result<String> {
    oauth::token(sluice, connection).await
}

/// Sends one request over `connection` with its auth, limits, timeout and retries, without
/// the ledger: for reads (http exports), where sending again is harmless. `refs` are the
/// export's own headers (their `secret:NAME` values are resolved here).
pub(crate) async fn send_request(
    sluice: &Sluice,
    connection: &Connection,
    refs: &[NameValue],
    request: &RenderedRequest,
) -> Outcome {
    let limiter = sluice.caches.http.limiter(connection);
    let route = Route {
        connection,
        refs,
        limiter: &limiter,
        ambiguous: Ambiguous::Retry,
    };
    send_with_retries(sluice, route, None, request).await
}

/// Sends with the connection's auth, timeout and retry policy. `first` is a turn already
/// taken for the first attempt; each later attempt takes its own.
pub(crate) async fn send_with_retries(
    sluice: &Sluice,
    route: Route<'_>,
    mut first: Option<limits::Permit<'_>>,
    request: &RenderedRequest,
) -> Outcome {
    let connection = route.connection;
    let sender = Sender::new(sluice, connection, route.refs, request_timeout(connection))
        .map_err(|e| Failure::new(FailureCode::Config, e))?;
    let policy = connection
        .http
        .as_ref()
        .and_then(|h| h.retry.clone())
        .unwrap_or_default();
    let started = Instant::now();
    let mut attempt = 0u32;
    let mut refreshed_token = false;
    loop {
        attempt += 1;
        let permit = match first.take() {
            Some(permit) => permit,
            None => take_turn(sluice, connection, route.limiter).await?,
        };
        let sent = Instant::now();
        let result = sender.send(request).await;
        permit.release().await;
        if matches!(&result, Ok(reply) if reply.status == 401)
            && !refreshed_token
            && auth::fetches_tokens(connection)
        {
            // A token revoked early: fetch a fresh one once, without spending an attempt.
            // A 401 means the target did not act on the request, so sending it again under
            // the same ledger claim cannot post the record twice.
            sluice
                .caches
                .http
                .tokens
                .forget_if_older(&connection.id, sent);
            refreshed_token = true;
            attempt -= 1;
            continue;
        }
        if let (Some(hint), true) = (
            retry::again(&result, route.ambiguous),
            attempt < policy.max_attempts,
        ) {
            tokio::time::sleep(backoff_delay(&policy, attempt, hint)).await;
            continue;
        }
        let tries = format!(
            "after {attempt} attempt{}",
            if attempt == 1 { "" } else { "s" }
        );
        return match result {
            Ok(mut reply) => {
                reply.attempts = attempt;
                reply.elapsed_ms = started.elapsed().as_millis() as u64;
                Ok(reply)
            }
            Err(SendError::Refused(m)) => Err(Failure::new(FailureCode::AddressRefused, m)),
            Err(SendError::Ambiguous(m)) if route.ambiguous == Ambiguous::Fail => Err(Failure::new(FailureCode::MaybeDelivered,
                format!("{m} ({tries}; the target may have acted on it, so it was not sent again: the import's http.retryAmbiguous allows that)"),
            )),
            Err(SendError::NotSent(m) | SendError::Ambiguous(m) | SendError::Fatal(m)) => {
                Err(Failure::new(FailureCode::Network, format!("{m} ({tries})")))
            }
        };
    }
}
