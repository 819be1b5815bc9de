//! The secrets port: [`Secrets`], the named secrets `secret:NAME` references read (set by
//! the deployment, read only), and [`SecretStore`], the secrets Sluice writes itself (a
//! refresh token the token server rotated). A name written to the store is read from it
//! first, so the newest value wins over the deployment's first one.

use crate::{Error, Result};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

/// Named secrets. A credential written `secret:NAME` in a connection is looked up here at run
/// time, so stored definitions need not hold secrets at all.
pub trait Secrets: Send + Sync + 'static {
    fn get(&self, name: &str) -> Option<String>;
}

/// Secrets from environment variables `SLUICE_SECRET_<NAME>` (name upper-cased, `-` as `_`).
/// On Lambda these come from the function's environment (filled from Secrets Manager by the
/// template); locally from the shell.
#[derive(Debug, Default, Clone)]
pub struct EnvSecrets;

impl Secrets for EnvSecrets {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(env_var(name)).ok()
    }
}

/// The environment variable [`EnvSecrets`] reads secret `name` from: `SLUICE_SECRET_<NAME>`,
/// upper-cased, `-` as `_`.
pub fn env_var(name: &str) -> String {
    format!(
        "SLUICE_SECRET_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// Secrets from a map (tests, embedding).
#[derive(Debug, Default, Clone)]
pub struct MapSecrets(pub HashMap<String, String>);

impl Secrets for MapSecrets {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Resolves a credential value: `secret:NAME` through `secrets`, anything else as written.
/// `field` names the connection field for the error.
pub fn resolve(secrets: &dyn Secrets, field: &str, value: &str) -> Result<String> {
    match value.strip_prefix("secret:") {
        Some(name) => secrets.get(name).ok_or_else(|| {
            Error::invalid(
                field,
                format!("secret '{name}' is not set ({})", env_var(name)),
            )
        }),
        None => Ok(value.to_string()),
    }
}

/// Literal headers (callbacks: not templates) with their `secret:NAME` values resolved.
/// `field` is the path of the header list, for the error.
pub fn resolve_headers(
    secrets: &dyn Secrets,
    field: &str,
    headers: &[sluice_model::NameValue],
) -> Result<Vec<(String, String)>> {
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let value = resolve(secrets, &format!("{field}[{i}].value"), &h.value)?;
            Ok((h.name.clone(), value))
        })
        .collect()
}

/// Secrets Sluice writes: the refresh token an OAuth2 token server sent in place of the one
/// it was given. Adapters: the embedded store's SQLite file, AWS Secrets Manager. Writers
/// serialise themselves (a run lock per connection, see `deliver::oauth`), so a plain
/// overwrite is enough here.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// The value last written under `name`; `None` when nothing was.
    async fn read(&self, name: &str) -> anyhow::Result<Option<String>>;
    /// Writes `value` under `name`, replacing what was there.
    async fn write(&self, name: &str, value: &str) -> anyhow::Result<()>;
}

/// A [`SecretStore`] in this process's memory: what a written secret outlives is the process
/// only. The default of a [`crate::Sluice`] built without one (tests, embedding).
#[derive(Debug, Default)]
pub struct MemorySecretStore(Mutex<HashMap<String, String>>);

#[async_trait]
impl SecretStore for MemorySecretStore {
    async fn read(&self, name: &str) -> anyhow::Result<Option<String>> {
        Ok(self.0.lock().unwrap().get(name).cloned())
    }
    async fn write(&self, name: &str, value: &str) -> anyhow::Result<()> {
        self.0
            .lock()
            .unwrap()
            .insert(name.to_string(), value.to_string());
        Ok(())
    }
}

/// A `secret:NAME` credential Sluice may have rewritten: the [`SecretStore`]'s value when it
/// holds one, else the deployment's ([`resolve`]). `field` names the connection field for
/// the error.
pub async fn resolve_written(
    store: &dyn SecretStore,
    secrets: &dyn Secrets,
    field: &str,
    value: &str,
) -> Result<String> {
    if let Some(name) = value.strip_prefix("secret:") {
        let written = store.read(name).await.map_err(|e| {
            Error::Internal(e.context(format!("reading secret '{name}' ({field})")))
        })?;
        if let Some(v) = written {
            return Ok(v);
        }
    }
    resolve(secrets, field, value)
}
