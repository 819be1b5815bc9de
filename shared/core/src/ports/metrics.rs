//! Metrics: what operators watch a deployment by. Stage code says what happened, once per
//! event that is counted once (a page's outcome counts when the store first applies it, so a
//! redelivered page adds nothing); the adapter picks the wire format (CloudWatch embedded
//! metric format on Lambda, `sluice_aws::metrics`; nothing in the local runtime).

use crate::Stage;
use std::time::Duration;

/// One thing that happened, with its figures.
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    /// A page's records as counted into its job (by evaluate, or by the dead-letter path).
    Records {
        flow: String,
        succeeded: u64,
        failed: u64,
        ignored: u64,
    },
    /// A record's (or a page's batch) request that deliver sent and got a reply to, from its
    /// first attempt to its last reply (retries and backoff included). A reply reused from
    /// the ledger was not sent again and is not measured.
    Delivery { flow: String, latency: Duration },
    /// A page (deliver) or a run order (trigger) put back on its queue because the invocation
    /// ran short of time.
    Continued { flow: String, stage: Stage },
}

pub trait Metrics: Send + Sync {
    fn record(&self, measurement: Measurement);
}

/// Records nothing: the local runtime, and any Sluice not given metrics.
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn record(&self, _: Measurement) {}
}
