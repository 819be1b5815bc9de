//! Automatic retry (Cenit's "Auto Retry: automatic"): a flow's `autoRetry` setting, where a
//! job stands in its chain of automatic retries, and the one rule that says which failed
//! records an automatic retry may send again ([`JobError::auto_retry`]).
//!
//! Invariant kept here: an automatic retry never sends again a record that may have reached
//! its target unless the step says sending it twice is harmless. A record that succeeded is
//! never in a retry at all (only a job's errors are retried, each once: it is resolved when
//! its retry is kept).

use crate::{FailureCode, JobError, ValidationErrors};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The delays of the default schedule, in seconds: 5 s, 1 min, 3 min, 5 min, 10 min,
/// 30 min, 1 h, then daily (the last delay repeats).
pub const DEFAULT_SCHEDULE_SECONDS: [u32; 8] = [5, 60, 180, 300, 600, 1800, 3600, 86_400];
/// Automatic retries of one job's errors by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// The most automatic retries a flow may ask for.
pub const MAX_ATTEMPTS: u32 = 50;
/// The longest delay between two automatic retries (a week).
pub const MAX_DELAY_SECONDS: u32 = 7 * 86_400;
/// The most delays a schedule may list.
pub const MAX_SCHEDULE_LEN: usize = 50;

/// `autoRetry` of a flow: retry a job's retryable errors on a backoff schedule, as retry
/// jobs linked to the job they retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"on": true, "scheduleSeconds": [5, 60, 180, 300, 600, 1800, 3600, 86400],
    "maxAttempts": 10}))]
pub struct AutoRetry {
    /// Whether jobs are retried automatically (default true; false pauses it: pending
    /// automatic retries of the flow are dropped when they come due).
    #[serde(default = "yes")]
    pub on: bool,
    /// Seconds to wait before each automatic retry, counted from the end of the job before
    /// it; the last delay repeats for later attempts. Each 1 to 604800 (a week). Due retries
    /// start on the minute tick, so a delay is honoured to the minute after it (5 s means "at
    /// the next tick"). Default 5, 60, 180, 300, 600, 1800, 3600, 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_seconds: Option<Vec<u32>>,
    /// Automatic retries of one job's errors at most, 1 to 50 (default 10). The chain also
    /// stops when a retry leaves no retryable error.
    #[serde(
        default,
        deserialize_with = "crate::parse::count",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_attempts: Option<u32>,
}

fn yes() -> bool {
    true
}

impl AutoRetry {
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    /// The wait before automatic retry `attempt` (1 for the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let schedule = self
            .schedule_seconds
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&DEFAULT_SCHEDULE_SECONDS);
        let i = (attempt.max(1) as usize - 1).min(schedule.len() - 1);
        Duration::seconds(schedule[i].into())
    }

    /// When automatic retry `attempt` is due, for a job that ended at `ended`; `None` when
    /// the setting is off or `attempt` is past the maximum.
    pub fn due(&self, attempt: u32, ended: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.on && attempt <= self.max_attempts()).then(|| ended + self.delay(attempt))
    }

    pub(crate) fn validate_into(&self, e: &mut ValidationErrors, at: &str) {
        if let Some(max) = self.max_attempts {
            if !(1..=MAX_ATTEMPTS).contains(&max) {
                e.add(
                    format!("{at}.maxAttempts"),
                    format!("must be between 1 and {MAX_ATTEMPTS}, not {max}"),
                );
            }
        }
        let Some(schedule) = &self.schedule_seconds else {
            return;
        };
        if schedule.is_empty() || schedule.len() > MAX_SCHEDULE_LEN {
            e.add(
                format!("{at}.scheduleSeconds"),
                format!("must list 1 to {MAX_SCHEDULE_LEN} delays (leave it out for the default schedule)"),
            );
        }
        for (i, s) in schedule.iter().enumerate() {
            if !(1..=MAX_DELAY_SECONDS).contains(s) {
                e.add(
                    format!("{at}.scheduleSeconds[{i}]"),
                    format!("must be between 1 and {MAX_DELAY_SECONDS} seconds (a week), not {s}"),
                );
            }
        }
    }
}

