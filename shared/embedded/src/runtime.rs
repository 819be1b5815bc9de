//! The local runtime: every stage in one process over the embedded adapters.

use crate::queue::{spawn_workers, LocalQueue, Redelivery};
use crate::{FsBlobs, SqliteStore};
use anyhow::Context;
use sluice_core::ports::{Blobs, Clock, EnvSecrets, Secrets, Store, SystemClock};
use sluice_core::runs::cancel_job;
use sluice_core::{Settings, Sluice, Stage};
use sluice_model::Job;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct LocalRuntime {
    sluice: Arc<Sluice>,
    /// Where FsBlobs keeps objects, when the runtime owns a data directory.
    blob_root: Option<std::path::PathBuf>,
    queue: Arc<LocalQueue>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// Workers per stage: the stages that wait on the network get more.
fn workers_for(stage: Stage) -> usize {
    match stage {
        Stage::Deliver | Stage::Upload => 4,
        _ => 2,
    }
}

impl LocalRuntime {
    /// A runtime over `<data_dir>/sluice.db` and `<data_dir>/blobs`. Must be called inside a
    /// tokio runtime (it starts the workers).
    pub fn open(data_dir: &Path, settings: Settings) -> anyhow::Result<LocalRuntime> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let store = SqliteStore::open(&data_dir.join("sluice.db"))?;
        let mut rt = Self::build(
            Arc::new(store),
            Arc::new(FsBlobs::new(data_dir.join("blobs"))),
            Arc::new(EnvSecrets),
            Arc::new(SystemClock),
            settings,
        );
        rt.blob_root = Some(data_dir.join("blobs"));
        Ok(rt)
    }

    /// A runtime whose store lives in memory and whose blobs live in `blob_dir` (tests).
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

    pub fn build(
        store: Arc<dyn Store>,
        blobs: Arc<dyn Blobs>,
        secrets: Arc<dyn Secrets>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> LocalRuntime {
        let (queue, receivers) = LocalQueue::new();
        let sluice = Arc::new(Sluice::new(
            store,
            queue.clone(),
            blobs,
            secrets,
            clock,
            settings,
        ));
        let workers = spawn_workers(
            sluice.clone(),
            queue.clone(),
            receivers,
            workers_for,
            Redelivery::default(),
        );
        LocalRuntime {
            sluice,
            blob_root: None,
            queue,
            workers,
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

    /// Messages not yet finished by any stage.
    pub fn pending(&self) -> usize {
        self.queue.pending()
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

    /// Cancels every job this runtime's queues carried that has not finished, with
    /// `reason`: their in-flight pages live only in this process, so when it stops they can
    /// never finish, and cancelling frees their flows to run again at once (instead of after
    /// the run lock's lease). Returns how many were cancelled. Call after [`stop`], so no
    /// worker sends another record of a canceled job.
    ///
    /// [`stop`]: LocalRuntime::stop
    pub async fn cancel_unfinished(&self, reason: &str) -> anyhow::Result<usize> {
        let mut cancelled = 0;
        for job_id in self.queue.take_jobs() {
            let Some(job) = self.sluice.store.get_job(&job_id).await? else {
                continue;
            };
            if job.status.is_finished() {
                continue;
            }
            let message = format!(
                "{reason} before the job finished; records still in flight were not counted and may or may not have been delivered"
            );
            cancel_job(&self.sluice, &job_id, message).await?;
            cancelled += 1;
        }
        Ok(cancelled)
    }

    /// Stops the workers and waits until they are gone, and until deliveries they were in
    /// the middle of have freed their connection slots.
    pub async fn stop(&mut self) {
        let workers = std::mem::take(&mut self.workers);
        for w in &workers {
            w.abort();
        }
        for w in workers {
            let _ = w.await;
        }
        sluice_core::stages::deliver::settle_slot_releases(Duration::from_secs(5)).await;
    }
}
