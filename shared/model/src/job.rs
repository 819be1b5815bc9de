use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::run::RunKind;
use std::collections::BTreeMap;

/// One run of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_flowId")]
    pub flow_id: String,
    #[serde(rename = "_exportId", default, skip_serializing_if = "Option::is_none")]
    pub export_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_execution_group_id: Option<String>,
    #[serde(rename = "type", default = "flow_type")]
    pub kind: String,
    pub status: JobStatus,
    /// What started the run.
    pub trigger: RunKind,
    #[serde(default)]
    pub num_success: u64,
    #[serde(default)]
    pub num_error: u64,
    #[serde(default)]
    pub num_ignore: u64,
    /// Pages cut by the trigger so far (final once `pagingDone`).
    #[serde(default)]
    pub num_pages: u64,
    /// Pages that have left the last page processor.
    #[serde(default)]
    pub num_pages_done: u64,
    /// The trigger has read every record.
    #[serde(default)]
    pub paging_done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// The window of a delta run (`{{lastExportDateTime}}` .. `{{currentExportDateTime}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<DateTime<Utc>>,
    /// The exports this run reads over the delta window, each with where its window starts
    /// (its `{{lastExportDateTime}}`; null the first time). When the run completes, each
    /// one's watermark moves to `endDate`. Empty for runs fed with records, retries and
    /// backfills (an `endDate` given), which leave the watermarks where they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delta_exports: BTreeMap<String, Option<DateTime<Utc>>>,
    /// Why a failed job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
fn flow_type() -> String {
    "flow".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    CompletedWithErrors,
    Failed,
    Canceled,
}

impl JobStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::CompletedWithErrors | Self::Failed | Self::Canceled
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::CompletedWithErrors => "completed_with_errors",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }
}

impl Job {
    pub fn new(id: String, flow_id: String, trigger: RunKind, now: DateTime<Utc>) -> Self {
        Job {
            id,
            flow_id,
            export_id: None,
            flow_execution_group_id: None,
            kind: flow_type(),
            status: JobStatus::Running,
            trigger,
            num_success: 0,
            num_error: 0,
            num_ignore: 0,
            num_pages: 0,
            num_pages_done: 0,
            paging_done: false,
            started_at: Some(now),
            ended_at: None,
            created_at: Some(now),
            start_date: None,
            end_date: None,
            delta_exports: BTreeMap::new(),
            message: None,
        }
    }

    /// Every page cut has left the last processor: time to close the job.
    pub fn all_pages_done(&self) -> bool {
        self.paging_done && self.num_pages_done >= self.num_pages
    }

    /// The status a finished run gets from its counters.
    pub fn final_status(&self) -> JobStatus {
        if self.num_error > 0 {
            JobStatus::CompletedWithErrors
        } else {
            JobStatus::Completed
        }
    }
}

/// One record that failed, with what is needed to understand and retry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobError {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_jobId")]
    pub job_id: String,
    #[serde(rename = "_flowId")]
    pub flow_id: String,
    /// Index of the page processor that failed (-1: the export / trigger).
    pub processor_index: i64,
    #[serde(rename = "_importId", default, skip_serializing_if = "Option::is_none")]
    pub import_id: Option<String>,
    #[serde(rename = "_exportId", default, skip_serializing_if = "Option::is_none")]
    pub export_id: Option<String>,
    pub page_id: String,
    pub record_key: String,
    /// The record as it entered the failing processor.
    pub record: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    pub code: String,
    pub message: String,
    /// Key under which the record can be re-run (`POST /jobs/{id}/retry`).
    pub retry_data_key: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(default)]
    pub resolved: bool,
}
