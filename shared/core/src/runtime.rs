//! [`Sluice`]: the ports plus per-process caches, shared by every stage handler.

use crate::hooks::ScriptLimits;
use crate::ports::{
    Blobs, Clock, Kind, Mailer, Measurement, MemorySecretStore, Metrics, NoMailer, NoMetrics,
    Queue, SecretStore, Secrets, Store,
};
use crate::stages::{self, Stage};
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use sluice_model::{Bundle, Connection, Export, Flow, Import, Script, StageMessage};
use std::sync::Arc;
use std::time::Duration;

/// Knobs that differ between deployments.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bucket for Sluice's own objects (pages too large for a queue message).
    pub system_bucket: String,
    /// How long a run lock holds without renewal; a crashed run frees its flow after this.
    pub lock_lease: Duration,
    /// Pages whose JSON is larger than this travel by reference (SQS allows 256 KiB).
    pub max_inline_page_bytes: usize,
    /// Which loopback and private addresses http connections may reach without opting in
    /// themselves (`http.allowPrivateAddresses`). Refused by default, as on AWS; the local
    /// CLI allows loopback for development. Link-local metadata addresses stay refused
    /// unless the connection allows them (`http.allowMetadataAddresses`).
    pub private_addresses: PrivateAddresses,
    /// Who this process is in what it holds in the store (connection slots are owned by
    /// `<instance>:<id>`): the local runtime sets its queue runner's id, so a runtime taking
    /// over the work of a killed one frees that one's slots at once. Default: a fresh id.
    pub instance: String,
    /// How much of a big reply is kept (see `stages::deliver::bounded`).
    pub replies: ReplyLimits,
    /// How long and how big one script call may get (see [`crate::hooks`]).
    pub scripts: ScriptLimits,
    /// Days jobs are kept before the clean-up purges them, for flows without
    /// `retentionDays` (`SLUICE_RETENTION_DAYS`, default 30; 0 keeps them for ever).
    pub retention_days: u32,
    /// Where the deployment's API is reached from outside (`SLUICE_PUBLIC_URL`, e.g.
    /// `https://abc.execute-api.eu-west-1.amazonaws.com`): alerts link to jobs under it.
    /// Without it their links are API paths (`/jobs/{id}`).
    pub public_url: Option<String>,
    /// How alert mail goes out; None sends none (see [`crate::ports::mail`]).
    pub mail: Option<MailSettings>,
}

/// Alert mail: who it is from, and (the local runtime) the SMTP server it goes through. On
/// AWS it goes through SES, from an identity SES has verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// `SLUICE_MAIL_FROM`: `alerts@example.com` or `Sluice <alerts@example.com>`.
    pub from: String,
    /// `SLUICE_SMTP_URL`, in lettre's form: `smtps://user:password@host:465` (TLS from the
    /// start), `smtp://user:password@host:587?tls=required` (STARTTLS), or `smtp://host:25`
    /// (unencrypted: a relay on a trusted network; refused with a password).
    pub smtp_url: Option<String>,
}

pub const ENV_SMTP_URL: &str = "SLUICE_SMTP_URL";

