//! `sluice cancel JOB`: cancels a running job (or the pending automatic retry of a finished one), in the local store a `sluice run` or
//! `sluice dev` on the same `--data` uses, or through a flows API (`--api URL`, for a job run
//! by `sluice dev` elsewhere or on AWS).

use anyhow::{bail, Context};
use async_trait::async_trait;
use serde_json::Value;
use sluice_core::ports::{EnvSecrets, Queue, SystemClock};
use sluice_core::runs::{cancel_job, Then};
use sluice_core::{Sluice, Stage};
use sluice_embedded::{local_settings, FsBlobs, SqliteStore};
use sluice_model::StageMessage;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Where the job lives.
pub enum Target<'a> {
    /// The local store in this data directory.
    Local(&'a Path),
    /// A flows API at this base URL, with this key.
    Api { base: &'a str, key: String },
}

pub async fn run(job_id: &str, target: Target<'_>) -> anyhow::Result<ExitCode> {
    let job = match target {
        Target::Local(data) => cancel_locally(job_id, data).await?,
        Target::Api { base, key } => cancel_through_api(job_id, base, &key).await?,
    };
    println!(
        "job {job_id} canceled: success {}, error {}, ignore {} (records not sent by now are not sent)",
        job["numSuccess"], job["numError"], job["numIgnore"]
    );
    Ok(ExitCode::SUCCESS)
}

/// This process runs no stages: cancelling starts nothing here (a run it started would stop
/// with it), so the flow's waiting runs start with its next run. The one message a cancel
/// sends is the closed job for deliver to post to the flow's after-process callbacks: it is
/// kept here, and this process posts them once the job is closed.
#[derive(Default)]
struct NoStages(Mutex<Vec<StageMessage>>);

#[async_trait]
impl Queue for NoStages {
    async fn send(&self, stage: Stage, message: StageMessage) -> anyhow::Result<()> {
        match message {
            StageMessage::AfterProcess { .. } => {
                self.0.lock().unwrap().push(message);
                Ok(())
            }
            _ => bail!(
                "`sluice cancel` runs no stages (asked to send to {})",
                stage.name()
            ),
        }
    }
}

async fn cancel_locally(job_id: &str, data: &Path) -> anyhow::Result<Value> {
    let db = data.join("sluice.db");
    if !db.exists() {
        bail!("no local store at {} (give the --data a `sluice run` or `sluice dev` used, or --api URL)", db.display());
    }
    let callbacks = Arc::new(NoStages::default());
    let sluice = Sluice::new(
        Arc::new(SqliteStore::open(&db)?),
        callbacks.clone(),
        Arc::new(FsBlobs::new(data.join("blobs"))),
        Arc::new(EnvSecrets),
        Arc::new(SystemClock),
        local_settings(),
    );
    let job = sluice
        .store
        .get_job(job_id)
        .await?
        .with_context(|| format!("Job not found: {job_id} (in {})", db.display()))?;
    let message = "canceled with `sluice cancel`: records not sent by then were not sent and count as ignored";
    if !cancel_job(&sluice, job_id, message.into(), Then::StartNothing).await?
        && !sluice_core::runs::cancel_auto_retry(&sluice, job_id).await?
    {
        bail!(
            "job {job_id} had already finished ({}) and no automatic retry of it is pending: there is nothing to cancel",
            job.status.as_str()
        );
    }
    let closed = std::mem::take(&mut *callbacks.0.lock().unwrap());
    for message in closed {
        Stage::Deliver.handler().handle(&sluice, message).await?;
    }
    let job = sluice
        .store
        .get_job(job_id)
        .await?
        .context("the job is stored")?;
    Ok(serde_json::to_value(job)?)
}

async fn cancel_through_api(job_id: &str, base: &str, key: &str) -> anyhow::Result<Value> {
    let url = format!("{}/jobs/{job_id}/cancel", base.trim_end_matches('/'));
    let reply = reqwest::Client::new()
        .post(&url)
        .bearer_auth(key)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = reply.status();
    let body: Value = reply.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["errors"][0]["message"]
            .as_str()
            .unwrap_or("no message");
        bail!("{url} answered {status}: {message}");
    }
    Ok(body)
}
