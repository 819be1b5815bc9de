//! Jobs and their errors, retrying failed records, and canceling a running job.

use crate::auth::Caller;
use crate::errors::{ApiError, ApiResult, Body};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::ports::{AuditEntry, Kind};
use sluice_core::runs;
use sluice_core::Sluice;
use sluice_model::{new_id, RunStarted};
use std::sync::Arc;

type St = State<Arc<Sluice>>;

async fn job_exists(s: &Sluice, id: &str) -> ApiResult<Value> {
    let job = s
        .store
        .get_job(id)
        .await?
        .ok_or_else(|| ApiError::not_found("Job", id))?;
    Ok(serde_json::to_value(job).map_err(anyhow::Error::from)?)
}

#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, description = "The job", body = serde_json::Value),
              (status = 404, description = "not_found")))]
pub async fn get_job(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(job_exists(&s, &id).await?))
}

#[utoipa::path(get, path = "/jobs/{id}/errors", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, description = "The job's errors", body = Vec<serde_json::Value>),
              (status = 404, description = "not_found")))]
pub async fn job_errors(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    job_exists(&s, &id).await?;
    let errors = s.store.list_errors(&id).await?;
    Ok(Json(
        serde_json::to_value(errors).map_err(anyhow::Error::from)?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryRequest {
    #[serde(default)]
    pub error_ids: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path)),
    request_body(content = serde_json::Value, description = "Optional: {\"errorIds\": [...]}"),
    responses((status = 201, description = "{_jobId, flowExecutionGroupId}", body = serde_json::Value),
              (status = 404, description = "not_found")))]
pub async fn retry_job(
    State(s): St,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<RunStarted>)> {
    let request: RetryRequest = if body.is_blank() {
        RetryRequest::default()
    } else {
        body.parse()?
    };
    job_exists(&s, &id).await?;
    let started = runs::retry_errors(&s, &id, request.error_ids).await?;
    Ok((StatusCode::CREATED, Json(started)))
}

#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, description = "The job, canceled: no record of it is sent from now on; records not yet sent count as ignored", body = serde_json::Value),
              (status = 404, description = "not_found"),
              (status = 409, description = "conflict: the job had already finished")))]
pub async fn cancel_job(
    State(s): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let job = job_exists(&s, &id).await?;
    let message = format!(
        "canceled by {}: records not sent by then were not sent and count as ignored",
        caller.0
    );
    if !runs::cancel_job(&s, &id, message, runs::Then::StartNext).await? {
        let status = job["status"].as_str().unwrap_or("finished");
        return Err(ApiError::conflict(format!(
            "Job {id} had already finished ({status}): there is nothing to cancel"
        )));
    }
    let flow_id = job["_flowId"].as_str().unwrap_or_default().to_string();
    let entry = AuditEntry {
        id: new_id(),
        resource_type: Kind::Flow,
        resource_id: flow_id,
        action: "cancel".into(),
        time: s.clock.now(),
        actor: caller.0,
        changes: json!({ "_jobId": id }),
    };
    s.store.append_audit(&entry).await?;
    Ok(Json(job_exists(&s, &id).await?))
}

pub fn routes() -> axum::Router<Arc<Sluice>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/errors", get(job_errors))
        .route("/jobs/{id}/retry", post(retry_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
}
