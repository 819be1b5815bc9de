//! A flow's failure alert for a closed job (`alerts` on the flow): posted to its webhook and
//! mailed to its recipients by deliver, with the after-process callbacks, because deliver is
//! the stage that sends requests (and, on AWS, the one function that links a mail client).
//!
//! Invariant: at most one alert per flow per quiet period, however many processes close
//! jobs at once and however often the closed job's message is delivered: the flow's last
//! alert (`flow:{id}:alert`, "<ms> <job id>") is moved on with the store's compare-and-set
//! before anything is posted, and only the caller whose swap wins posts. Best effort, like a
//! callback: an alert that cannot be posted or mailed is logged, and the quiet period still
//! runs. Both channels carry the same words ([`Alert`]): the webhook's `text` is the mail's
//! body.

use super::callbacks::post_callback;
use crate::ports::Mail;
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
    let alert = Alert::new(flow, job, &errors, sluice.settings.public_url.as_deref());
    if let Some(webhook) = &alerts.webhook {
        post_callback(sluice, "alerts.webhook", webhook, &alert.json).await;
    }
    if let Some(email) = &alerts.email {
        let mail = Mail {
            to: email.to.clone(),
            subject: alert.subject,
            text: alert.text,
        };
        match sluice.mailer.send(&mail).await {
            Ok(()) => {
                tracing::info!(flow = %flow.id, job = %job.id, to = mail.to.len(), "alert mailed")
            }
            Err(e) => {
                tracing::warn!(flow = %flow.id, job = %job.id, error = %e, "alert not mailed")
            }
        }
    }
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

/// What an alert says: a subject line, the text (the mail's body, the webhook's `text`), and
/// the webhook's JSON (Slack's `text`, so Slack, Mattermost or Teams' Slack-compatible
/// endpoint shows it, and the job, its first errors and where to read them beside it).
struct Alert {
    subject: String,
    text: String,
    json: Value,
}

impl Alert {
    /// Links are API paths, made absolute with the deployment's public URL when it has one.
    fn new(flow: &Flow, job: &Job, errors: &[JobError], public_url: Option<&str>) -> Alert {
        let (headline, outcome) = match job.status {
            sluice_model::JobStatus::Failed => (
                "failed".to_string(),
                format!(
                    "failed: {}",
                    job.message.as_deref().unwrap_or("see the job")
                ),
            ),
            _ => (
                format!("completed with {} error(s)", job.num_error),
                format!(
                    "completed with {} error(s) ({} succeeded, {} ignored)",
                    job.num_error, job.num_success, job.num_ignore
                ),
            ),
        };
        let base = public_url.unwrap_or("").trim_end_matches('/');
        let job_link = format!("{base}/jobs/{}", job.id);
        let errors_link = format!("{job_link}/errors");
        let subject = format!("Sluice: flow \"{}\" job {} {headline}", flow.name, job.id);
        let mut text = format!(
            "Sluice: flow \"{}\" ({}) job {} {outcome}.",
            flow.name, flow.id, job.id
        );
        for e in errors.iter().take(FIRST_ERRORS) {
            text.push_str(&format!("\n• {}: {}", e.code, e.message));
        }
        text.push_str(&format!("\nErrors: GET {errors_link}"));
        let first: Vec<Value> = errors
            .iter()
            .take(FIRST_ERRORS)
            .map(|e| json!({"code": e.code, "message": e.message, "recordKey": e.record_key}))
            .collect();
        let json = json!({
            "text": text,
            "flowId": flow.id,
            "flowName": flow.name,
            "jobId": job.id,
            "status": job.status,
            "numSuccess": job.num_success,
            "numError": job.num_error,
            "numIgnore": job.num_ignore,
            "firstErrors": first,
            "links": {"job": job_link, "errors": errors_link},
        });
        Alert {
            subject,
            text,
            json,
        }
    }
}
