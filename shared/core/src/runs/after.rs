//! After-run work of a closed job: chained flows (`_runNextFlowIds`) and the after-process
//! callbacks.

use super::start::start_run;
use crate::stages::deliver::post_callback;
use crate::{Result, Sluice};
use sluice_model::{Flow, Job, RunKind, RunRequest};

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
