//! How long the current stage invocation may run. On Lambda it is the function's deadline;
//! locally there is none. Deliver checks it before starting each request: when too little is
//! left it stops, and re-queues the rest of its page, so a page slower than one invocation
//! (a tight `rateLimit`) carries on in the next instead of timing out mid-batch, where its
//! claimed-but-unsent records would come back as `delivery_unknown`. Trigger checks it
//! between the replies of a long export.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Budget {
    deadline: Instant,
    /// Some piece of work has started in this invocation.
    started: AtomicBool,
}

tokio::task_local! {
    static BUDGET: Budget;
}

/// Runs `work` with `deadline` as its time budget (seen within the task).
pub async fn with_deadline<F: Future>(deadline: Instant, work: F) -> F::Output {
    let budget = Budget {
        deadline,
        started: AtomicBool::new(false),
    };
    BUDGET.scope(budget, work).await
}

/// The time left before the deadline; `None` when the work has no deadline.
pub fn time_left() -> Option<Duration> {
    BUDGET
        .try_with(|b| b.deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// True when a deadline is set and less than `needed` is left before it.
pub fn running_out(needed: Duration) -> bool {
    time_left().is_some_and(|left| left < needed)
}

/// Whether to start a piece of work that needs `needed`: `None` to leave it for the next
/// invocation; `Some(first)` to start it, `first` when it is the invocation's first start.
/// The first start is always allowed, so every invocation makes progress however short.
pub fn start(needed: Duration) -> Option<bool> {
    let Ok(first) = BUDGET.try_with(|b| {
        let enough = b.deadline.saturating_duration_since(Instant::now()) >= needed;
        let first = !b.started.swap(true, Ordering::SeqCst);
        if enough || first {
            Some(first)
        } else {
            None
        }
    }) else {
        return Some(false); // no deadline: always start
    };
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deadline_is_seen_only_inside_its_scope() {
        assert_eq!(time_left(), None);
        assert!(!running_out(Duration::from_secs(3600)));
        assert_eq!(start(Duration::from_secs(3600)), Some(false));
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

    #[tokio::test]
    async fn the_first_start_of_an_invocation_is_always_allowed() {
        let deadline = Instant::now() + Duration::from_secs(2);
        with_deadline(deadline, async {
            assert_eq!(start(Duration::from_secs(5)), Some(true), "first: allowed");
            assert_eq!(start(Duration::from_secs(5)), None, "then: not enough time");
            assert_eq!(start(Duration::from_secs(1)), Some(false), "enough time");
        })
        .await;
    }
}