/// `SLUICE_MAIL_FROM` and `SLUICE_SMTP_URL` from `lookup`: None without a sender; an error
/// names the variable that is wrong.
pub fn mail_settings_from(
    lookup: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<MailSettings>> {
    use crate::ports::ENV_MAIL_FROM;
    let set = |name| lookup(name).filter(|v: &String| !v.trim().is_empty());
    let Some(from) = set(ENV_MAIL_FROM) else {
        if set(ENV_SMTP_URL).is_some() {
            anyhow::bail!(
                "{ENV_SMTP_URL} is set but {ENV_MAIL_FROM} is not: set the sender address too"
            );
        }
        return Ok(None);
    };
    if let Err(why) = from.trim().parse::<email_address::EmailAddress>() {
        anyhow::bail!("{ENV_MAIL_FROM}: '{from}' is not an e-mail address ({why})");
    }
    let smtp_url = set(ENV_SMTP_URL);
    if let Some(raw) = &smtp_url {
        match url::Url::parse(raw) {
            Ok(u) if u.scheme() == "smtp"
                && u.password().is_some()
                && !u.query_pairs().any(|(k, v)| k == "tls" && v == "required") =>
            {
                anyhow::bail!(
                    "{ENV_SMTP_URL}: a password would go unencrypted: use smtps:// or add ?tls=required"
                )
            }
            Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.host().is_some() => {}
            _ => anyhow::bail!(
                "{ENV_SMTP_URL}: not an smtp:// or smtps:// URL with a host (the password, if any, is not shown)"
            ),
        }
    }
    Ok(Some(MailSettings {
        from: from.trim().to_string(),
        smtp_url,
    }))
}

pub const ENV_PUBLIC_URL: &str = "SLUICE_PUBLIC_URL";

/// `SLUICE_PUBLIC_URL` from `lookup` (None when unset or empty); the error names it.
pub fn public_url_from(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<String>> {
    let Some(raw) = lookup(ENV_PUBLIC_URL).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match url::Url::parse(raw.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Some(raw.trim().to_string())),
        _ => anyhow::bail!("{ENV_PUBLIC_URL}: '{raw}' is not an http(s) URL"),
    }
}

pub const ENV_RETENTION_DAYS: &str = "SLUICE_RETENTION_DAYS";
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// `SLUICE_RETENTION_DAYS` from `lookup`, the default when unset; the error names it.
pub fn retention_days_from(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<u32> {
    let days = number_var(&lookup, ENV_RETENTION_DAYS, "a number of days", 0)?;
    match days.map(u32::try_from) {
        None => Ok(DEFAULT_RETENTION_DAYS),
        Some(Ok(d)) => Ok(d),
        Some(Err(_)) => anyhow::bail!("{ENV_RETENTION_DAYS}: too many days"),
    }
}

/// How big replies are kept. A reply whose body is larger than `excerpt_bytes` keeps that
/// many bytes of it as an excerpt, plus what extract and evaluate need; the whole body is
/// written to the system bucket only when `keep_full` says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLimits {
    /// `SLUICE_REPLY_EXCERPT_BYTES` (default 16384).
    pub excerpt_bytes: usize,
    /// `SLUICE_KEEP_FULL_REPLIES=true` (default false).
    pub keep_full: bool,
}

pub const ENV_REPLY_EXCERPT_BYTES: &str = "SLUICE_REPLY_EXCERPT_BYTES";
pub const ENV_KEEP_FULL_REPLIES: &str = "SLUICE_KEEP_FULL_REPLIES";

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            excerpt_bytes: 16 * 1024,
            keep_full: false,
        }
    }
}

impl ReplyLimits {
    /// From `SLUICE_REPLY_EXCERPT_BYTES` and `SLUICE_KEEP_FULL_REPLIES`, defaults for unset
    /// ones; the error names the variable and says what it takes.
    pub fn from_env() -> anyhow::Result<ReplyLimits> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env) with another source of variables (tests).
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<ReplyLimits> {
        let mut limits = ReplyLimits::default();
        if let Some(n) = number_var(&lookup, ENV_REPLY_EXCERPT_BYTES, "a byte count", 256)? {
            limits.excerpt_bytes = n as usize;
        }
        if let Some(v) = lookup(ENV_KEEP_FULL_REPLIES).filter(|v| !v.is_empty()) {
            limits.keep_full = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                other => anyhow::bail!("{ENV_KEEP_FULL_REPLIES}: '{other}' is not true or false"),
            };
        }
        Ok(limits)
    }
}

/// The number in variable `name`, if set: an error naming the variable unless it is `what`
/// (e.g. "a byte count") of `min` or more. Every numeric setting is read through this.
pub(crate) fn number_var(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    what: &str,
    min: u64,
) -> anyhow::Result<Option<u64>> {
    match lookup(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| *n >= min)
            .map(Some)
            .ok_or_else(|| anyhow::anyhow!("{name}: '{v}' is not {what} of {min} or more")),
    }
}

