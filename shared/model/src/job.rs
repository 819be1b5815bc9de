use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::run::RunKind;
use std::collections::{BTreeMap, BTreeSet};

/// One run of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"_id": "9f1c2b3a4d5e6f708192a3b4", "_flowId": "orders-to-erp",
    "_exportId": "new-orders", "flowExecutionGroupId": "0a1b2c3d4e5f60718293a4b5",
    "type": "flow", "status": "completed_with_errors", "trigger": "schedule",
    "numSuccess": 498, "numError": 2, "numIgnore": 0, "numPages": 3, "numPagesDone": 3,
    "pagingDone": true, "startedAt": "2026-11-22T10:15:00.041Z",
    "endedAt": "2026-11-22T10:15:07.913Z", "createdAt": "2026-11-22T10:15:00.041Z",
    "startDate": "2026-11-22T10:00:00.012Z", "endDate": "2026-11-22T10:15:00.041Z"}))]
pub struct Job {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_flowId")]
    pub flow_id: String,
    /// The first export read.
    #[serde(rename = "_exportId", default, skip_serializing_if = "Option::is_none")]
    pub export_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_execution_group_id: Option<String>,
    /// Always `flow`.
    #[serde(rename = "type", default = "flow_type")]
    pub kind: String,
    pub status: JobStatus,
    /// What started the run.
    pub trigger: RunKind,
    /// Records that reached the end of the flow.
    #[serde(default)]
    pub num_success: u64,
    /// Records that failed (each one a job error).
    #[serde(default)]
    pub num_error: u64,
    /// Records filtered out.
    #[serde(default)]
    pub num_ignore: u64,
    /// Pages cut by the trigger so far (final once `pagingDone`).
    #[serde(default)]
    pub num_pages: u64,
    /// Pages that have left the last page processor.
    #[serde(default)]
    pub num_pages_done: u64,
    /// Pages routers added: a page that went down k branches became k pages, k - 1 of them
    /// new. The job's pages are all done when numPagesDone = numPages + numBranchPages.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_branch_pages: u64,
    /// The trigger has read every record.
    #[serde(default)]
    pub paging_done: bool,
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<DateTime<Utc>>,
    /// Set when the job finished.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<DateTime<Utc>>,
    /// The window of a delta run (`{{lastExportDateTime}}` .. `{{currentExportDateTime}}`).
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_date: Option<DateTime<Utc>>,
    /// The end of the delta window.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
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
    /// The `{{page.index}}` of this job's first page. 0 for a run; a retry numbers its pages
    /// on from the jobs of its `flowExecutionGroupId` before it, so files named by page index
    /// are never replaced by a retry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_page_index: u64,
    /// The definitions the run uses, as they were when it started. None of them can be
    /// deleted while the job runs, even once the flow no longer lists it.
    #[serde(default, skip_serializing_if = "RunUses::is_empty")]
    pub uses: RunUses,
    /// A retry (by hand or automatic): the job whose errors it runs again.
    #[serde(rename = "_retryOf", default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// An automatic retry: its attempt in the chain that began with `_originalJobId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_retry: Option<crate::RetryAttempt>,
    /// When the flow's automatic retry of this job's retryable errors is due (answered by
    /// `GET /jobs/{id}`; absent when none is pending). Started on the minute tick after it.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_retry_at: Option<DateTime<Utc>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The exports, imports (lookups included among the exports) and connections a run reads
/// or writes through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunUses {
    #[serde(
        rename = "_exportIds",
        default,
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub export_ids: BTreeSet<String>,
    #[serde(
        rename = "_importIds",
        default,
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub import_ids: BTreeSet<String>,
    #[serde(
        rename = "_connectionIds",
        default,
        skip_serializing_if = "BTreeSet::is_empty"
    )]
    pub connection_ids: BTreeSet<String>,
}

impl RunUses {
    pub fn is_empty(&self) -> bool {
        self.export_ids.is_empty() && self.import_ids.is_empty() && self.connection_ids.is_empty()
    }
}
fn flow_type() -> String {
    "flow".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    /// Every record succeeded or was ignored.
    Completed,
    /// Finished; some records failed (see the job's errors).
    CompletedWithErrors,
    /// The run itself failed (the export could not be read, ...): see `message`.
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
            num_branch_pages: 0,
            paging_done: false,
            started_at: Some(now),
            ended_at: None,
            created_at: Some(now),
            start_date: None,
            end_date: None,
            delta_exports: BTreeMap::new(),
            message: None,
            first_page_index: 0,
            uses: RunUses::default(),
            retry_of: None,
            auto_retry: None,
            next_retry_at: None,
        }
    }

    /// Every page cut has left the last processor: time to close the job.
    pub fn all_pages_done(&self) -> bool {
        self.paging_done && self.num_pages_done >= self.num_pages + self.num_branch_pages
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"_id": "9f1c2b3a4d5e6f708192a3b4-0-g0-p000001-r00017",
    "_jobId": "9f1c2b3a4d5e6f708192a3b4", "_flowId": "orders-to-erp", "processorIndex": 0,
    "_importId": "post-order", "stepName": "Create each order", "pageId": "g0-p000001",
    "recordKey": "g0-p000001-r00017", "record": {"id": "A-1017", "total": 12.5},
    "request": {"method": "POST", "url": "https://api.example.com/v1/orders"},
    "response": {"status": 422, "body": {"error": "total must be a whole number"}},
    "code": "evaluator", "message": "status 422: evaluator `response.status == 201` is false",
    "retryDataKey": "9f1c2b3a4d5e6f708192a3b4/g0-p000001-r00017",
    "occurredAt": "2026-11-22T10:15:03.417Z", "resolved": false, "tags": ["needs-erp-fix"]}))]
pub struct JobError {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_jobId")]
    pub job_id: String,
    #[serde(rename = "_flowId")]
    pub flow_id: String,
    /// Index of the page processor that failed (-1: the export / trigger).
    pub processor_index: i64,
    /// The import of the failing step (an import processor).
    #[serde(rename = "_importId", default, skip_serializing_if = "Option::is_none")]
    pub import_id: Option<String>,
    /// The export of the failing step (the page generator, or a lookup processor).
    #[serde(rename = "_exportId", default, skip_serializing_if = "Option::is_none")]
    pub export_id: Option<String>,
    /// The name of that import or export, as it was when the error happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_name: Option<String>,
    pub page_id: String,
    pub record_key: String,
    /// The record as it entered the failing processor: what a retry sends again
    /// (`PUT /jobs/{id}/errors/{errorId}` may change it first).
    pub record: Value,
    /// The rendered request, credentials masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    /// The reply: status, headers, body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    /// Why: `evaluator` (the reply was judged a failure), `template`, `mapping`,
    /// `delivery_unknown`, `dead_letter`, `export` (the source could not be read), ...
    pub code: crate::FailureCode,
    pub message: String,
    /// Key under which the record can be re-run (`POST /jobs/{id}/retry`).
    pub retry_data_key: String,
    #[serde(with = "crate::time::ms")]
    pub occurred_at: DateTime<Utc>,
    /// A resolved error is not retried by a retry of the whole job.
    #[serde(default)]
    pub resolved: bool,
    /// Labels people put on errors to sort them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}
