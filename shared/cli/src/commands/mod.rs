//! The subcommands, one file each, and what they share.

pub mod dev;
pub mod jobs;
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
