//! A flow's callbacks: notifyRequest / notifyResponse copies of each exchange, and the
//! after-process calls of a closed job (whichever stage closed it queued the job here, as
//! `StageMessage::AfterProcess`: deliver is the stage that sends requests, so the others
//! link no HTTP client), then the flow's failure alert (`alerts.rs`). Best effort: a callback that fails is logged and changes nothing.
//!
//! Invariant: a callback goes out under the deployment's address policy (an address it
//! refuses, written as a name or as an IP address, is never connected to), follows no redirect
//! (its credential headers stay with the URL they were written for) and carries no Referer.

use super::guard::AddressPolicy;
use super::transport::{json_unless_typed, Outgoing};
use crate::ports::secrets::resolve_headers;
use crate::stages::processor::Processor;
use crate::{Error, Result, Sluice};
use serde::Serialize;
use serde_json::json;
use sluice_model::{Callback, Flow, Job, Page};
use std::time::Duration;

/// Posts the closed job to each of its flow's after-process callbacks (none if the flow was
/// deleted meanwhile). A refused or failed callback is logged; it does not change the job.
pub(super) async fn after_process(sluice: &Sluice, job: Job) -> Result<()> {
    let flow = match sluice.flow(&job.flow_id).await {
        Ok(flow) => flow,
        Err(Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    for (i, cb) in flow.after_process.iter().enumerate() {
        post_callback(sluice, &format!("afterProcess[{i}]"), cb, &job).await;
    }
    super::alerts::alert(sluice, &flow, &job).await;
    Ok(())
}

/// Posts `body` to `cb` with its headers' `secret:NAME` values resolved. `field` names the
/// callback in the definition (`afterProcess[0]`, `notifyRequest`), for the log.
pub(super) async fn post_callback(
    sluice: &Sluice,
    field: &str,
    cb: &Callback,
    body: &impl Serialize,
) {
    let not_sent = |error: &dyn std::fmt::Display| {
        tracing::warn!(url = %cb.url, callback = field, error = %error, "callback not sent");
    };
    let mut headers =
        match resolve_headers(&*sluice.secrets, &format!("{field}.headers"), &cb.headers) {
            Ok(headers) => headers,
            Err(e) => return not_sent(&e),
        };
    let (url, body) = match (url::Url::parse(&cb.url), serde_json::to_string(body)) {
        (Ok(url), Ok(body)) => (url, body),
        (Err(e), _) => return not_sent(&e),
        (_, Err(e)) => return not_sent(&e),
    };
    json_unless_typed(&mut headers);
    let request = Outgoing {
        method: &http::Method::POST,
        url,
        headers: &headers,
        body: Some(body),
        timeout: Duration::from_secs(10),
    };
    let client = sluice
        .caches
        .http
        .client(AddressPolicy::of_deployment(&sluice.settings));
    match client.send(request).await {
        Ok(r) if (200..300).contains(&r.status()) => {}
        Ok(r) => {
            tracing::warn!(url = %cb.url, callback = field, status = r.status(), "callback refused")
        }
        Err(e) => tracing::warn!(url = %cb.url, callback = field, error = %e, "callback failed"),
    }
}

/// notifyRequest / notifyResponse: copies of each exchange, credential headers masked.
pub(super) async fn notify(sluice: &Sluice, p: &Processor, page: &Page) {
    let Flow {
        notify_request,
        notify_response,
        ..
    } = &p.flow;
    if notify_request.is_none() && notify_response.is_none() {
        return;
    }
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
                "notifyRequest",
                notify_request,
                json!({"jobId": page.job_id, "recordKey": r.key, "request": request}),
            ),
            (
                "notifyResponse",
                notify_response,
                json!({"jobId": page.job_id, "recordKey": r.key, "response": ex.reply}),
            ),
        ];
        for (field, cb, body) in copies {
            if let Some(cb) = cb {
                post_callback(sluice, field, cb, &body).await;
            }
        }
    }
}
