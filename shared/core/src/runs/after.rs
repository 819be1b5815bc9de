//! After-run work of a closed job: the run queued behind it, chained flows
//! (`_runNextFlowIds`) and the after-process callbacks.

use super::start::start_run;
use crate::ports::secrets::resolve_headers;
use crate::{Error, Result, Sluice};
use sluice_model::{Flow, Job, RunKind, RunRequest};
use std::time::Duration;

/// Starts the run queued behind the flow's job that just ended, as the kind it was queued as.
pub(super) async fn start_queued(sluice: &Sluice, flow_id: &str) -> Result<()> {
    let Some(queued) = sluice.store.take_queued_run(flow_id).await? else {
        return Ok(());
    };
    if let Err(e) = start_run(sluice, flow_id, queued.request, queued.kind).await {
        tracing::warn!(flow = %flow_id, kind = queued.kind.as_str(), error = %e, "queued run could not start");
    }
    Ok(())
}

/// Starts the flows this one chains to. A chained flow that cannot start is logged: the run
/// that chained it is over either way.
pub(super) async fn chain(sluice: &Sluice, flow: &Flow) {
    for next in &flow.run_next_flow_ids {
        if let Err(e) = start_run(sluice, next, RunRequest::default(), RunKind::Chain).await {
            tracing::warn!(flow = %flow.id, next = %next, error = %e, "chained flow did not start");
        }
    }
}

/// Posts the finished job to each of the flow's after-process callbacks. A refused or
/// failed callback is logged; it does not change the job.
pub(super) async fn callbacks(sluice: &Sluice, flow: &Flow, job: &Job) -> Result<()> {
    if flow.after_process.is_empty() {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Internal(e.into()))?;
    for (i, cb) in flow.after_process.iter().enumerate() {
        let field = format!("afterProcess[{i}].headers");
        let headers = match resolve_headers(&*sluice.secrets, &field, &cb.headers) {
            Ok(headers) => headers,
            Err(e) => {
                tracing::warn!(url = %cb.url, error = %e, "after-process callback not sent");
                continue;
            }
        };
        let mut req = client.post(&cb.url).json(job);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(url = %cb.url, status = r.status().as_u16(), "after-process callback refused")
            }
            Err(e) => {
                tracing::warn!(url = %cb.url, error = %e, "after-process callback failed")
            }
        }
    }
    Ok(())
}
