//! deliver: sends rendered requests over the connection (auth, timeout, retries with backoff
//! and jitter honouring Retry-After, rate and concurrency limits) and keeps each reply.
//!
//! Idempotency: each record's send is claimed in the store's ledger first
//! (`deliver:{job}:{page}:{processor}:{record}`); a redelivered page reuses the recorded reply,
//! and a claim left in flight by a crashed process is never resent blindly.

mod auth;
mod guard;
mod limits;
mod retry;
#[cfg(test)]
mod tests;

pub use limits::settle_slot_releases;
pub use retry::{backoff_delay, parse_retry_after};

use super::processor::Processor;
use crate::budget;
use crate::ports::secrets::resolve_headers;
use crate::ports::LedgerState;
use crate::{Result, Sluice, Stage};
use futures::StreamExt;
use serde_json::{json, Map, Value};
use sluice_model::{Connection, Flow, NameValue, Page, RenderedRequest, Reply, StageMessage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use limits::DEFAULT_CONCURRENCY;
const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// HTTP client, OAuth2 token cache, per-connection limiters. Process-wide: concurrent runs in
/// one process share a connection's limiter, and limits the connection sets itself are also
/// kept in the store, so every process (each Lambda instance) shares them (see `limits`).
#[derive(Default)]
pub struct HttpState {
    client: OnceLock<reqwest::Client>,
    pub(crate) tokens: auth::TokenCache,
    limiters: Mutex<HashMap<String, Arc<limits::Limiter>>>,
}

impl HttpState {
    pub(crate) fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::limited(5))
                .build()
                .expect("an HTTP client with default TLS builds")
        })
    }

    fn limiter(&self, connection: &Connection) -> Arc<limits::Limiter> {
        let mut map = self.limiters.lock().unwrap();
        map.entry(limits::limiter_key(connection))
            .or_insert_with(|| Arc::new(limits::Limiter::for_connection(connection)))
            .clone()
    }
}

