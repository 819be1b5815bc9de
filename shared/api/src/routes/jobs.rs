//! Jobs and their errors, and retrying failed records.

use crate::errors::{ApiError, ApiResult, Body};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use sluice_core::runs;
use sluice_core::Sluice;
use sluice_model::RunStarted;
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

pub fn routes() -> axum::Router<Arc<Sluice>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/errors", get(job_errors))
        .route("/jobs/{id}/retry", post(retry_job))
}
