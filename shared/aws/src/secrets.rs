//! [`SecretsManagerStore`]: the [`SecretStore`] port (secrets Sluice writes: a rotated OAuth2
//! refresh token) on AWS Secrets Manager. Secret `NAME` is the Secrets Manager secret
//! `<prefix>NAME` (`SLUICE_SECRET_PREFIX`; the template sets `<stack name>/`), a string.
//! The first write creates it; a deployment may also create it itself with the first
//! refresh token, which is then read before `SLUICE_SECRET_<NAME>`.

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_secretsmanager::Client;
use sluice_core::ports::SecretStore;

pub struct SecretsManagerStore {
    client: Client,
    prefix: String,
}

impl SecretsManagerStore {
    pub fn new(client: Client, prefix: &str) -> Self {
        SecretsManagerStore {
            client,
            prefix: prefix.to_string(),
        }
    }

    fn id(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// Secrets Manager's answer for a secret that does not exist.
fn is_missing(code: Option<&str>) -> bool {
    code == Some("ResourceNotFoundException")
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn read(&self, name: &str) -> anyhow::Result<Option<String>> {
        let id = self.id(name);
        match self.client.get_secret_value().secret_id(&id).send().await {
            Ok(out) => Ok(out.secret_string().map(str::to_string)),
            Err(e) if is_missing(e.code()) => Ok(None),
            Err(e) => Err(anyhow::anyhow!("{}", DisplayErrorContext(e)))
                .with_context(|| format!("reading secret {id} from Secrets Manager")),
        }
    }

    async fn write(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let id = self.id(name);
        let put = self.client.put_secret_value().secret_id(&id);
        let err = match put.secret_string(value).send().await {
            Ok(_) => return Ok(()),
            Err(e) if is_missing(e.code()) => {
                let create = self.client.create_secret().name(&id);
                match create.secret_string(value).send().await {
                    Ok(_) => return Ok(()),
                    Err(e) => DisplayErrorContext(e).to_string(),
                }
            }
            Err(e) => DisplayErrorContext(e).to_string(),
        };
        Err(anyhow::anyhow!("{err}"))
            .with_context(|| format!("writing secret {id} to Secrets Manager"))
    }
}
