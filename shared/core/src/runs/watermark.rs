//! The delta watermark (`{{lastExportDateTime}}`): where the next delta run's window starts.
//! It moves only when a run went through, so a failed export is read again.

use crate::{Result, Sluice};
use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_model::{Job, JobStatus};

/// The state key of a flow's watermark (`GET /flows/{id}/lastExportDateTime`).
pub fn key(flow_id: &str) -> String {
    format!("flow:{flow_id}:lastExportDateTime")
}

/// The flow's watermark, if a run has set one.
pub async fn read(sluice: &Sluice, flow_id: &str) -> Result<Option<DateTime<Utc>>> {
    let stored = sluice.store.get_state(&key(flow_id)).await?;
    Ok(stored.and_then(|w| w.as_str().and_then(|s| s.parse().ok())))
}

/// Moves the watermark to the end of a finished job's window, if the job went through.
pub(super) async fn advance(sluice: &Sluice, job: &Job) -> Result<()> {
    if !matches!(
        job.status,
        JobStatus::Completed | JobStatus::CompletedWithErrors
    ) {
        return Ok(());
    }
    if let Some(end) = job.end_date {
        sluice
            .store
            .put_state(&key(&job.flow_id), &json!(sluice_model::time::format(&end)))
            .await?;
    }
    Ok(())
}
