//! `sluice dev`: the flows API on 127.0.0.1 over the local runtime, plus the minute tick.
//! Jobs left unfinished on this data (a killed `sluice run` or `sluice dev`) resume at start
//! and at every tick; stopping leaves the jobs it runs to resume the same way.

use sluice_api::{router, ApiConfig};
use sluice_core::stages::trigger::schedule::tick;
use sluice_core::Settings;
use sluice_embedded::LocalRuntime;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long stopping waits for the messages being handled to finish.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub async fn serve(
    port: u16,
    data: &Path,
    api_key: Option<String>,
    settings: Settings,
) -> anyhow::Result<ExitCode> {
    let runtime = Arc::new(tokio::sync::Mutex::new(LocalRuntime::open(data, settings)?));
    let sluice = runtime.lock().await.sluice();
    resume(&*runtime.lock().await).await;
    let key = api_key
        .or_else(|| std::env::var("SLUICE_API_KEY").ok())
        .unwrap_or_else(|| {
            let k = sluice_model::new_id();
            eprintln!("no --api-key given; using {k}");
            k
        });
    let app = router(
        sluice.clone(),
        ApiConfig {
            api_keys: vec![("dev".into(), key)],
        },
    );
    let ticking = runtime.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let rt = ticking.lock().await;
            // A `sluice run` on this data killed meanwhile: its job goes on here.
            resume(&rt).await;
            if let Err(e) = tick(&rt.sluice()).await {
                tracing::warn!(error = %e, "schedule tick failed");
            }
        }
    });
    if let Err(e) = tick(&sluice).await {
        tracing::warn!(error = %e, "schedule tick failed");
    }
    let listener = super::listen(port).await?;
    eprintln!(
        "flows API on http://{}  (store: {})",
        listener.local_addr()?,
        data.display()
    );
    let signal = Arc::new(std::sync::Mutex::new(""));
    let seen = signal.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            *seen.lock().unwrap() = super::stop_signal().await;
        })
        .await?;
    ticker.abort();
    let _ = ticker.await;
    let mut rt = runtime.lock().await;
    // The queues are durable: what is left resumes at the next start on this data.
    rt.stop_within(STOP_GRACE).await;
    let left = rt.queue().held_jobs().await?;
    let stopped_by = *signal.lock().unwrap();
    if !left.is_empty() {
        eprintln!(
            "stopped by {stopped_by}: {} unfinished job(s) will resume when `sluice dev` (or `sluice run` of their flow) starts again on {}: {}",
            left.len(),
            data.display(),
            left.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Resumes the jobs of processes on this data that are gone.
async fn resume(runtime: &LocalRuntime) {
    match runtime.adopt(None).await {
        Ok(jobs) => {
            for job in jobs {
                eprintln!(
                    "resuming job {} of flow {} ({} of {} pages done)",
                    job.id,
                    job.flow_id,
                    job.num_pages_done,
                    if job.paging_done {
                        job.num_pages.to_string()
                    } else {
                        "?".into()
                    }
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not resume unfinished jobs"),
    }
}