/// Where an automatic retry job stands in its chain (`autoRetry` of a job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"attempt": 2, "maxAttempts": 10,
    "_originalJobId": "9f1c2b3a4d5e6f708192a3b4"}))]
pub struct RetryAttempt {
    /// 1 for the first automatic retry of the original job, 2 for the retry of that, ...
    pub attempt: u32,
    /// The flow's `autoRetry.maxAttempts` when this attempt started.
    pub max_attempts: u32,
    /// The job whose errors the chain began with.
    #[serde(rename = "_originalJobId")]
    pub original_job_id: String,
}

/// What an automatic retry may do with a failed record ([`JobError::auto_retry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// It never reached the target, or the target declined it without acting (429, 503):
    /// sending it again is safe.
    Yes,
    /// The target may have acted on it (a 500, 502, 504 or 408 reply): sent again only when
    /// its step sends again after such failures (lookups, idempotent methods, an import's
    /// `http.retryAmbiguous` or idempotency key).
    IfStepResends,
    /// Retrying cannot help (the record, a template or a setting is wrong) or may act twice
    /// (`delivery_unknown`, `maybe_delivered`, `no_reply`, `dead_letter`): a person decides.
    No,
}

impl JobError {
    /// Whether an automatic retry may send this record again. Errors of the export itself
    /// (processor -1) are never retried automatically: retrying them reads the export again,
    /// which would send again records that succeeded.
    pub fn auto_retry(&self) -> Resend {
        if self.processor_index < 0 || self.resolved {
            return Resend::No;
        }
        match self.code {
            FailureCode::Network
            | FailureCode::Limits
            | FailureCode::Upload
            | FailureCode::Sftp => Resend::Yes,
            FailureCode::Evaluator => match self.reply_status() {
                Some(429 | 503) => Resend::Yes,
                Some(408 | 500 | 502 | 504) => Resend::IfStepResends,
                _ => Resend::No,
            },
            _ => Resend::No,
        }
    }

    /// The status of the reply kept with the error, if one is.
    fn reply_status(&self) -> Option<u64> {
        self.response.as_ref()?.get("status")?.as_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn setting(v: serde_json::Value) -> AutoRetry {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_default_schedule_backs_off_then_waits_a_day_until_the_maximum() {
        let s = setting(serde_json::json!({}));
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert!(s.on);
        assert_eq!(s.due(1, t0), Some(t0 + Duration::seconds(5)));
        assert_eq!(s.due(7, t0), Some(t0 + Duration::hours(1)));
        assert_eq!(s.due(8, t0), Some(t0 + Duration::days(1)));
        assert_eq!(
            s.due(10, t0),
            Some(t0 + Duration::days(1)),
            "the last repeats"
        );
        assert_eq!(s.due(11, t0), None, "past maxAttempts");
        let off = setting(serde_json::json!({"on": false}));
        assert_eq!(off.due(1, t0), None);
        let own = setting(serde_json::json!({"scheduleSeconds": [1, 2], "maxAttempts": 3}));
        assert_eq!(own.due(3, t0), Some(t0 + Duration::seconds(2)));
        assert_eq!(own.due(4, t0), None);
    }

    #[test]
    fn validation_names_the_field() {
        let mut e = ValidationErrors::new();
        setting(serde_json::json!({"scheduleSeconds": [5, 0, 700000], "maxAttempts": 51}))
            .validate_into(&mut e, "autoRetry");
        let fields: Vec<String> = e.0.into_iter().map(|f| f.field).collect();
        assert_eq!(
            fields,
            [
                "autoRetry.maxAttempts",
                "autoRetry.scheduleSeconds[1]",
                "autoRetry.scheduleSeconds[2]"
            ]
        );
        let mut e = ValidationErrors::new();
        setting(serde_json::json!({"scheduleSeconds": []})).validate_into(&mut e, "autoRetry");
        assert!(e.into_result().is_err(), "an empty schedule is refused");
    }
}
