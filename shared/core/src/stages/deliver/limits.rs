//! Per-connection limits: at most N requests in flight, at most R requests a second.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

pub(crate) struct Limiter {
    in_flight: Semaphore,
    rate: Option<Mutex<Bucket>>,
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
struct Bucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Limiter {
    pub fn new(concurrency: usize, rate: Option<(f64, u32)>) -> Self {
        Limiter {
            in_flight: Semaphore::new(concurrency.max(1)),
            rate: rate.map(|(per_second, burst)| {
                Mutex::new(Bucket {
                    per_second,
                    burst: burst as f64,
                    tokens: burst as f64,
                    last: Instant::now(),
                })
            }),
        }
    }

    /// Waits for a rate token and a concurrency slot; the slot is held until the permit drops.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        if let Some(bucket) = &self.rate {
            loop {
                let wait = {
                    let mut b = bucket.lock().unwrap();
                    let now = Instant::now();
                    b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * b.per_second)
                        .min(b.burst);
                    b.last = now;
                    if b.tokens >= 1.0 {
                        b.tokens -= 1.0;
                        None
                    } else {
                        Some(Duration::from_secs_f64((1.0 - b.tokens) / b.per_second))
                    }
                };
                match wait {
                    None => break,
                    Some(d) => tokio::time::sleep(d).await,
                }
            }
        }
        self.in_flight
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }
}
