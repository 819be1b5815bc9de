//! A flow's failure alerts: which closed jobs are announced, how often at most, and where
//! (a Slack-compatible webhook, e-mail, or both). [`FlowAlerts::wants`] is the one rule that
//! says whether a job is worth an alert; the deliver stage sends it
//! (`stages/deliver/alerts.rs`).

use crate::{Callback, Job, JobStatus, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which jobs alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertOn {
    /// Only a job that failed (its export could not be read, or it was abandoned).
    Failed,
    /// A failed job, and one that completed with at least `minErrors` record errors.
    #[default]
    Errors,
}

/// `alerts` of a flow: tell someone when its jobs fail, without telling them every minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"on": "errors", "minErrors": 10, "quietMinutes": 60,
    "webhook": {"url": "https://hooks.slack.com/services/T000/B000/XXXX"},
    "email": {"to": ["integrations@example.com"]}}))]
pub struct FlowAlerts {
    /// Which jobs alert: `errors` (default) or `failed`.
    #[serde(default)]
    pub on: AlertOn,
    /// With `on: errors`: the fewest record errors a completed job has to alert (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_errors: Option<u64>,
    /// At most one alert per flow in this many minutes (default 60; 0 alerts every job).
    /// The jobs in between are not announced: the next alert's job is the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_minutes: Option<u32>,
    /// Where the alert is posted: Slack-compatible JSON (`text`, with the job and its first
    /// errors beside it); headers may carry `secret:NAME` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Callback>,
    /// Who the alert is mailed to (SES on AWS, SMTP locally), from the deployment's sender
    /// address (`SLUICE_MAIL_FROM`). A flow alerts by webhook, by e-mail, or both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<AlertEmail>,
}

/// `alerts.email`: the recipients of a flow's alert mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertEmail {
    /// Addresses (`name@example.com` or `Name <name@example.com>`), at most 50.
    pub to: Vec<String>,
}

/// The most recipients one alert mail has (SES takes 50 per message).
pub const MAX_ALERT_RECIPIENTS: usize = 50;

/// Default quiet period between two alerts of a flow.
pub const DEFAULT_QUIET_MINUTES: u32 = 60;
/// The longest quiet period (a week).
pub const MAX_QUIET_MINUTES: u32 = 7 * 24 * 60;

impl FlowAlerts {
    /// Is `job` (closed) one this flow alerts on?
    pub fn wants(&self, job: &Job) -> bool {
        match job.status {
            JobStatus::Failed => true,
            JobStatus::CompletedWithErrors => {
                self.on == AlertOn::Errors && job.num_error >= self.min_errors.unwrap_or(1)
            }
            _ => false,
        }
    }

    pub fn quiet(&self) -> chrono::Duration {
        chrono::Duration::minutes(self.quiet_minutes.unwrap_or(DEFAULT_QUIET_MINUTES).into())
    }

    pub(crate) fn validate_into(&self, e: &mut ValidationErrors, at: &str) {
        match (&self.webhook, &self.email) {
            (None, None) => e.add(
                at.to_string(),
                "says where to send alerts: a webhook, an email, or both",
            ),
            (Some(webhook), _) if url::Url::parse(&webhook.url).is_err() => e.add(
                format!("{at}.webhook.url"),
                format!("'{}' is not a URL", webhook.url),
            ),
            _ => {}
        }
        if let Some(email) = &self.email {
            email.validate_into(e, &format!("{at}.email"));
        }
        if self.min_errors == Some(0) {
            e.add(
                format!("{at}.minErrors"),
                "must be at least 1 (leave it out to alert on any error)",
            );
        }
        if self.min_errors.is_some() && self.on == AlertOn::Failed {
            e.add(
                format!("{at}.minErrors"),
                "is not read with on: failed (a failed job always alerts): remove it, or use on: errors",
            );
        }
        if self.quiet_minutes.is_some_and(|m| m > MAX_QUIET_MINUTES) {
            e.add(
                format!("{at}.quietMinutes"),
                format!("must be at most {MAX_QUIET_MINUTES} (a week)"),
            );
        }
    }
}

impl AlertEmail {
    fn validate_into(&self, e: &mut ValidationErrors, at: &str) {
        if self.to.is_empty() {
            e.add(format!("{at}.to"), "names at least one address");
        }
        if self.to.len() > MAX_ALERT_RECIPIENTS {
            e.add(
                format!("{at}.to"),
                format!("names at most {MAX_ALERT_RECIPIENTS} addresses"),
            );
        }
        for (i, address) in self.to.iter().enumerate() {
            if let Err(why) = address.parse::<email_address::EmailAddress>() {
                e.add(
                    format!("{at}.to[{i}]"),
                    format!("'{address}' is not an e-mail address ({why})"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alerts(v: serde_json::Value) -> FlowAlerts {
        serde_json::from_value(v).unwrap()
    }

    fn job(status: JobStatus, errors: u64) -> Job {
        let mut job = Job::new(
            "j".into(),
            "f".into(),
            crate::RunKind::Manual,
            chrono::Utc::now(),
        );
        job.status = status;
        job.num_error = errors;
        job
    }

    #[test]
    fn a_failed_job_always_alerts_and_errors_from_the_threshold_on() {
        let hook = json!({"url": "http://127.0.0.1:9/hook"});
        let on_errors = alerts(json!({"minErrors": 3, "webhook": hook}));
        assert!(on_errors.wants(&job(JobStatus::Failed, 0)));
        assert!(!on_errors.wants(&job(JobStatus::CompletedWithErrors, 2)));
        assert!(on_errors.wants(&job(JobStatus::CompletedWithErrors, 3)));
        assert!(!on_errors.wants(&job(JobStatus::Completed, 0)));
        assert!(!on_errors.wants(&job(JobStatus::Canceled, 5)));
        let on_failed = alerts(json!({"on": "failed", "webhook": hook}));
        assert!(on_failed.wants(&job(JobStatus::Failed, 0)));
        assert!(!on_failed.wants(&job(JobStatus::CompletedWithErrors, 50)));
        assert_eq!(on_failed.quiet(), chrono::Duration::minutes(60));
    }

    #[test]
    fn names_each_bad_field() {
        let mut e = ValidationErrors::new();
        alerts(
            json!({"on": "failed", "minErrors": 0, "quietMinutes": 20000,
            "webhook": {"url": "not a url"},
            "email": {"to": ["ops@example.com", "not an address"]}}),
        )
        .validate_into(&mut e, "alerts");
        let fields: Vec<_> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "alerts.webhook.url",
                "alerts.email.to[1]",
                "alerts.minErrors",
                "alerts.minErrors",
                "alerts.quietMinutes"
            ]
        );
    }

    #[test]
    fn alerts_go_somewhere() {
        let mut e = ValidationErrors::new();
        alerts(json!({"on": "failed"})).validate_into(&mut e, "alerts");
        alerts(json!({"email": {"to": []}})).validate_into(&mut e, "alerts");
        let fields: Vec<_> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["alerts", "alerts.email.to"]);
        let mut ok = ValidationErrors::new();
        alerts(json!({"email": {"to": ["ops@example.com"]}})).validate_into(&mut ok, "alerts");
        assert!(ok.0.is_empty(), "{ok:?}");
    }
}
