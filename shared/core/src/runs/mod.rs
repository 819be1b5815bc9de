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
