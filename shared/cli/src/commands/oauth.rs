//! `sluice oauth authorize CONNECTION`: prints the URL that sets up an OAuth2 connection of
//! grant `authorization_code`. The provider then sends the browser to the connection's
//! `redirectURI`, which `sluice dev` on the same `--data` serves (`/oauth2/callback`); that
//! callback stores the refresh token. The state lives in the local store, so this command
//! and `sluice dev` may be two processes.

use anyhow::{bail, Context};
use async_trait::async_trait;
use sluice_core::ports::{EnvSecrets, Queue, SystemClock};
use sluice_core::stages::deliver::authorization_url;
use sluice_core::{Sluice, Stage};
use sluice_embedded::{local_settings, FsBlobs, SqliteStore};
use sluice_model::StageMessage;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Issuing a URL sends no message.
struct NoQueue;

#[async_trait]
impl Queue for NoQueue {
    async fn send(&self, stage: Stage, _: StageMessage) -> anyhow::Result<()> {
        bail!(
            "`sluice oauth` runs no stages (asked to send to {})",
            stage.name()
        )
    }
}

pub async fn authorize(connection_id: &str, data: &Path) -> anyhow::Result<ExitCode> {
    let db = data.join("sluice.db");
    if !db.exists() {
        bail!(
            "no local store at {} (give the --data `sluice dev` uses)",
            db.display()
        );
    }
    let store = Arc::new(SqliteStore::open(&db)?);
    let sluice = Sluice::new(
        store.clone(),
        Arc::new(NoQueue),
        Arc::new(FsBlobs::new(data.join("blobs"))),
        Arc::new(EnvSecrets),
        Arc::new(SystemClock),
        local_settings(),
    )
    .with_secret_store(store);
    let connection = (sluice.connection(connection_id).await).with_context(|| {
        format!(
            "in {} (create it through `sluice dev`'s API first)",
            db.display()
        )
    })?;
    let auth = authorization_url(&sluice, &connection).await?;
    let redirect = connection
        .http
        .as_ref()
        .and_then(|h| h.auth.as_ref()?.oauth2.as_ref()?.redirect_uri.clone())
        .unwrap_or_default();
    eprintln!(
        "Open this URL and allow access before {}; the provider then calls back {redirect}, which `sluice dev --data {}` must be serving:",
        auth.expires_at.to_rfc3339(),
        data.display()
    );
    println!("{}", auth.authorization_url);
    Ok(ExitCode::SUCCESS)
}
