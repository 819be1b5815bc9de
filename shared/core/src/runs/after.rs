//! After-run work of a closed job: the run queued behind it, chained flows
//! (`_runNextFlowIds`) and the after-process callbacks.

use super::start::start_run;
use crate::stages::deliver::post_callback;
use crate::{Result, Sluice};
use sluice_model::{Flow, Job, RunKind, RunRequest};

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
    for (i, cb) in flow.after_process.iter().enumerate() {
        post_callback(sluice, &format!("afterProcess[{i}]"), cb, job).await;
    }
    Ok(())
}
