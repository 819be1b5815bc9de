//! Jobs and their errors: listing jobs across flows, reading, filtering, editing, resolving
//! and downloading a job's errors, retrying failed records, and canceling a running job.

use crate::auth::Caller;
use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, Ids, Query};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::ports::{AuditEntry, ErrorQuery, JobQuery};
use sluice_core::runs;
use sluice_core::Sluice;
use sluice_model::api::Listing;
use sluice_model::{Job, JobError, JobStatus, RunStarted};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type St = State<Arc<Sluice>>;

/// The most a page holds; also the default.
const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

async fn load_job(s: &Sluice, id: &str) -> ApiResult<Job> {
    s.store
        .get_job(id)
        .await?
        .ok_or_else(|| ApiError::not_found("Job", id))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// Only jobs of this flow.
    #[serde(rename = "_flowId")]
    pub flow_id: Option<String>,
    /// Only jobs in this status.
    #[param(inline)]
    pub status: Option<JobStatus>,
    /// Only jobs created at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only jobs created before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Jobs per page (1 to 1000, default 100).
    pub limit: Option<usize>,
    /// The `nextCursor` of the page before.
    pub cursor: Option<String>,
}

fn page_size(limit: Option<usize>) -> ApiResult<usize> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(ApiError::validation(
            Some("limit".into()),
            format!("must be between 1 and {MAX_PAGE}, not {n}"),
        )),
    }
}

#[utoipa::path(get, path = "/jobs", tag = "jobs", operation_id = "listJobs", params(JobsQuery),
    responses((status = 200, description = "Jobs of every flow (or one), newest first, a page at a time", body = Listing<Job>)))]
pub async fn list_jobs(State(s): St, Query(q): Query<JobsQuery>) -> ApiResult<Json<Listing<Job>>> {
    let query = JobQuery {
        flow_id: q.flow_id,
        status: q.status,
        since: q.since,
        until: q.until,
        limit: page_size(q.limit)?,
        cursor: q.cursor,
    };
    Ok(Json(s.store.find_jobs(&query).await?))
}

#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", operation_id = "getJob", params(("id" = String, Path)),
    responses((status = 200, description = "The job, with `nextRetryAt` when an automatic retry of its errors is pending", body = Job)))]
pub async fn get_job(State(s): St, Ids(id): Ids<String>) -> ApiResult<Json<Job>> {
    Ok(Json(job_with_retry(&s, &id).await?))
}

/// The job with when its automatic retry is due (kept beside it in the store).
async fn job_with_retry(s: &Sluice, id: &str) -> ApiResult<Job> {
    let mut job = load_job(s, id).await?;
    job.next_retry_at = s.store.retry_at(id).await?;
    Ok(job)
}

/// How `GET /jobs/{id}/errors` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorsFormat {
    /// A page of errors as JSON.
    #[default]
    Json,
    /// Every matching error as a CSV download (no paging).
    Csv,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorsQuery {
    /// Only errors of this page processor (-1: the export).
    pub processor_index: Option<i64>,
    /// Only errors with this code (`evaluator`, `template`, `delivery_unknown`, ...).
    pub code: Option<sluice_model::FailureCode>,
    /// Only resolved (true) or unresolved (false) errors.
    pub resolved: Option<bool>,
    /// Errors per page (1 to 1000, default 100).
    pub limit: Option<usize>,
    /// The `nextCursor` of the page before.
    pub cursor: Option<String>,
    /// `json` (default) or `csv`.
    #[param(inline)]
    pub format: Option<ErrorsFormat>,
}

#[utoipa::path(get, path = "/jobs/{id}/errors", tag = "jobs", operation_id = "listJobErrors",
    params(("id" = String, Path), ErrorsQuery),
    responses((status = 200, description = "A page of the job's errors, ordered by _id; with format=csv every matching error as CSV",
        content((Listing<JobError> = "application/json"), (String = "text/csv")))))]
