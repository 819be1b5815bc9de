//! `sluice dev`: the flows API on 127.0.0.1 over the local runtime, plus the minute tick.

use sluice_api::{router, ApiConfig};
use sluice_core::stages::trigger::schedule::tick;
use sluice_core::Settings;
use sluice_embedded::LocalRuntime;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub async fn serve(
    port: u16,
    data: &Path,
    api_key: Option<String>,
    settings: Settings,
) -> anyhow::Result<ExitCode> {
    let mut runtime = LocalRuntime::open(data, settings)?;
    let sluice = runtime.sluice();
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
    let ticker = sluice.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = tick(&ticker).await {
                tracing::warn!(error = %e, "schedule tick failed");
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
    let listener = super::listen(port).await?;
    eprintln!(
        "flows API on http://{}  (store: {})",
        listener.local_addr()?,
        data.display()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // Pages in flight live in this process only: cancel their jobs so their flows can run
    // again as soon as `sluice dev` is back; stopping lets aborted deliveries free their slots.
    runtime.stop().await;
    let cancelled = runtime.cancel_unfinished("sluice dev stopped").await?;
    if cancelled > 0 {
        eprintln!("canceled {cancelled} unfinished job(s)");
    }
    Ok(ExitCode::SUCCESS)
}
