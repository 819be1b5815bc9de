//! Backoff with full jitter, and Retry-After.

use rand::Rng;
use sluice_model::RetryPolicy;
use std::time::Duration;

/// 429 and 5xx are worth another try; other statuses are the target's answer.
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

/// The wait before attempt `attempt + 1`: the server's Retry-After when given (capped at the
/// policy's max), else a random delay up to base * 2^(attempt-1), capped ("full jitter").
pub fn backoff_delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let max = Duration::from_millis(policy.max_delay_ms);
    if let Some(hint) = retry_after {
        return hint.min(max);
    }
    let ceiling = policy
        .base_delay_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
        .min(policy.max_delay_ms);
    let jittered = rand::rng().random_range(ceiling / 2..=ceiling.max(1));
    Duration::from_millis(jittered)
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}