pub async fn handle(sluice: &Sluice, mut page: Page) -> Result<()> {
    let p = Processor::load(sluice, &page.flow_id, page.processor_index).await?;
    let connection = &p.connection;
    if connection.http.is_none() {
        for r in page.records.iter_mut().filter(|r| r.is_active()) {
            r.fail(
                "config",
                format!("connection {} is not an http connection", connection.id),
            );
        }
        return forward(sluice, page).await;
    }
    let key_base = format!(
        "deliver:{}:{}:{}",
        page.job_id, page.page_id, page.processor_index
    );
    let limiter = sluice.caches.http.limiter(connection);
    let refs = p.definition_headers();
    let concurrency = connection
        .concurrency_level
        .unwrap_or(DEFAULT_CONCURRENCY)
        .max(1) as usize;

    if let Some(mut batch) = page.batch.take() {
        let key = format!("{key_base}:batch");
        let outcome = deliver_once(
            sluice,
            connection,
            refs,
            &limiter,
            &key,
            batch.request.clone(),
        )
        .await?;
        let deferred = outcome.is_none();
        match outcome {
            Some(Ok(reply)) => batch.reply = Some(reply),
            Some(Err((code, message))) => {
                for r in page.records.iter_mut().filter(|r| r.is_active()) {
                    r.fail(code, message.clone());
                }
            }
            None => {}
        }
        page.batch = Some(batch);
        if deferred {
            return continue_later(sluice, page, 0).await;
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
                    .map(|e| (i, e.request.clone(), format!("{key_base}:{}", r.key)))
            })
            .collect();
        let lock = LockKeeper::new(&page);
        let results: Vec<(usize, Result<Option<Outcome>>)> = futures::stream::iter(work)
            .map(|(i, req, key)| {
                let (limiter, lock) = (limiter.clone(), &lock);
                async move {
                    let outcome = deliver_once(sluice, connection, refs, &limiter, &key, req).await;
                    lock.keep(sluice).await;
                    (i, outcome)
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut deferred = 0;
        for (i, result) in results {
            let r = &mut page.records[i];
            match result? {
                Some(Ok(reply)) => {
                    if let Some(e) = r.exchange.as_mut() {
                        e.reply = Some(reply);
                    }
                }
                Some(Err((code, message))) => r.fail(code, message),
                None => deferred += 1,
            }
        }
        if deferred > 0 {
            return continue_later(sluice, page, deferred).await;
        }
        notify(sluice, &p, &page).await;
    }
    forward(sluice, page).await
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
    tracing::info!(job = %page.job_id, page = %page.page_id, deferred, "deliver ran short of time; the rest of the page continues in the next invocation");
    sluice
        .queue
        .send(Stage::Deliver, StageMessage::Page(page))
        .await?;
    Ok(())
}

async fn forward(sluice: &Sluice, page: Page) -> Result<()> {
    sluice
        .queue
        .send(Stage::Extract, StageMessage::Page(page))
        .await?;
    Ok(())
}

/// A reply, or a record-level failure (code, message).
pub(crate) type Outcome = std::result::Result<Reply, (&'static str, String)>;

/// Sends one request (a record's, or a page's batch) at most once, within the invocation's
/// time: `None` when too little time is left to send it (nothing claimed or sent; the page
/// continues in the next invocation). The invocation's first send always goes, so every
/// pass makes progress. Its turn under the connection's limits comes before the ledger
/// claim, so a record still waiting for its turn when time runs out is not claimed (and so
/// not reported `delivery_unknown`).
async fn deliver_once(
    sluice: &Sluice,
    connection: &Connection,
    refs: &[NameValue],
    limiter: &limits::Limiter,
    key: &str,
    request: RenderedRequest,
) -> Result<Option<Outcome>> {
    let needed = time_to_send(connection);
    let Some(first) = budget::start(needed) else {
        return Ok(None);
    };
    let permit = match take_turn(sluice, connection, limiter).await {
        Ok(permit) => permit,
        Err(failure) => return Ok(Some(Err(failure))),
    };
    // Waiting for the turn took time: check again, unless this is the one send that must go.
    if !first && budget::running_out(needed) {
        permit.release().await;
        return Ok(None);
    }
    let claim = sluice.store.ledger_claim(key, sluice.clock.now()).await;
    let earlier = match claim {
        Ok(LedgerState::Claimed) => None,
        Ok(LedgerState::Done(v)) => Some(match v.get("reply") {
            Some(reply) => serde_json::from_value(reply.clone()).map_err(|e| ("ledger", e.to_string())),
            None => Err(("network", v["error"].as_str().unwrap_or("failed before").to_string())),
        }),
        Ok(LedgerState::InFlight) => Some(Err((
            "delivery_unknown",
            "an earlier attempt may have delivered this record and did not finish; it was not sent again to avoid a duplicate; retry it if the target did not receive it".into(),
        ))),
        Err(e) => {
            permit.release().await;
            return Err(e.into());
        }
    };
    if let Some(outcome) = earlier {
        permit.release().await;
        return Ok(Some(outcome));
    }
    let outcome =
        send_with_retries(sluice, connection, refs, limiter, Some(permit), &request).await;
    let record = match &outcome {
        Ok(reply) => json!({"reply": reply}),
        Err((code, message)) => json!({"error": message, "code": code}),
    };
    sluice.store.ledger_complete(key, &record).await?;
    Ok(Some(outcome))
}

/// The time a request needs once started: its timeout, plus a margin for the ledger writes,
/// re-queueing the page and answering the invocation. Less than this left in the invocation
/// and the request is not started.
pub(crate) fn time_to_send(connection: &Connection) -> Duration {
    request_timeout(connection) + Duration::from_secs(3)
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
) -> std::result::Result<limits::Permit<'l>, (&'static str, String)> {
    // A shared slot outlives its request only if the holder died (a killed Lambda): it frees
    // itself once the request would have timed out anyway, plus clock-skew margin.
    let lease = request_timeout(connection) + Duration::from_secs(5);
    limiter
        .acquire(
            &sluice.store,
            &sluice.settings.instance,
            || sluice.clock.now(),
            lease,
        )
        .await
        .map_err(|e| {
            (
                "limits",
                format!(
                    "could not take a turn under connection {}'s limits: {e:#}",
                    connection.id
                ),
            )
        })
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
    if connection.http.is_none() {
        return Err((
            "config",
            format!("connection {} is not an http connection", connection.id),
        ));
    }
    let limiter = sluice.caches.http.limiter(connection);
    send_with_retries(sluice, connection, refs, &limiter, None, request).await
}

/// Sends with the connection's auth, timeout and retry policy. `first` is a turn already
/// taken for the first attempt; each later attempt takes its own.
pub(crate) async fn send_with_retries(
    sluice: &Sluice,
    connection: &Connection,
    refs: &[NameValue],
    limiter: &limits::Limiter,
    mut first: Option<limits::Permit<'_>>,
    request: &RenderedRequest,
) -> Outcome {
    let http = connection.http.as_ref().expect("checked by the caller");
    let policy = http.retry.clone().unwrap_or_default();
    let timeout = request_timeout(connection);
    if let Err(e) = guard::check(
        &request.url,
        http.allow_metadata_addresses,
        sluice.settings.allow_private_addresses,
    )
    .await
    {
        return Err(("address_refused", e));
    }
    let started = Instant::now();
    let mut attempt = 0u32;
    let mut refreshed_token = false;
    loop {
        attempt += 1;
        let permit = match first.take() {
            Some(permit) => permit,
            None => take_turn(sluice, connection, limiter).await?,
        };
        let result = send_one(sluice, connection, refs, request, timeout).await;
        permit.release().await;
        let retry_after = match &result {
            Ok(reply)
                if reply.status == 401 && !refreshed_token && auth::uses_oauth(connection) =>
            {
                // A token revoked early: fetch a fresh one once, without spending an attempt.
                sluice.caches.http.tokens.forget(&connection.id);
                refreshed_token = true;
                attempt -= 1;
                continue;
            }
            Ok(reply) if retry::is_retryable_status(reply.status) => Some(
                reply
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.as_str())
                    .and_then(parse_retry_after),
            ),
            Ok(_) => None,
            Err(SendError::Retryable(_)) => Some(None),
            Err(SendError::Fatal(_)) => None,
        };
        if let (Some(hint), true) = (retry_after, attempt < policy.max_attempts) {
            tokio::time::sleep(backoff_delay(&policy, attempt, hint)).await;
            continue;
        }
        return match result {
            Ok(mut reply) => {
                reply.attempts = attempt;
                reply.elapsed_ms = started.elapsed().as_millis() as u64;
                Ok(reply)
            }
            Err(SendError::Retryable(m)) | Err(SendError::Fatal(m)) => Err((
                "network",
                format!(
                    "{m} (after {attempt} attempt{})",
                    if attempt == 1 { "" } else { "s" }
                ),
            )),
        };
    }
}

enum SendError {
    Retryable(String),
    Fatal(String),
}

async fn send_one(
    sluice: &Sluice,
    connection: &Connection,
    refs: &[NameValue],
    request: &RenderedRequest,
    timeout: Duration,
) -> std::result::Result<Reply, SendError> {
    let client = sluice.caches.http.client();
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|e| SendError::Fatal(format!("bad method {}: {e}", request.method)))?;
    let mut url = reqwest::Url::parse(&request.url)
        .map_err(|e| SendError::Fatal(format!("bad URL {}: {e}", request.url)))?;
    let mut headers = request.headers.clone();
    auth::apply(sluice, connection, refs, &mut url, &mut headers)
        .await
        .map_err(|e| SendError::Fatal(e.to_string()))?;
    let mut builder = client.request(method, url).timeout(timeout);
    let mut has_content_type = false;
    for (name, value) in &headers {
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        if !has_content_type {
            builder = builder.header("content-type", "application/json");
        }
        builder = builder.body(body.clone());
    }
    let response = builder
        .send()
        .await
        .map_err(|e| SendError::Retryable(describe(&e, timeout)))?;
    let status = response.status().as_u16();
    let mut header_map = Map::new();
    for (name, value) in response.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).to_string();
        match header_map.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&v);
            }
            _ => {
                header_map.insert(name.as_str().to_string(), Value::String(v));
            }
        }
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| SendError::Retryable(describe(&e, timeout)))?;
    let body = serde_json::from_slice::<Value>(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Reply {
        status,
        headers: header_map,
        body,
        attempts: 1,
        elapsed_ms: 0,
    })
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("timed out after {} ms", timeout.as_millis())
    } else if e.is_connect() {
        format!("could not connect: {}", root_cause(e))
    } else {
        format!("request failed: {}", root_cause(e))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// notifyRequest / notifyResponse: copies of each exchange, credentials masked. Best effort.
async fn notify(sluice: &Sluice, p: &Processor, page: &Page) {
    let Flow {
        notify_request,
        notify_response,
        ..
    } = &p.flow;
    if notify_request.is_none() && notify_response.is_none() {
        return;
    }
    let client = sluice.caches.http.client();
    for r in &page.records {
        let Some(ex) = &r.exchange else { continue };
        let mut request = ex.request.clone();
        for (name, value) in request.headers.iter_mut() {
            if sluice_model::is_secret_header(name) {
                *value = sluice_model::MASK.into();
            }
        }
        let copies = [
            (
                notify_request,
                json!({"jobId": page.job_id, "recordKey": r.key, "request": request}),
            ),
            (
                notify_response,
                json!({"jobId": page.job_id, "recordKey": r.key, "response": ex.reply}),
            ),
        ];
        for (cb, body) in copies {
            let Some(cb) = cb else { continue };
            let headers = match resolve_headers(&*sluice.secrets, "notify headers", &cb.headers) {
                Ok(headers) => headers,
                Err(e) => {
                    tracing::warn!(url = %cb.url, error = %e, "notification not sent");
                    continue;
                }
            };
            let mut req = client
                .post(&cb.url)
                .json(&body)
                .timeout(Duration::from_secs(10));
            for (name, value) in headers {
                req = req.header(name, value);
            }
            if let Err(e) = req.send().await {
                tracing::warn!(url = %cb.url, error = %e, "notification failed");
            }
        }
    }
}