/// Which non-public addresses a deployment lets its http connections reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PrivateAddresses {
    /// Neither loopback nor private ranges (deployed functions).
    #[default]
    Refused,
    /// Loopback (127.0.0.0/8, ::1) only: a local sink or API during development.
    Loopback,
    /// Loopback and private ranges.
    Allowed,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            system_bucket: "sluice-system".into(),
            lock_lease: Duration::from_secs(15 * 60),
            max_inline_page_bytes: 200 * 1024,
            private_addresses: PrivateAddresses::Refused,
            instance: sluice_model::new_id(),
            replies: ReplyLimits::default(),
            scripts: ScriptLimits::default(),
            retention_days: DEFAULT_RETENTION_DAYS,
            public_url: None,
            mail: None,
        }
    }
}

/// Everything a stage handler needs. Built once per process (Lambda INIT, or `sluice` start)
/// and shared: it holds compiled templates, HTTP clients, OAuth tokens and rate limiters.
pub struct Sluice {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub blobs: Arc<dyn Blobs>,
    pub secrets: Arc<dyn Secrets>,
    /// Secrets Sluice writes (a rotated OAuth2 refresh token); [`MemorySecretStore`] unless
    /// [`Sluice::with_secret_store`] says.
    pub secret_store: Arc<dyn SecretStore>,
    pub clock: Arc<dyn Clock>,
    /// Where counts and timings go ([`NoMetrics`] unless [`Sluice::with_metrics`] says).
    pub metrics: Arc<dyn Metrics>,
    /// How alert mail goes out ([`NoMailer`] unless [`Sluice::with_mailer`] says).
    pub mailer: Arc<dyn Mailer>,
    pub settings: Settings,
    pub(crate) caches: stages::Caches,
}

impl Sluice {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        blobs: Arc<dyn Blobs>,
        secrets: Arc<dyn Secrets>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Self {
        let caches = stages::Caches::new(&settings);
        Sluice {
            store,
            queue,
            blobs,
            secrets,
            secret_store: Arc::new(MemorySecretStore::default()),
            clock,
            metrics: Arc::new(NoMetrics),
            mailer: Arc::new(NoMailer),
            settings,
            caches,
        }
    }

    /// The same, reporting to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same, writing secrets to `store` (the embedded store's file, Secrets Manager).
    pub fn with_secret_store(mut self, store: Arc<dyn SecretStore>) -> Self {
        self.secret_store = store;
        self
    }

    /// The same, sending alert mail through `mailer`.
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    pub(crate) fn measure(&self, measurement: Measurement) {
        self.metrics.record(measurement);
    }

    /// Runs one stage on one message. Errors are infrastructure failures: the caller
    /// (queue adapter) leaves the message to be redelivered. Record-level failures are not
    /// errors here; they are counted and stored by evaluate.
    pub async fn handle(&self, stage: Stage, message: StageMessage) -> Result<()> {
        stage.handler().handle(self, message).await
    }

    async fn definition<T: DeserializeOwned>(&self, kind: Kind, id: &str) -> Result<T> {
        let doc = self
            .store
            .get_definition(kind, id)
            .await?
            .ok_or_else(|| Error::not_found(kind.label(), id))?;
        serde_json::from_value(doc).map_err(|e| {
            Error::Internal(anyhow::anyhow!(
                "stored {} {id} is unreadable: {e}",
                kind.label()
            ))
        })
    }
    pub async fn flow(&self, id: &str) -> Result<Flow> {
        self.definition(Kind::Flow, id).await
    }
    pub async fn export(&self, id: &str) -> Result<Export> {
        self.definition(Kind::Export, id).await
    }
    pub async fn import(&self, id: &str) -> Result<Import> {
        self.definition(Kind::Import, id).await
    }
    pub async fn connection(&self, id: &str) -> Result<Connection> {
        self.definition(Kind::Connection, id).await
    }
    pub async fn script(&self, id: &str) -> Result<Script> {
        self.definition(Kind::Script, id).await
    }

