//! The delta watermark (`{{lastExportDateTime}}`): where the next delta run of an export
//! starts reading. One per export of each flow (two flows sharing an export, or one flow
//! reading two, keep their own), so a run of one export never moves another's window.
//!
//! A delta run's window starts at the watermark less the export's `delta.lagOffset`; the
//! watermark itself stays the end of the last window read, so the lag never compounds.
//!
//! Invariant: a watermark moves only forward, only when a run read that export itself over
//! its delta window (not records given to it, not a retry, not a backfill with an `endDate`)
//! and completed; a failed or canceled run's window is read again by the next run.

use crate::{Result, Sluice};
use chrono::{DateTime, Utc};
use serde_json::json;
use sluice_model::{Export, ExportType, Job, JobStatus, RunKind, RunRequest};
use std::collections::BTreeMap;

/// The state key of the watermark of `export_id` in flow `flow_id`.
pub fn key(flow_id: &str, export_id: &str) -> String {
    format!("flow:{flow_id}:export:{export_id}:lastExportDateTime")
}

/// Where watermarks were kept when there was one per flow: still read, so an upgraded
/// deployment's next delta run starts where the last one ended instead of at the beginning.
fn flow_key(flow_id: &str) -> String {
    format!("flow:{flow_id}:lastExportDateTime")
}

async fn stored(sluice: &Sluice, key: &str) -> Result<Option<DateTime<Utc>>> {
    let value = sluice.store.get_state(key).await?;
    Ok(value.and_then(|w| w.as_str().and_then(|s| s.parse().ok())))
}

/// The watermark of one export of a flow, if a run has set one.
pub async fn read(
    sluice: &Sluice,
    flow_id: &str,
    export_id: &str,
) -> Result<Option<DateTime<Utc>>> {
    match stored(sluice, &key(flow_id, export_id)).await? {
        Some(at) => Ok(Some(at)),
        None => stored(sluice, &flow_key(flow_id)).await,
    }
}

/// The exports a run about to start reads over the delta window (its http exports, when it
/// reads them itself and is neither a retry nor a backfill), each with its window start:
/// the `startDate` asked for, else its watermark.
pub(super) async fn plan(
    sluice: &Sluice,
    flow_id: &str,
    exports: &[&Export],
    request: &RunRequest,
    kind: RunKind,
) -> Result<BTreeMap<String, Option<DateTime<Utc>>>> {
    let mut delta = BTreeMap::new();
    if matches!(kind, RunKind::Retry | RunKind::AutoRetry)
        || !request.reads_the_export()
        || request.is_backfill()
    {
        return Ok(delta);
    }
    for export in exports.iter().filter(|e| e.kind == ExportType::Http) {
        let start = match request.start_date {
            Some(start) => Some(start),
            None => read(sluice, flow_id, &export.id)
                .await?
                .map(|at| lagged(export, at)),
        };
        delta.insert(export.id.clone(), start);
    }
    Ok(delta)
}

/// Where a window starting at watermark `at` reads from: `delta.lagOffset` earlier, so
/// records the source commits with an older timestamp are read by the next run too.
fn lagged(export: &Export, at: DateTime<Utc>) -> DateTime<Utc> {
    let lag = export.delta.as_ref().map(|d| d.lag()).unwrap_or_default();
    at.checked_sub_signed(lag).unwrap_or(at)
}

/// Moves the watermarks of a finished job's delta exports to the end of its window, if it
/// completed, and never backwards.
pub(super) async fn advance(sluice: &Sluice, job: &Job) -> Result<()> {
    let completed = matches!(
        job.status,
        JobStatus::Completed | JobStatus::CompletedWithErrors
    );
    let Some(end) = job.end_date.filter(|_| completed) else {
        return Ok(());
    };
    for export_id in job.delta_exports.keys() {
        let current = read(sluice, &job.flow_id, export_id).await?;
        if current.is_none_or(|at| at < end) {
            let value = json!(sluice_model::time::format(&end));
            sluice
                .store
                .put_state(&key(&job.flow_id, export_id), &value)
                .await?;
        }
    }
    Ok(())
}
