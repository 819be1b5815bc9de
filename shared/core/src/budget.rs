//! How long the current stage invocation may run. On Lambda it is the function's deadline;
//! locally there is none. Deliver checks it before starting each request: when too little is
//! left it stops, and re-queues the rest of its page, so a page slower than one invocation
//! (a tight `rateLimit`) carries on in the next instead of timing out mid-batch, where its
//! claimed-but-unsent records would come back as `delivery_unknown`.

use std::future::Future;
use std::time::{Duration, Instant};

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with `deadline` as its time budget (seen by [`time_left`] within the task).
pub async fn with_deadline<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// The time left before the deadline; `None` when the work has no deadline.
pub fn time_left() -> Option<Duration> {
    DEADLINE
        .try_with(|d| d.saturating_duration_since(Instant::now()))
        .ok()
}

/// True when a deadline is set and less than `needed` is left before it.
pub fn running_out(needed: Duration) -> bool {
    time_left().is_some_and(|left| left < needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deadline_is_seen_only_inside_its_scope() {
        assert_eq!(time_left(), None);
        assert!(!running_out(Duration::from_secs(3600)));
        let deadline = Instant::now() + Duration::from_secs(10);
        with_deadline(deadline, async {
            let left = time_left().unwrap();
            assert!(left <= Duration::from_secs(10) && left > Duration::from_secs(9));
            assert!(running_out(Duration::from_secs(11)));
            assert!(!running_out(Duration::from_secs(5)));
        })
        .await;
        assert_eq!(time_left(), None);
    }
}
