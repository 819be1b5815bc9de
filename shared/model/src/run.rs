//! What starts a run of a flow: the caller's request, how it was started, and a run waiting
//! behind a running one. The lifecycle itself (lock, job, queue, close) is
//! `sluice_core::runs`.

use crate::page::RunSource;
use crate::ValidationErrors;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a run was started. Decides what happens when the flow is already running: a run a
/// person asked for answers 409, the others wait their turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Manual,
    Schedule,
    Chain,
    Retry,
    /// An automatic retry (the flow's `autoRetry`), started by the minute tick.
    #[serde(rename = "auto_retry")]
    AutoRetry,
    S3,
    Dynamodb,
    /// A delivery to a webhook export's listener.
    Webhook,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Manual => "manual",
            RunKind::Schedule => "schedule",
            RunKind::Chain => "chain",
            RunKind::Retry => "retry",
            RunKind::AutoRetry => "auto_retry",
            RunKind::S3 => "s3",
            RunKind::Dynamodb => "dynamodb",
            RunKind::Webhook => "webhook",
        }
    }

    /// Runs a person asked for: they run even when the flow is disabled ("manual only").
    pub fn is_by_hand(self) -> bool {
        matches!(self, RunKind::Manual | RunKind::Retry)
    }

    /// Runs a person asked for answer 409 when the flow is busy; runs started by events,
    /// the schedule or a chain wait their turn.
    pub fn queues_when_busy(self) -> bool {
        matches!(
            self,
            RunKind::Schedule
                | RunKind::S3
                | RunKind::Dynamodb
                | RunKind::Webhook
                | RunKind::Chain
                | RunKind::AutoRetry
        )
    }
}

/// What a caller asks of a run (the run endpoint's body, the CLI's flags).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    /// Only these page generators (default: all).
    #[serde(
        rename = "_exportIds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub export_ids: Option<Vec<String>>,
    /// Delta window override: `{{lastExportDateTime}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<DateTime<Utc>>,
    /// Delta window override: `{{currentExportDateTime}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<DateTime<Utc>>,
    /// Records for a webhook export (run endpoint body, `sluice run --records`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<Vec<Value>>,
    /// Where the records come from when an event started the run (S3 object, retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RunSource>,
    /// A retry: the job whose errors it runs again (its pages number on from that job's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// An automatic retry: its place in its chain (kept on its job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_retry: Option<crate::RetryAttempt>,
}

impl RunRequest {
    /// The window given must be a window: `endDate` not before `startDate`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        if let (Some(start), Some(end)) = (self.start_date, self.end_date) {
            if end < start {
                e.add(
                    "endDate",
                    format!("is before startDate ({end} < {start}): give a window that ends after it starts"),
                );
            }
        }
        e.into_result()
    }

    /// A backfill reads a window that ends in the past, given by its `endDate`: it leaves the
    /// watermark where it is.
    pub fn is_backfill(&self) -> bool {
        self.end_date.is_some()
    }

    /// The run reads its exports themselves (not records given to it, an object, a retry).
    pub fn reads_the_export(&self) -> bool {
        self.records.is_none() && self.source.as_ref().is_none_or(|s| *s == RunSource::Export)
    }
}

/// The run endpoint's 201 answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"_jobId": "9f1c2b3a4d5e6f708192a3b4", "_exportId": "new-orders",
    "flowExecutionGroupId": "0a1b2c3d4e5f60718293a4b5"}))]
#[serde(rename_all = "camelCase")]
pub struct RunStarted {
    #[serde(rename = "_jobId")]
    pub job_id: String,
    #[serde(rename = "_exportId", default, skip_serializing_if = "Option::is_none")]
    pub export_id: Option<String>,
    pub flow_execution_group_id: String,
}

/// A run waiting for its flow's running job to end, kept in the store in arrival order as it
/// was asked for: when its turn comes it starts as the kind it is, with `id` as its job id
/// (so a run kept twice, an event delivered again, still runs once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedRun {
    /// The job id the run gets when it starts.
    pub id: String,
    pub kind: RunKind,
    pub request: RunRequest,
    /// When it was queued: waiting runs start oldest first.
    pub queued_at: DateTime<Utc>,
}

impl QueuedRun {
    /// Waiting runs with the same key are one run. An event's run is its own (its key is its
    /// id: each object, each stream batch is read); runs that read the whole export (schedule,
    /// chain) share one key per set of exports they read (`export` for all of them, else
    /// `export:` and the ids), since one such run waiting reads everything the next would.
    pub fn key(&self) -> std::borrow::Cow<'_, str> {
        match (self.kind, &self.request.export_ids) {
            (RunKind::Schedule | RunKind::Chain, None) => "export".into(),
            (RunKind::Schedule | RunKind::Chain, Some(ids)) => {
                let mut ids = ids.clone();
                ids.sort();
                format!("export:{}", ids.join(",")).into()
            }
            _ => self.id.as_str().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(kind: RunKind, export_ids: Option<Vec<&str>>) -> QueuedRun {
        QueuedRun {
            id: crate::new_id(),
            kind,
            request: RunRequest {
                export_ids: export_ids.map(|ids| ids.into_iter().map(String::from).collect()),
                ..Default::default()
            },
            queued_at: Utc::now(),
        }
    }

    #[test]
    fn scheduled_runs_of_the_same_exports_are_one_waiting_run() {
        let all = waiting(RunKind::Schedule, None);
        let some = waiting(RunKind::Schedule, Some(vec!["b", "a"]));
        assert_eq!(all.key(), waiting(RunKind::Chain, None).key());
        assert_eq!(
            some.key(),
            waiting(RunKind::Schedule, Some(vec!["a", "b"])).key()
        );
        assert_ne!(
            all.key(),
            some.key(),
            "a run of some exports does not stand for all"
        );
        let manual = waiting(RunKind::S3, None);
        assert_eq!(
            manual.key(),
            manual.id.as_str(),
            "an event's run is its own"
        );
    }
}