pub async fn job_errors(
    State(s): St,
    Ids(id): Ids<String>,
    Query(q): Query<ErrorsQuery>,
) -> ApiResult<Response> {
    load_job(&s, &id).await?;
    let mut query = ErrorQuery {
        processor_index: q.processor_index,
        code: q.code,
        resolved: q.resolved,
        limit: page_size(q.limit)?,
        cursor: q.cursor,
    };
    if q.format.unwrap_or_default() == ErrorsFormat::Json {
        return Ok(Json(s.store.find_errors(&id, &query).await?).into_response());
    }
    let mut csv = super::errors_csv::Writer::new();
    query.limit = MAX_PAGE;
    loop {
        let page = s.store.find_errors(&id, &query).await?;
        for e in &page.items {
            csv.write(e)?;
        }
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    let disposition = format!("attachment; filename=\"job-{id}-errors.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        csv.finish()?,
    )
        .into_response())
}

async fn load_error(s: &Sluice, job_id: &str, error_id: &str) -> ApiResult<JobError> {
    load_job(s, job_id).await?;
    s.store
        .list_errors(job_id)
        .await?
        .into_iter()
        .find(|e| e.id == error_id)
        .ok_or_else(|| ApiError::not_found("Error", error_id))
}

#[utoipa::path(get, path = "/jobs/{id}/errors/{errorId}", tag = "jobs", operation_id = "getJobError",
    params(("id" = String, Path), ("errorId" = String, Path)),
    responses((status = 200, description = "The error", body = JobError)))]
pub async fn get_error(
    State(s): St,
    Ids((id, error_id)): Ids<(String, String)>,
) -> ApiResult<Json<JobError>> {
    Ok(Json(load_error(&s, &id, &error_id).await?))
}

/// What `PUT /jobs/{id}/errors/{errorId}` may change; fields left out stay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"record": {"id": "A-1017", "total": 13}, "tags": ["fixed-total"]}))]
pub struct ErrorChanges {
    /// The record a retry sends (the retry data), corrected.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub record: Option<Value>,
    /// Replaces the error's tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub resolved: Option<bool>,
}

#[utoipa::path(put, path = "/jobs/{id}/errors/{errorId}", tag = "jobs", operation_id = "updateJobError",
    params(("id" = String, Path), ("errorId" = String, Path)),
    request_body = ErrorChanges,
    responses((status = 200, description = "The error as now stored", body = JobError)))]
pub async fn update_error(
    State(s): St,
    Ids((id, error_id)): Ids<(String, String)>,
    body: Body,
) -> ApiResult<Json<JobError>> {
    let changes: ErrorChanges = body.json()?;
    let mut error = load_error(&s, &id, &error_id).await?;
    if let Some(record) = changes.record {
        if error.processor_index < 0 {
            return Err(ApiError::validation(
                Some("record".into()),
                "this error is the export's: a retry reads the export again, it has no record to edit",
            ));
        }
        error.record = record;
    }
    if let Some(tags) = changes.tags {
        error.tags = tags;
    }
    if let Some(resolved) = changes.resolved {
        error.resolved = resolved;
    }
    if !s.store.update_error(&error).await? {
        return Err(ApiError::not_found("Error", &error_id));
    }
    Ok(Json(error))
}

/// Which errors a bulk change applies to.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"errorIds": ["9f1c2b3a4d5e6f708192a3b4-0-g0-p000001-r00017"]}))]
pub struct ErrorSelection {
    /// These errors; every error of the job when absent.
    #[serde(default)]
    pub error_ids: Option<Vec<String>>,
}

/// How many errors were changed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"updated": 3}))]
pub struct Changed {
    pub updated: usize,
}

async fn mark(s: &Sluice, id: &str, body: &Body, resolved: bool) -> ApiResult<Json<Changed>> {
    let selection: ErrorSelection = body.json_or_default()?;
    load_job(s, id).await?;
    let stored = s.store.list_errors(id).await?;
    let ids = match selection.error_ids {
        Some(ids) => {
            if let Some((i, missing)) = ids
                .iter()
                .enumerate()
                .find(|(_, e)| !stored.iter().any(|s| &&s.id == e))
            {
                return Err(ApiError::new(
                    crate::errors::ErrorCode::NotFound,
                    format!("Error not found in job {id}: {missing}"),
                    Some(format!("errorIds[{i}]")),
                ));
            }
            ids
        }
        None => stored.into_iter().map(|e| e.id).collect(),
    };
    let updated = s.store.mark_errors(id, &ids, resolved).await?;
    Ok(Json(Changed { updated }))
}

