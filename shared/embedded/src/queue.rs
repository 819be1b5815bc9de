//! In-process queues: one channel per stage, workers that call the stage handler, retries
//! that stand in for a queue's redelivery, and a dead letter after the last attempt.

use async_trait::async_trait;
use sluice_core::ports::Queue;
use sluice_core::stages::dead_letter::dead_letter;
use sluice_core::{Sluice, Stage};
use sluice_model::StageMessage;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

type Receivers = HashMap<Stage, mpsc::UnboundedReceiver<StageMessage>>;

/// Pages the trigger may have in translate, deliver, extract and upload at once before it
/// waits. Bounds memory on big inputs; evaluate's sends never wait, so the pipeline drains.
pub const MAX_PAGES_IN_FLIGHT: usize = 64;

/// The sending side, plugged into `Sluice` as its Queue.
pub struct LocalQueue {
    senders: HashMap<Stage, mpsc::UnboundedSender<StageMessage>>,
    /// Messages sent and not yet finished (handled or dead-lettered): lets callers wait for quiet.
    pending: Arc<AtomicUsize>,
    /// Messages sent and not yet finished, per stage.
    depth: HashMap<Stage, AtomicUsize>,
    /// Jobs with messages on these queues: they die with this process, so its shutdown
    /// cancels those still unfinished (see `LocalRuntime::cancel_unfinished`).
    jobs: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl LocalQueue {
    /// A queue and the receivers its workers take.
    pub fn new() -> (Arc<LocalQueue>, Receivers) {
        let mut senders = HashMap::new();
        let mut receivers = HashMap::new();
        for stage in Stage::ALL {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.insert(stage, tx);
            receivers.insert(stage, rx);
        }
        let depth = Stage::ALL
            .into_iter()
            .map(|st| (st, AtomicUsize::new(0)))
            .collect();
        let queue = LocalQueue {
            senders,
            pending: Arc::new(AtomicUsize::new(0)),
            depth,
            jobs: Default::default(),
        };
        (Arc::new(queue), receivers)
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    fn pages_before_evaluate(&self) -> usize {
        [
            Stage::Translate,
            Stage::Deliver,
            Stage::Extract,
            Stage::Upload,
        ]
        .iter()
        .map(|st| self.depth[st].load(Ordering::SeqCst))
        .sum()
    }

    /// The jobs that have had messages on these queues, forgetting them.
    pub(crate) fn take_jobs(&self) -> Vec<String> {
        self.jobs.lock().unwrap().drain().collect()
    }

    fn finished(&self, stage: Stage) {
        self.depth[&stage].fetch_sub(1, Ordering::SeqCst);
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(&self, stage: Stage, message: StageMessage) -> anyhow::Result<()> {
        // Backpressure on the trigger only: its fresh pages (processor 0) wait for room.
        if stage == Stage::Translate
            && matches!(&message, StageMessage::Page(p) if p.processor_index == 0)
        {
            while self.pages_before_evaluate() >= MAX_PAGES_IN_FLIGHT {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let job_id = match &message {
            StageMessage::Run(order) => &order.job_id,
            StageMessage::Page(page) => &page.job_id,
        };
        {
            let mut jobs = self.jobs.lock().unwrap();
            if !jobs.contains(job_id) {
                jobs.insert(job_id.clone());
            }
        }
        self.pending.fetch_add(1, Ordering::SeqCst);
        self.depth[&stage].fetch_add(1, Ordering::SeqCst);
        self.senders[&stage].send(message).map_err(|_| {
            self.depth[&stage].fetch_sub(1, Ordering::SeqCst);
            self.pending.fetch_sub(1, Ordering::SeqCst);
            anyhow::anyhow!("the {} queue is closed (runtime shut down)", stage.name())
        })
    }
}

/// How often a failing message is tried, and how long to wait between tries.
#[derive(Debug, Clone)]
pub struct Redelivery {
    pub attempts: u32,
    pub backoff: Duration,
}

impl Default for Redelivery {
    fn default() -> Self {
        Redelivery {
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Tries `handle` up to `policy.attempts` times; the last error is returned for dead-lettering.
pub async fn with_redelivery<F, Fut>(policy: &Redelivery, mut handle: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for attempt in 1..=policy.attempts.max(1) {
        match handle().await {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = e;
                if attempt < policy.attempts {
                    tokio::time::sleep(policy.backoff * attempt).await;
                }
            }
        }
    }
    Err(last)
}

/// Starts `workers` tasks per stage taking from the receivers.
pub(crate) fn spawn_workers(
    sluice: Arc<Sluice>,
    queue: Arc<LocalQueue>,
    receivers: Receivers,
    workers: impl Fn(Stage) -> usize,
    policy: Redelivery,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    for (stage, rx) in receivers {
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..workers(stage).max(1) {
            let (rx, sluice, queue, policy) =
                (rx.clone(), sluice.clone(), queue.clone(), policy.clone());
            handles.push(tokio::spawn(async move {
                loop {
                    let Some(message) = rx.lock().await.recv().await else { break };
                    let result = with_redelivery(&policy, || {
                        let (sluice, message) = (sluice.clone(), message.clone());
                        async move { sluice.handle(stage, message).await.map_err(|e| e.to_string()) }
                    })
                    .await;
                    if let Err(reason) = result {
                        if let Err(e) = dead_letter(&sluice, stage, message, &reason).await {
                            tracing::error!(stage = stage.name(), error = %e, "dead letter could not be recorded");
                        }
                    }
                    queue.finished(stage);
                }
            }));
        }
    }
    handles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_until_success_then_stops() {
        let calls = AtomicUsize::new(0);
        let policy = Redelivery {
            attempts: 3,
            backoff: Duration::from_millis(1),
        };
        let r = with_redelivery(&policy, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 1 {
                    Err("boom".to_string())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(r.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt_with_the_last_error() {
        let calls = AtomicUsize::new(0);
        let policy = Redelivery {
            attempts: 3,
            backoff: Duration::from_millis(1),
        };
        let r = with_redelivery(&policy, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { Err(format!("failure {n}")) }
        })
        .await;
        assert_eq!(r.unwrap_err(), "failure 2");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
