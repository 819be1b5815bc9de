//! Holding a flow still while what it uses changes. Deleting a flow its running job still
//! reads would turn every record delivered after that into a "Flow not found" error; so the
//! change takes the flow's run lock first: no job of it is running then, and none can start
//! until the change is done. A running job makes the change a conflict that names the job.

use super::queue;
use crate::{Error, Result, Sluice};
use sluice_model::new_id;
use std::future::Future;
use std::time::Duration;

/// How long an edit may hold a flow: a crashed API process frees it after this.
const EDIT_LEASE: Duration = Duration::from_secs(60);

/// Runs `edit` holding the run lock of `flow_id`. `Error::Conflict` naming the running job
/// when the flow runs. Afterwards a run kept meanwhile starts (or, for a flow the edit
/// deleted, is let go, logged).
pub async fn while_idle<T, F, Fut>(sluice: &Sluice, flow_id: &str, edit: F) -> Result<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let owner = format!("edit-{}", new_id());
    let now = sluice.clock.now();
    if !sluice
        .store
        .acquire_lock(flow_id, &owner, now, EDIT_LEASE)
        .await?
    {
        return Err(busy(sluice, flow_id).await?);
    }
    let done = edit().await;
    sluice.store.release_lock(flow_id, &owner).await?;
    queue::start_next(sluice, flow_id).await?;
    done
}

/// Why the flow's lock is held, as the conflict says it.
async fn busy(sluice: &Sluice, flow_id: &str) -> Result<Error> {
    let running = sluice
        .store
        .list_jobs(flow_id, 1)
        .await?
        .into_iter()
        .find(|j| !j.status.is_finished());
    Ok(Error::Conflict(match running {
        Some(job) => format!(
            "Flow {flow_id} is running job {} (started {}): wait for it to end, or cancel it (POST /jobs/{}/cancel)",
            job.id,
            job.started_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            job.id
        ),
        None => format!("Flow {flow_id} is busy (a run is starting, or another change holds it): try again"),
    }))
}
