//! The subcommands, one file each, and what they share.

pub mod cancel;
pub mod clean;
pub mod dev;
pub mod jobs;
pub mod oauth;
pub mod preview;
pub mod run;
pub mod sink;
pub mod validate;

use anyhow::Context;

/// Listens on 127.0.0.1:`port`; a port taken by another program is named, with what to do.
pub async fn listen(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| {
            format!("cannot listen on 127.0.0.1:{port} (is another program using port {port}? choose another with --port)")
        })
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM, and names the one that came: both stop `sluice run`
/// and `sluice dev` the same way.
pub async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "Ctrl-C",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "Ctrl-C"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
