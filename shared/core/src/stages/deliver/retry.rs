//! Which failed attempts are sent again, backoff with full jitter, and Retry-After.
//!
//! Sent again: a request that never reached the target (no connection), and one the target
//! declined without acting on it (429, 503). Sent again only where the import allows
//! ([`Ambiguous::Retry`]; always for reads and idempotent methods): a failure after which the
//! target may have acted — a timeout or a connection dropped after the request went out, any
//! other 5xx. Not sent again: every other answer, a refused address, a request that cannot
//! be built.

use super::send::SendError;
use rand::Rng;
use sluice_model::{Reply, RetryPolicy};
use std::time::Duration;

/// Whether failures after which the target may have acted on the request are sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguous {
    Retry,
    Fail,
}

/// After an attempt: `Some(hint)` to try again (after the server's Retry-After, if it gave
/// one), `None` when the result stands.
pub(crate) fn again(
    result: &Result<Reply, SendError>,
    ambiguous: Ambiguous,
) -> Option<Option<Duration>> {
    let hint = |reply: &Reply| {
        reply
            .headers
            .get("retry-after")
            .and_then(|v| v.as_str())
            .and_then(parse_retry_after)
    };
    match result {
        Ok(reply) if matches!(reply.status, 429 | 503) => Some(hint(reply)),
        Ok(reply) if (500..=599).contains(&reply.status) && ambiguous == Ambiguous::Retry => {
            Some(hint(reply))
        }
        Ok(_) => None,
        Err(SendError::NotSent(_)) => Some(None),
        Err(SendError::Ambiguous(_)) if ambiguous == Ambiguous::Retry => Some(None),
        Err(SendError::Ambiguous(_) | SendError::Refused(_) | SendError::Fatal(_)) => None,
    }
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
