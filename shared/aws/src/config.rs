//! Where the AWS adapters find their resources: environment variables the SAM template sets.

use sluice_core::Stage;
use std::collections::HashMap;

/// Environment variable names, shared by the template (infra/template.yaml), the harness and
/// `from_env` so the three cannot drift.
pub const ENV_TABLE: &str = "SLUICE_TABLE";
pub const ENV_BUCKET: &str = "SLUICE_SYSTEM_BUCKET";
pub const ENV_ENDPOINT: &str = "SLUICE_AWS_ENDPOINT";
pub const ENV_MAX_INLINE: &str = "SLUICE_MAX_INLINE_PAGE_BYTES";
/// `true`: http connections may reach loopback and private addresses (targets inside the
/// VPC) without each opting in. Unset or `false`: refused.
pub const ENV_ALLOW_PRIVATE: &str = "SLUICE_ALLOW_PRIVATE_ADDRESSES";
/// What the names of the Secrets Manager secrets Sluice writes begin with (default `sluice/`).
pub const ENV_SECRET_PREFIX: &str = "SLUICE_SECRET_PREFIX";

/// `SLUICE_QUEUE_TRANSLATE`, ... : the queue URL of each stage.
pub fn queue_env(stage: Stage) -> String {
    format!("SLUICE_QUEUE_{}", stage.name().to_ascii_uppercase())
}

/// Logical ids in infra/template.yaml. The harness creates resources under these names and a
/// test checks that the template declares exactly these.
pub const TABLE_LOGICAL_ID: &str = "SluiceTable";
pub const BUCKET_LOGICAL_ID: &str = "SystemBucket";

/// `TranslateQueue`, ...
pub fn queue_logical_id(stage: Stage) -> String {
    format!("{}Queue", capitalized(stage.name()))
}

/// `TranslateDeadLetterQueue`, ...
pub fn dead_letter_logical_id(stage: Stage) -> String {
    format!("{}DeadLetterQueue", capitalized(stage.name()))
}

/// `TranslateFunction`, ... (and `ApiFunction`).
pub fn function_logical_id(stage: Stage) -> String {
    format!("{}Function", capitalized(stage.name()))
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub table: String,
    pub queue_urls: HashMap<Stage, String>,
    pub system_bucket: String,
    /// moto or another emulator; when set, S3 uses path-style addressing.
    pub endpoint: Option<String>,
    pub max_inline_page_bytes: usize,
    /// The deployment lets connections reach loopback and private addresses.
    pub allow_private_addresses: bool,
    /// How big replies are kept (`SLUICE_REPLY_EXCERPT_BYTES`, `SLUICE_KEEP_FULL_REPLIES`).
    pub replies: sluice_core::ReplyLimits,
    /// `SLUICE_RETENTION_DAYS` (the clean-up's default retention).
    pub retention_days: u32,
    /// `SLUICE_SCRIPT_TIMEOUT_MS`, `SLUICE_SCRIPT_MEMORY_MB`.
    pub scripts: sluice_core::ScriptLimits,
    /// `SLUICE_SECRET_PREFIX`: the Secrets Manager secret of secret `NAME` is `<prefix>NAME`.
    pub secret_prefix: String,
    /// `SLUICE_PUBLIC_URL`: the API's URL, for links in alerts.
    pub public_url: Option<String>,
    /// `SLUICE_MAIL_FROM`: the SES identity alerts are mailed from (none: no alert mail).
    pub mail: Option<sluice_core::MailSettings>,
}

impl AwsSettings {
    /// Reads the settings; the error names every missing variable.
    pub fn from_env() -> anyhow::Result<AwsSettings> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env) with another source of variables (tests).
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<AwsSettings> {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let mut missing = Vec::new();
        let mut need = |name: String| {
            let v = var(&name);
            if v.is_none() {
                missing.push(name);
            }
            v.unwrap_or_default()
        };
        let table = need(ENV_TABLE.into());
        let system_bucket = need(ENV_BUCKET.into());
        let queue_urls = Stage::ALL
            .into_iter()
            .map(|s| (s, need(queue_env(s))))
            .collect();
        if !missing.is_empty() {
            anyhow::bail!("missing environment variables: {}", missing.join(", "));
        }
        let max_inline_page_bytes = match var(ENV_MAX_INLINE) {
            Some(v) => v
                .parse()
                .map_err(|e| anyhow::anyhow!("{ENV_MAX_INLINE}: not a byte count: {e}"))?,
            None => sluice_core::Settings::default().max_inline_page_bytes,
        };
        let allow_private_addresses = match var(ENV_ALLOW_PRIVATE).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => anyhow::bail!("{ENV_ALLOW_PRIVATE}: '{other}' is not true or false"),
        };
        Ok(AwsSettings {
            table,
            queue_urls,
            system_bucket,
            endpoint: var(ENV_ENDPOINT),
            max_inline_page_bytes,
            allow_private_addresses,
            replies: sluice_core::ReplyLimits::from_vars(&lookup)?,
            retention_days: sluice_core::retention_days_from(&lookup)?,
            scripts: sluice_core::ScriptLimits::from_vars(&lookup)?,
            secret_prefix: var(ENV_SECRET_PREFIX).unwrap_or_else(|| "sluice/".into()),
            public_url: sluice_core::public_url_from(&lookup)?,
            mail: sluice_core::mail_settings_from(&lookup)?,
        })
    }
}