#[utoipa::path(post, path = "/jobs/{id}/errors/resolve", tag = "jobs", operation_id = "resolveJobErrors",
    params(("id" = String, Path)),
    request_body(content = Option<ErrorSelection>, description = "Optional: {\"errorIds\": [...]}; all the job's errors when absent"),
    responses((status = 200, description = "The errors are resolved: a retry of the job leaves them out", body = Changed)))]
pub async fn resolve_errors(
    State(s): St,
    Ids(id): Ids<String>,
    body: Body,
) -> ApiResult<Json<Changed>> {
    mark(&s, &id, &body, true).await
}

#[utoipa::path(post, path = "/jobs/{id}/errors/unresolve", tag = "jobs", operation_id = "unresolveJobErrors",
    params(("id" = String, Path)),
    request_body(content = Option<ErrorSelection>, description = "Optional: {\"errorIds\": [...]}; all the job's errors when absent"),
    responses((status = 200, description = "The errors are open again", body = Changed)))]
pub async fn unresolve_errors(
    State(s): St,
    Ids(id): Ids<String>,
    body: Body,
) -> ApiResult<Json<Changed>> {
    mark(&s, &id, &body, false).await
}

#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "jobs", operation_id = "retryJob", params(("id" = String, Path)),
    request_body(content = Option<ErrorSelection>, description = "Optional: {\"errorIds\": [...]}; all unresolved errors when absent"),
    responses((status = 201, description = "A retry run started: each record from the processor where it failed, with its (edited) retry data", body = RunStarted),
              (status = 409, description = "conflict: Flow is currently running", body = ErrorBody)))]
pub async fn retry_job(
    State(s): St,
    Ids(id): Ids<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<RunStarted>)> {
    let selection: ErrorSelection = body.json_or_default()?;
    load_job(&s, &id).await?;
    let started = runs::retry_errors(&s, &id, selection.error_ids).await?;
    Ok((StatusCode::CREATED, Json(started)))
}

#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs", operation_id = "cancelJob", params(("id" = String, Path)),
    responses((status = 200, description = "The job, canceled: no record of it is sent from now on; records not yet sent count as ignored; the flow's next waiting run starts. A finished job with an automatic retry pending: that retry is canceled (no more automatic retries of the job)", body = Job),
              (status = 404, description = "not_found", body = ErrorBody),
              (status = 409, description = "conflict: the job had already finished (and no automatic retry of it was pending)", body = ErrorBody)))]
pub async fn cancel_job(
    State(s): St,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> ApiResult<Json<Job>> {
    let job = load_job(&s, &id).await?;
    let message = format!(
        "canceled by {}: records not sent by then were not sent and count as ignored",
        caller.0
    );
    let action = if runs::cancel_job(&s, &id, message, runs::Then::StartNext).await? {
        "cancel"
    } else if runs::cancel_auto_retry(&s, &id).await? {
        "cancelAutoRetry"
    } else {
        let status = load_job(&s, &id).await?.status;
        return Err(ApiError::conflict(format!(
            "Job {id} had already finished ({}) and no automatic retry of it is pending: there is nothing to cancel",
            status.as_str()
        )));
    };
    let entry = AuditEntry::of_job(&job.flow_id, &id, action, &caller.0, s.clock.now());
    s.store.append_audit(&entry).await?;
    Ok(Json(job_with_retry(&s, &id).await?))
}

pub fn routes() -> axum::Router<Arc<Sluice>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/errors", get(job_errors))
        .route("/jobs/{id}/errors/resolve", post(resolve_errors))
        .route("/jobs/{id}/errors/unresolve", post(unresolve_errors))
        .route(
            "/jobs/{id}/errors/{errorId}",
            get(get_error).put(update_error),
        )
        .route("/jobs/{id}/retry", post(retry_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
}
