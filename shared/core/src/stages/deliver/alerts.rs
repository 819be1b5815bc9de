//! A flow's failure alert for a closed job (`alerts` on the flow): posted by deliver, with
//! the after-process callbacks, because deliver is the stage that sends requests.
//!
//! Invariant: at most one alert per flow per quiet period, however many processes close
//! jobs at once and however often the closed job's message is delivered: the flow's last
//! alert (`flow:{id}:alert`, "<ms> <job id>") is moved on with the store's compare-and-set
//! before anything is posted, and only the caller whose swap wins posts. Best effort, like a
//! callback: an alert that cannot be posted is logged, and the quiet period still runs.

use super::callbacks::post_callback;
use crate::Sluice;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_model::{Flow, FlowAlerts, Job, JobError};

/// How many of the job's errors an alert quotes.
const FIRST_ERRORS: usize = 3;

/// Posts `job`'s alert if the flow alerts on it and its quiet period allows.
pub(super) async fn alert(sluice: &Sluice, flow: &Flow, job: &Job) {
    let Some(alerts) = flow.alerts.as_ref().filter(|a| a.wants(job)) else {
        return;
    };
    match claim(sluice, &flow.id, job, alerts).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(flow = %flow.id, job = %job.id, "alert not sent: the flow's quiet period runs");
            return;
        }
        Err(e) => {
            tracing::warn!(flow = %flow.id, job = %job.id, error = %e, "alert not sent: its quiet period could not be read");
            return;
        }
    }
    let errors = match sluice.store.list_errors(&job.id).await {
        Ok(errors) => errors,
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "alert sent without its errors");
            Vec::new()
        }
    };
    let body = message(flow, job, &errors);
    post_callback(sluice, "alerts.webhook", &alerts.webhook, &body).await;
}

/// Takes the flow's alert turn for `job`: false when the quiet period since the last alert
/// has not run out, when this job's alert went already, or when another caller took it.
async fn claim(
    sluice: &Sluice,
    flow_id: &str,
    job: &Job,
    alerts: &FlowAlerts,
) -> anyhow::Result<bool> {
    let key = format!("flow:{flow_id}:alert");
    let now = sluice.clock.now();
    let last = sluice.store.get_state(&key).await?;
    if let Some((at, job_id)) = last.as_ref().and_then(parse_last) {
        if job_id == job.id || now < at + alerts.quiet() {
            return Ok(false);
        }
    }
    let next = json!(format!("{} {}", now.timestamp_millis(), job.id));
    sluice.store.swap_state(&key, last.as_ref(), &next).await
}

/// The stored last alert: when, and for which job.
fn parse_last(v: &Value) -> Option<(DateTime<Utc>, &str)> {
    let (ms, job_id) = v.as_str()?.split_once(' ')?;
    Some((DateTime::from_timestamp_millis(ms.parse().ok()?)?, job_id))
}

/// The alert's JSON: Slack's `text` (a webhook of Slack, Mattermost or Teams' Slack-compatible
/// endpoint shows it), and the job, its first errors and where to read them beside it.
fn message(flow: &Flow, job: &Job, errors: &[JobError]) -> Value {
    let outcome = match job.status {
        sluice_model::JobStatus::Failed => format!(
            "failed: {}",
            job.message.as_deref().unwrap_or("see the job")
        ),
        _ => format!(
            "completed with {} error(s) ({} succeeded, {} ignored)",
            job.num_error, job.num_success, job.num_ignore
        ),
    };
    let first: Vec<Value> = errors
        .iter()
        .take(FIRST_ERRORS)
        .map(|e| json!({"code": e.code, "message": e.message, "recordKey": e.record_key}))
        .collect();
    let mut text = format!(
        "Sluice: flow \"{}\" ({}) job {} {outcome}.",
        flow.name, flow.id, job.id
    );
    for e in errors.iter().take(FIRST_ERRORS) {
        text.push_str(&format!("\n• {}: {}", e.code, e.message));
    }
    let job_path = format!("/jobs/{}", job.id);
    text.push_str(&format!("\nErrors: GET {job_path}/errors"));
    json!({
        "text": text,
        "flowId": flow.id,
        "flowName": flow.name,
        "jobId": job.id,
        "status": job.status,
        "numSuccess": job.num_success,
        "numError": job.num_error,
        "numIgnore": job.num_ignore,
        "firstErrors": first,
        "links": {"job": job_path, "errors": format!("{job_path}/errors")},
    })
}