    /// Stores every definition of a bundle (`sluice run`, tests), scripts first so nothing
    /// is stored before what it names. The caller validates the bundle.
    pub async fn store_bundle(&self, bundle: &Bundle) -> anyhow::Result<()> {
        let docs = (bundle
            .scripts
            .iter()
            .map(|x| (Kind::Script, &x.id, json(x))))
        .chain(
            bundle
                .connections
                .iter()
                .map(|x| (Kind::Connection, &x.id, json(x))),
        )
        .chain(
            bundle
                .exports
                .iter()
                .map(|x| (Kind::Export, &x.id, json(x))),
        )
        .chain(
            bundle
                .imports
                .iter()
                .map(|x| (Kind::Import, &x.id, json(x))),
        )
        .chain(bundle.flows.iter().map(|x| (Kind::Flow, &x.id, json(x))));
        for (kind, id, doc) in docs {
            self.store.put_definition(kind, id, &doc?).await?;
        }
        Ok(())
    }
}

fn json<T: serde::Serialize>(t: &T) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(t)?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A variable lookup over fixed pairs, for the `from_vars` constructors' tests.
    pub(crate) fn vars(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reply_limits_come_from_the_environment_and_bad_values_are_named() {
        assert_eq!(
            ReplyLimits::from_vars(vars(&[])).unwrap(),
            ReplyLimits::default()
        );
        let set = ReplyLimits::from_vars(vars(&[
            (ENV_REPLY_EXCERPT_BYTES, "4096"),
            (ENV_KEEP_FULL_REPLIES, "true"),
        ]))
        .unwrap();
        assert_eq!((set.excerpt_bytes, set.keep_full), (4096, true));
        let err = ReplyLimits::from_vars(vars(&[(ENV_REPLY_EXCERPT_BYTES, "12")])).unwrap_err();
        assert!(err.to_string().contains(ENV_REPLY_EXCERPT_BYTES), "{err}");
        let err = ReplyLimits::from_vars(vars(&[(ENV_KEEP_FULL_REPLIES, "yes")])).unwrap_err();
        assert!(err.to_string().contains("not true or false"), "{err}");
    }

    #[test]
    fn mail_and_public_url_come_from_the_environment_and_bad_values_are_named() {
        use crate::ports::ENV_MAIL_FROM;
        assert_eq!(mail_settings_from(vars(&[])).unwrap(), None);
        let set = mail_settings_from(vars(&[
            (ENV_MAIL_FROM, "Sluice <alerts@example.com>"),
            (ENV_SMTP_URL, "smtp://127.0.0.1:2525"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(set.from, "Sluice <alerts@example.com>");
        let err = mail_settings_from(vars(&[(ENV_MAIL_FROM, "alerts")])).unwrap_err();
        assert!(err.to_string().contains(ENV_MAIL_FROM), "{err}");
        let err = mail_settings_from(vars(&[(ENV_SMTP_URL, "smtp://h")])).unwrap_err();
        assert!(err.to_string().contains("is not"), "{err}");
        let err = mail_settings_from(vars(&[
            (ENV_MAIL_FROM, "a@example.com"),
            (ENV_SMTP_URL, "http://user:hunter2@h"),
        ]))
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = mail_settings_from(vars(&[
            (ENV_MAIL_FROM, "a@example.com"),
            (ENV_SMTP_URL, "smtp://user:hunter2@h:587"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("unencrypted"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(public_url_from(vars(&[])).unwrap(), None);
        let err = public_url_from(vars(&[(ENV_PUBLIC_URL, "api.example.com")])).unwrap_err();
        assert!(err.to_string().contains(ENV_PUBLIC_URL), "{err}");
    }
}
