//! The local runtime: every stage in one process over the embedded adapters, with durable
//! queues, so a job whose process was killed resumes in the next one on the same data.

use crate::queue::{spawn_workers, Adopted, LocalQueue, Redelivery};
use crate::{FsBlobs, SqliteStore};
use anyhow::Context;
use sluice_core::ports::{
    Blobs, Clock, EnvSecrets, Kind, MemorySecretStore, SecretStore, Secrets, Store, SystemClock,
};
use sluice_core::runs::{cancel_job, Then};
use sluice_core::{Settings, Sluice, Stage};
use sluice_model::{Job, StageMessage};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct LocalRuntime {
    sluice: Arc<Sluice>,
    /// Where FsBlobs keeps objects, when the runtime owns a data directory.
    blob_root: Option<std::path::PathBuf>,
    queue: Arc<LocalQueue>,
    /// The store, when it is the SQLite file this runtime opened (to free the connection
    /// slots of a killed process it takes over).
    sqlite: Option<SqliteStore>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// How long after its job was opened a run order may still be on its way to the queue (the
/// opening process is between taking the lock and queuing it): past this, a lock-holding job
/// with nothing queued was abandoned. Opening takes milliseconds; this is generous.
const UNQUEUED_GRACE: Duration = Duration::from_secs(30);

/// Workers per stage: the stages that wait on the network get more.
fn workers_for(stage: Stage) -> usize {
    match stage {
        Stage::Deliver | Stage::Upload => 4,
        _ => 2,
    }
}

impl LocalRuntime {
    /// A runtime over `<data_dir>/sluice.db`, `<data_dir>/queue.db` and `<data_dir>/blobs`.
    /// Must be called inside a tokio runtime (it starts the workers). It resumes nothing by
    /// itself: see [`adopt`](Self::adopt).
    pub fn open(data_dir: &Path, settings: Settings) -> anyhow::Result<LocalRuntime> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let store = SqliteStore::open(&data_dir.join("sluice.db"))?;
        let queue = LocalQueue::open(&data_dir.join("queue.db"))?;
        let mut rt = Self::start(
            (Arc::new(store.clone()), Arc::new(store.clone())),
            queue,
            Arc::new(FsBlobs::new(data_dir.join("blobs"))),
            Arc::new(EnvSecrets),
            Arc::new(SystemClock),
            settings,
        );
        rt.blob_root = Some(data_dir.join("blobs"));
        rt.sqlite = Some(store);
        Ok(rt)
    }

    /// A runtime whose store and queues live in memory and whose blobs live in `blob_dir`
    /// (tests).
    pub fn in_memory(blob_dir: &Path, secrets: Arc<dyn Secrets>) -> anyhow::Result<LocalRuntime> {
        let mut rt = Self::build(
            Arc::new(SqliteStore::open_in_memory()?),
            Arc::new(FsBlobs::new(blob_dir)),
            secrets,
            Arc::new(SystemClock),
            crate::local_settings(),
        );
        rt.blob_root = Some(blob_dir.to_path_buf());
        Ok(rt)
    }

    /// A runtime over these ports, with its queues in memory.
    pub fn build(
        store: Arc<dyn Store>,
        blobs: Arc<dyn Blobs>,
        secrets: Arc<dyn Secrets>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> LocalRuntime {
        let queue = LocalQueue::in_memory().expect("an in-memory SQLite database opens");
        let written = Arc::new(MemorySecretStore::default());
        Self::start((store, written), queue, blobs, secrets, clock, settings)
    }

    /// `store` with the [`SecretStore`] that rotated refresh tokens are written to.
    fn start(
        (store, written): (Arc<dyn Store>, Arc<dyn SecretStore>),
        (queue, receivers): (Arc<LocalQueue>, crate::queue::Receivers),
        blobs: Arc<dyn Blobs>,
        secrets: Arc<dyn Secrets>,
        clock: Arc<dyn Clock>,
        mut settings: Settings,
    ) -> LocalRuntime {
        settings.instance = queue.runner().id.clone();
        let beat = (settings.lock_lease / 4).min(Duration::from_secs(30));
        // The CLI builds the mailer once before (`sluice_embedded::mail::mailer`), so a bad
        // SMTP URL stops it at start; here it cannot fail any more.
        let mailer = crate::mail::mailer(settings.mail.as_ref()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "alert mail is off");
            Arc::new(sluice_core::ports::NoMailer)
        });
        let sluice = Arc::new(
            Sluice::new(store, queue.clone(), blobs, secrets, clock, settings)
                .with_mailer(mailer)
                .with_secret_store(written),
        );
        let workers = spawn_workers(
            sluice.clone(),
            queue.clone(),
            receivers,
            workers_for,
            Redelivery::default(),
        );
        let heart = queue.clone();
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(beat).await;
                if let Err(e) = heart.heartbeat().await {
                    tracing::warn!(error = %e, "queue heartbeat failed");
                }
            }
        });
        LocalRuntime {
            sluice,
            blob_root: None,
            queue,
            sqlite: None,
            workers,
            heartbeat,
        }
    }

    /// Copies a local file into the blob store (bucket `local-files`) without reading it into
    /// memory, so a run can stream it like an S3 object. Returns (bucket, key).
    pub async fn stage_file(&self, path: &Path) -> anyhow::Result<(String, String)> {
        let root = self
            .blob_root
            .as_ref()
            .context("this runtime has no blob directory")?;
        let name = path
            .file_name()
            .context("the records path has no file name")?
            .to_string_lossy()
            .to_string();
        let key = format!("{}-{name}", sluice_model::new_id());
        let dest = root.join("local-files").join(&key);
        tokio::fs::create_dir_all(dest.parent().unwrap()).await?;
        tokio::fs::copy(path, &dest)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(("local-files".into(), key))
    }

    pub fn sluice(&self) -> Arc<Sluice> {
        self.sluice.clone()
    }

    pub fn queue(&self) -> &LocalQueue {
        &self.queue
    }

    /// Messages not yet finished by any stage.
    pub fn pending(&self) -> usize {
        self.queue.pending()
    }

    /// Resumes the work a killed (or stopped) process left on this data: takes over the
    /// queued messages of runners that are gone, of `flow_id` or of every flow, and hands
    /// them to the workers. Messages of jobs that have finished since are dropped, but for a
    /// closed job's after-process callbacks, which are still posted. Returns the unfinished
    /// jobs it resumed, oldest first.
    ///
    /// A resumed job keeps its run lock (its owner is the job): the lease is renewed here, so
    /// the flow cannot start another run while it resumes, even if the lease had lapsed. The
    /// connection slots the gone processes held are freed.
    pub async fn adopt(&self, flow_id: Option<&str>) -> anyhow::Result<Vec<Job>> {
        let (adopted, gone) = self
            .queue
            .adopt(flow_id, self.sluice.settings.lock_lease)
            .await?;
        // Connection slots a killed process held would block the resumed sends until their
        // leases ran out: they are free now.
        if let Some(store) = &self.sqlite {
            for runner in &gone {
                store.release_slots_of(runner).await?;
            }
        }
        let mut by_job: BTreeMap<String, Vec<Adopted>> = BTreeMap::new();
        for a in adopted {
            by_job.entry(a.job_id.clone()).or_default().push(a);
        }
        let mut resumed = Vec::new();
        let mut dropped = Vec::new();
        for (job_id, messages) in by_job {
            match self.resumable(&job_id).await? {
                Some(job) => {
                    for m in messages {
                        self.queue.resume(m);
                    }
                    resumed.push(job);
                }
                None => {
                    let (after_close, stale): (Vec<_>, Vec<_>) =
                        messages.into_iter().partition(|m| m.message.after_close());
                    after_close.into_iter().for_each(|m| self.queue.resume(m));
                    dropped.extend(stale.iter().map(|m| m.seq));
                }
            }
        }
        if !dropped.is_empty() {
            self.queue.drop_rows(dropped).await?;
        }
        resumed.sort_by_key(|j| j.created_at);
        self.cancel_unqueued(flow_id).await?;
        Ok(resumed)
    }

    /// Cancels the jobs that hold their flow's run lock (of `flow_id`, or of every flow) with
    /// no message queued on this data, [`UNQUEUED_GRACE`] after they were opened: the process
    /// that opened one was killed between taking the lock and queuing the run order, so
    /// nothing of it was read or sent, and nothing would ever close it. Their flows are free
    /// now rather than when the lease runs out. Every other unfinished job has a message
    /// queued until it is closed (the queue swaps a message for what it became in one
    /// transaction); the grace covers the moment between opening a job and queuing its order
    /// in a process that is alive.
    async fn cancel_unqueued(&self, flow_id: Option<&str>) -> anyhow::Result<()> {
        let store = &self.sluice.store;
        let flows: Vec<String> = match flow_id {
            Some(id) => vec![id.to_string()],
            None => store
                .list_definitions(Kind::Flow)
                .await?
                .iter()
                .filter_map(|f| f["_id"].as_str().map(str::to_string))
                .collect(),
        };
        let opened_before = self.sluice.clock.now() - chrono::Duration::from_std(UNQUEUED_GRACE)?;
        for flow in flows {
            let Some(holder) = store.lock_holder(&flow).await? else {
                continue;
            };
            let Some(job) = store.get_job(&holder.owner).await? else {
                continue;
            };
            let old = job.created_at.is_some_and(|at| at < opened_before);
            if job.status.is_finished() || !old || self.queue.has_messages_of(&job.id).await? {
                continue;
            }
            let message = "abandoned: the process that started it stopped before queuing its run order; nothing of it was read or sent".to_string();
            cancel_job(&self.sluice, &job.id, message, Then::StartNothing).await?;
            tracing::warn!(job = %job.id, flow = %flow, "canceled a job whose run order was never queued");
        }
        Ok(())
    }

    /// The job, if it is unfinished and still holds its flow's run lock (renewed now).
    async fn resumable(&self, job_id: &str) -> anyhow::Result<Option<Job>> {
        let store = &self.sluice.store;
        let Some(job) = store.get_job(job_id).await? else {
            return Ok(None);
        };
        if job.status.is_finished() {
            return Ok(None);
        }
        let (now, lease) = (self.sluice.clock.now(), self.sluice.settings.lock_lease);
        let held = store.renew_lock(&job.flow_id, &job.id, now, lease).await?
            || store
                .acquire_lock(&job.flow_id, &job.id, now, lease)
                .await?;
        if !held {
            // Another run of the flow took the lock after this job's lease ran out.
            let message = "abandoned: its process stopped and another run of the flow started before it could resume; records not counted may or may not have been delivered".to_string();
            cancel_job(&self.sluice, &job.id, message, Then::StartNothing).await?;
            return Ok(None);
        }
        Ok(Some(job))
    }

    /// Waits until the job is finished, calling `on_progress` whenever its counters move.
    pub async fn wait_for_job(
        &self,
        job_id: &str,
        timeout: Duration,
        mut on_progress: impl FnMut(&Job),
    ) -> anyhow::Result<Job> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<(u64, u64, u64, u64)> = None;
        loop {
            let job = self
                .sluice
                .store
                .get_job(job_id)
                .await?
                .with_context(|| format!("job {job_id} not found"))?;
            let now = (
                job.num_success,
                job.num_error,
                job.num_ignore,
                job.num_pages_done,
            );
            if last != Some(now) {
                on_progress(&job);
                last = Some(now);
            }
            if job.status.is_finished() {
                return Ok(job);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "job {job_id} did not finish within {timeout:?} (status {}, {} pages done)",
                    job.status.as_str(),
                    job.num_pages_done
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no message is in flight (after-run work such as chained flows included).
    pub async fn wait_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.queue.pending() > 0 {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{} messages still in flight after {timeout:?}",
                    self.queue.pending()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Cancels a job this runtime worked on and forgets its queued messages, so nothing of
    /// it resumes. Call after [`stop`](Self::stop), so no worker sends another record of it.
    /// The close queued the job for its after-process callbacks; with the workers stopped,
    /// they are posted here.
    pub async fn cancel(&self, job_id: &str, message: String) -> anyhow::Result<()> {
        cancel_job(&self.sluice, job_id, message, Then::StartNothing).await?;
        for message in self.queue.take_job(job_id).await? {
            if matches!(message, StageMessage::AfterProcess { .. }) {
                Stage::Deliver
                    .handler()
                    .handle(&self.sluice, message)
                    .await?;
            }
        }
        Ok(())
    }

    /// Stops the workers at once and waits until they are gone, and until deliveries they
    /// were in the middle of have freed their connection slots. The messages not yet handled
    /// stay in the queue database, free for the next runtime on this data to resume.
    pub async fn stop(&mut self) {
        self.stop_within(Duration::ZERO).await
    }

    /// Stops taking new messages, gives those being handled up to `grace` to finish (fewer
    /// sends cut off mid-request, which resume as `delivery_unknown`), then stops as
    /// [`stop`](Self::stop) does.
    pub async fn stop_within(&mut self, grace: Duration) {
        self.queue.close();
        let deadline = tokio::time::Instant::now() + grace;
        while !grace.is_zero() && tokio::time::Instant::now() < deadline && self.queue.busy() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let workers = std::mem::take(&mut self.workers);
        for w in &workers {
            w.abort();
        }
        for w in workers {
            let _ = w.await;
        }
        self.heartbeat.abort();
        sluice_core::stages::deliver::settle_slot_releases(&self.sluice, Duration::from_secs(5))
            .await;
        if let Err(e) = self.queue.unregister().await {
            tracing::warn!(error = %e, "could not unregister from the queue");
        }
    }
}