/// The SDK configuration: region/credentials from the usual chain, the endpoint override if set.
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
        // An emulator takes any credentials; do not make tests depend on the host's.
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "emulator",
            ));
        }
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            loader = loader.region(aws_sdk_sqs::config::Region::new("us-east-1"));
        }
    }
    loader.load().await
}

/// An S3 client; path-style when talking to an emulator (moto has no virtual-host buckets).
pub fn s3_client(config: &aws_config::SdkConfig, endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(endpoint.is_some())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::runtime::{ENV_KEEP_FULL_REPLIES, ENV_REPLY_EXCERPT_BYTES};

    #[test]
    fn every_missing_variable_is_named() {
        let err = AwsSettings::from_vars(|name| (name == ENV_TABLE).then(|| "t".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(ENV_BUCKET), "{err}");
        assert!(err.contains("SLUICE_QUEUE_DELIVER"), "{err}");
        assert!(!err.contains(ENV_TABLE), "{err}");
    }

    #[test]
    fn settings_from_variables() {
        let s = AwsSettings::from_vars(|name| match name {
            ENV_ENDPOINT => Some("http://127.0.0.1:5000".into()),
            ENV_MAX_INLINE => Some("1000".into()),
            ENV_ALLOW_PRIVATE | ENV_KEEP_FULL_REPLIES => None,
            sluice_core::hooks::ENV_SCRIPT_TIMEOUT_MS
            | sluice_core::hooks::ENV_SCRIPT_MEMORY_MB => None,
            ENV_REPLY_EXCERPT_BYTES => Some("4096".into()),
            sluice_core::ENV_RETENTION_DAYS => Some("90".into()),
            sluice_core::ENV_PUBLIC_URL => Some("https://api.example.com".into()),
            sluice_core::ports::ENV_MAIL_FROM => Some("alerts@example.com".into()),
            sluice_core::ENV_SMTP_URL => None,
            other => Some(format!("v-{other}")),
        })
        .unwrap();
        assert_eq!(s.public_url.as_deref(), Some("https://api.example.com"));
        assert_eq!(
            s.mail.map(|m| m.from).as_deref(),
            Some("alerts@example.com")
        );
        assert_eq!(s.replies.excerpt_bytes, 4096);
        assert_eq!(s.retention_days, 90);
        assert!(!s.replies.keep_full);
        assert!(
            !s.allow_private_addresses,
            "refused unless the deployment says so"
        );
        assert_eq!(s.table, "v-SLUICE_TABLE");
        assert_eq!(s.queue_urls[&Stage::Upload], "v-SLUICE_QUEUE_UPLOAD");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(s.max_inline_page_bytes, 1000);
        let bad = AwsSettings::from_vars(|name| match name {
            ENV_MAX_INLINE => Some("lots".into()),
            ENV_REPLY_EXCERPT_BYTES | ENV_KEEP_FULL_REPLIES => None,
            sluice_core::hooks::ENV_SCRIPT_TIMEOUT_MS
            | sluice_core::hooks::ENV_SCRIPT_MEMORY_MB
            | sluice_core::ENV_RETENTION_DAYS
            | sluice_core::ENV_PUBLIC_URL
            | sluice_core::ports::ENV_MAIL_FROM
            | sluice_core::ENV_SMTP_URL => None,
            other => Some(other.into()),
        });
        assert!(bad.unwrap_err().to_string().contains(ENV_MAX_INLINE));
        let private = |value: &str| {
            let value = value.to_string();
            AwsSettings::from_vars(move |name| match name {
                ENV_ALLOW_PRIVATE => Some(value.clone()),
                ENV_MAX_INLINE | ENV_REPLY_EXCERPT_BYTES | ENV_KEEP_FULL_REPLIES => None,
                sluice_core::hooks::ENV_SCRIPT_TIMEOUT_MS
                | sluice_core::hooks::ENV_SCRIPT_MEMORY_MB
                | sluice_core::ENV_RETENTION_DAYS
                | sluice_core::ENV_PUBLIC_URL
                | sluice_core::ports::ENV_MAIL_FROM
                | sluice_core::ENV_SMTP_URL => None,
                other => Some(other.into()),
            })
        };
        assert!(private("true").unwrap().allow_private_addresses);
        assert!(!private("false").unwrap().allow_private_addresses);
        let typo = private("yes").unwrap_err().to_string();
        assert!(
            typo.contains(ENV_ALLOW_PRIVATE) && typo.contains("yes"),
            "{typo}"
        );
    }

    #[test]
    fn logical_ids() {
        assert_eq!(queue_logical_id(Stage::Translate), "TranslateQueue");
        assert_eq!(
            dead_letter_logical_id(Stage::Upload),
            "UploadDeadLetterQueue"
        );
        assert_eq!(function_logical_id(Stage::Trigger), "TriggerFunction");
    }
}
