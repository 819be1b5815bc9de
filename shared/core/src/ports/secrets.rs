use crate::{Error, Result};
use std::collections::HashMap;

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
