//! Schedules: 5-field cron (or 6-field with `?` seconds) in the flow's IANA time zone,
//! DST-correct; the minute tick starts what is due without scanning every flow.

use super::RunStarted;
use crate::{Result, Sluice};
use chrono::{DateTime, Utc};
use sluice_model::Flow;

/// The first time strictly after `after` at which `flow` is due; None without a schedule
/// or when disabled.
pub fn next_run(flow: &Flow, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let _ = (flow, after);
    todo!("owned by the sources helper")
}

/// Records the flow's next due time in the store (call after a flow is saved or deleted).
pub async fn reschedule(sluice: &Sluice, flow: &Flow) -> Result<()> {
    let _ = (sluice, flow);
    todo!("owned by the sources helper")
}

/// The minute tick: starts every due flow (queued behind a running one) and moves its
/// next due time on.
pub async fn tick(sluice: &Sluice) -> Result<Vec<RunStarted>> {
    let _ = sluice;
    todo!("owned by the sources helper")
}
