//! The run lifecycle, in one place: a run starts under its flow's run lock (or waits in the
//! store behind the running one), its job is closed exactly once, and the one caller whose
//! close wins does the after-run work: the watermark, the files it picked up remembered, the
//! lock's release, the next queued run, chained flows and the after-process callbacks.
//!
//! Invariants kept here:
//! - a job is only opened under its flow's run lock, and the lock is released only after the
//!   job is closed (so an unfinished job found by the next lock holder was abandoned);
//! - `Store::close_job` lets one caller win, so after-run work happens once per job;
//! - a run that must wait (event, schedule, chain) is kept durably until its job exists,
//!   and starts as the kind it was asked as;
//! - a canceled job chains nothing, and no stage sends a record of it after the cancel;
//! - a job's automatic retry is kept durably before the job is closed, and started once
//!   ([`auto_retry`]).
//!
//! The stages call in here (trigger when paging ends or the export fails, evaluate when the
//! last page is done, dead letter when a run order gave up); nothing here calls a stage.

mod after;
pub mod auto_retry;
pub mod clean;
mod finish;
mod hold;
pub mod pickup;
mod queue;
mod start;
pub mod watermark;

pub use auto_retry::cancel_auto_retry;
pub use finish::{cancel_job, complete_job, fail_job, Then, CANCEL_SETTLES};
pub use hold::{unused_by_running_jobs, while_idle};
pub use queue::start_event_run;
pub use start::{retry_errors, start_run};

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

/// When this process last renewed each job's run lock (by the store's clock). Evaluate
/// renews a job's lock as it evaluates its pages, but only once a quarter lease has passed
/// since this process last did: a lease so always has three quarters of it left while pages
/// are evaluated, and a job of many pages costs a store write per quarter lease and process
/// instead of one per page.
#[derive(Default)]
pub(crate) struct LockRenewals {
    at: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl LockRenewals {
    /// Renews the lock of `job_id` on `flow_id` unless this process did within a quarter
    /// lease. A failed renewal is logged (the next page tries again).
    pub async fn renew(&self, sluice: &crate::Sluice, flow_id: &str, job_id: &str) {
        let (now, lease) = (sluice.clock.now(), sluice.settings.lock_lease);
        let quarter = chrono::Duration::from_std(lease / 4).unwrap_or_default();
        {
            let mut at = self.at.lock().unwrap();
            if at
                .get(job_id)
                .is_some_and(|t| now - *t < quarter && *t <= now)
            {
                return;
            }
            // Jobs renewed more than a lease ago are done or with another process.
            at.retain(|_, t| now - *t < quarter * 4);
        }
        match sluice.store.renew_lock(flow_id, job_id, now, lease).await {
            Ok(_) => {
                self.at.lock().unwrap().insert(job_id.to_string(), now);
            }
            Err(e) => tracing::warn!(job = %job_id, "could not renew the run lock: {e:#}"),
        }
    }
}
