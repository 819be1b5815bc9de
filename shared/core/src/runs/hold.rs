//! Holding still what a running job uses. Deleting a flow its running job still reads would
//! turn every record delivered after that into a "Flow not found" error; so the change takes
//! the flow's run lock first: no job of it is running then, and none can start until the
//! change is done. A running job makes the change a conflict that names the job.
//!
//! The exports, imports and connections a run uses are recorded in its job when it starts
//! ([`uses`]), so deleting one of them while the job runs is a conflict naming the job even
//! after the flow (or the import) was changed to no longer point at it.

use super::{queue, start};
use crate::ports::Kind;
use crate::{Error, Result, Sluice};
use sluice_model::{new_id, Export, Flow, Job, ProcessorType, RunUses};
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
        return Err(Error::Conflict(start::refusal(sluice, flow_id).await));
    }
    let done = edit().await;
    sluice.store.release_lock(flow_id, &owner).await?;
    queue::start_next(sluice, flow_id).await?;
    done
}

/// What a run of `flow` reading `exports` uses: those exports, the flow's imports and lookup
/// exports, and every connection they go through.
pub(super) async fn uses(sluice: &Sluice, flow: &Flow, exports: &[&Export]) -> Result<RunUses> {
    let mut uses = RunUses::default();
    for export in exports {
        uses.export_ids.insert(export.id.clone());
        uses.connection_ids.extend(export.connection_id.clone());
    }
    for p in flow.steps().iter().map(|s| s.processor) {
        let Some(id) = p.target_id() else { continue };
        match p.kind {
            ProcessorType::Import => {
                let import = sluice.import(id).await?;
                uses.import_ids.insert(import.id);
                uses.connection_ids.insert(import.connection_id);
            }
            ProcessorType::Export => {
                let lookup = sluice.export(id).await?;
                uses.export_ids.insert(lookup.id);
                uses.connection_ids.extend(lookup.connection_id);
            }
        }
    }
    Ok(uses)
}

/// `Error::Conflict` naming the running job that uses the connection, export or import `id`
/// (see [`uses`]), if one does. Only a flow's newest job can be running (a job is opened
/// under its flow's run lock, released once the job is closed), so one job per flow is read.
pub async fn unused_by_running_jobs(sluice: &Sluice, kind: Kind, id: &str) -> Result<()> {
    for doc in sluice.store.list_definitions(Kind::Flow).await? {
        let Some(flow_id) = doc.get("_id").and_then(|v| v.as_str()) else {
            continue;
        };
        for job in sluice.store.list_jobs(flow_id, 1).await? {
            if !job.status.is_finished() && job_uses(&job, kind, id) {
                return Err(Error::Conflict(format!(
                    "{} {id} is used by running job {} of flow {flow_id} (started {}): wait for it to end, or cancel it (POST /jobs/{}/cancel)",
                    kind.label(),
                    job.id,
                    job.started_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    job.id
                )));
            }
        }
    }
    Ok(())
}

fn job_uses(job: &Job, kind: Kind, id: &str) -> bool {
    let ids = match kind {
        Kind::Connection => &job.uses.connection_ids,
        Kind::Export => &job.uses.export_ids,
        Kind::Import => &job.uses.import_ids,
        Kind::Flow => return job.flow_id == id,
        // Not recorded in `uses` yet: a script a running job calls can still be deleted.
        Kind::Integration | Kind::Script => return false,
    };
    ids.contains(id)
}
