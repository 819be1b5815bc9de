//! After-run work of a closed job: chained flows (`_runNextFlowIds`), the after-process
//! callbacks and the failure alert.

use super::start::start_run;
use crate::{Result, Sluice, Stage};
use sluice_model::{Flow, Job, RunKind, RunRequest, StageMessage};

/// Starts the flows this one chains to. A chained flow that cannot start is logged: the run
/// that chained it is over either way.
pub(super) async fn chain(sluice: &Sluice, flow: &Flow) {
    for next in &flow.run_next_flow_ids {
        if let Err(e) = start_run(sluice, next, RunRequest::default(), RunKind::Chain).await {
            tracing::warn!(flow = %flow.id, next = %next, error = %e, "chained flow did not start");
        }
    }
}

/// Hands the closed job to the deliver stage, which posts it to the flow's after-process
/// callbacks and its failure alert: the stage that closes a job (evaluate, trigger, a dead
/// letter, the API) may be a function built without an HTTP client, and deliver sends
/// requests anyway.
pub(super) async fn callbacks(sluice: &Sluice, flow: &Flow, job: &Job) -> Result<()> {
    let alert = flow.alerts.as_ref().is_some_and(|a| a.wants(job));
    if flow.after_process.is_empty() && !alert {
        return Ok(());
    }
    let message = StageMessage::AfterProcess { job: job.clone() };
    sluice.queue.send(Stage::Deliver, message).await?;
    Ok(())
}
