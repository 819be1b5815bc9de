//! The [`Metrics`] port as CloudWatch embedded metric format (EMF): each measurement is one
//! JSON line on stdout, which Lambda ships to CloudWatch Logs, where CloudWatch extracts the
//! metrics. No API call and nothing to flush, so a measurement costs a write and nothing else.
//!
//! | metric | unit | dimensions | from |
//! |---|---|---|---|
//! | `RecordsSucceeded`, `RecordsFailed`, `RecordsIgnored` | Count | `Flow` | a page counted into its job |
//! | `DeliveryLatency` | Milliseconds | `Flow` | a request deliver sent (retries included) |
//! | `PagesContinued` | Count | `Stage` (and `Flow` as a property) | a page or run order re-queued for lack of time |
//!
//! Each line is built by [`emf_line`] alone; the namespace is `SLUICE_METRICS_NAMESPACE`
//! (the template sets one per stack), `Sluice` by default.

use serde_json::{json, Map, Value};
use sluice_core::ports::{Measurement, Metrics};
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub const DEFAULT_NAMESPACE: &str = "Sluice";
pub const NAMESPACE_VAR: &str = "SLUICE_METRICS_NAMESPACE";

/// Writes EMF lines to `out` (stdout on Lambda; a buffer in tests).
pub struct EmfMetrics {
    namespace: String,
    out: Mutex<Box<dyn Write + Send>>,
}

impl EmfMetrics {
    pub fn new(namespace: impl Into<String>, out: Box<dyn Write + Send>) -> Self {
        EmfMetrics {
            namespace: namespace.into(),
            out: Mutex::new(out),
        }
    }

    /// To stdout, in the namespace the environment names.
    pub fn stdout_from_env() -> Self {
        let namespace = std::env::var(NAMESPACE_VAR)
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        EmfMetrics::new(namespace, Box::new(std::io::stdout()))
    }
}

impl Metrics for EmfMetrics {
    fn record(&self, measurement: Measurement) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let mut line = emf_line(&self.namespace, now, &measurement).to_string();
        line.push('\n');
        // One write per line under the lock: lines from concurrent tasks never interleave.
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|_| out.flush()) {
            tracing::warn!(error = %e, "metrics line not written");
        }
    }
}

/// The EMF document for one measurement at `timestamp_ms`.
pub fn emf_line(namespace: &str, timestamp_ms: u64, measurement: &Measurement) -> Value {
    let mut values = Map::new();
    let (dimension, metrics) = match measurement {
        Measurement::Records {
            flow,
            succeeded,
            failed,
            ignored,
        } => {
            values.insert("Flow".into(), json!(flow));
            values.insert("RecordsSucceeded".into(), json!(succeeded));
            values.insert("RecordsFailed".into(), json!(failed));
            values.insert("RecordsIgnored".into(), json!(ignored));
            let count = |name| json!({"Name": name, "Unit": "Count"});
            (
                "Flow",
                vec![
                    count("RecordsSucceeded"),
                    count("RecordsFailed"),
                    count("RecordsIgnored"),
                ],
            )
        }
        Measurement::Delivery { flow, latency } => {
            values.insert("Flow".into(), json!(flow));
            values.insert("DeliveryLatency".into(), json!(latency.as_millis() as u64));
            (
                "Flow",
                vec![json!({"Name": "DeliveryLatency", "Unit": "Milliseconds"})],
            )
        }
        Measurement::Continued { flow, stage } => {
            values.insert("Stage".into(), json!(stage.name()));
            values.insert("Flow".into(), json!(flow));
            values.insert("PagesContinued".into(), json!(1));
            (
                "Stage",
                vec![json!({"Name": "PagesContinued", "Unit": "Count"})],
            )
        }
    };
    values.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[dimension]],
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::Stage;
    use std::time::Duration;

    #[test]
    fn a_delivery_is_one_latency_in_milliseconds_by_flow() {
        let line = emf_line(
            "Sluice/test",
            1_700_000_000_000,
            &Measurement::Delivery {
                flow: "f1".into(),
                latency: Duration::from_millis(42),
            },
        );
        assert_eq!(
            line,
            json!({
                "_aws": {"Timestamp": 1_700_000_000_000u64, "CloudWatchMetrics": [{
                    "Namespace": "Sluice/test", "Dimensions": [["Flow"]],
                    "Metrics": [{"Name": "DeliveryLatency", "Unit": "Milliseconds"}]}]},
                "Flow": "f1",
                "DeliveryLatency": 42,
            })
        );
    }

    #[test]
    fn a_continuation_counts_by_stage_and_names_the_flow() {
        let line = emf_line(
            "Sluice",
            1,
            &Measurement::Continued {
                flow: "f1".into(),
                stage: Stage::Trigger,
            },
        );
        assert_eq!(line["Stage"], "trigger");
        assert_eq!(line["Flow"], "f1");
        assert_eq!(line["PagesContinued"], 1);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stage"]])
        );
    }
}
