//! Mail: how a flow's alert reaches people by e-mail. Stage code says what to send; the
//! adapter owns the sender address and the wire (SMTP in the local runtime,
//! `sluice_embedded::mail`; SES on AWS, `sluice_aws::mail`). A deployment that set up no
//! mail answers every send with [`NoMailer`]'s error, which says what to set.

use async_trait::async_trait;

/// One plain-text message to a few recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends `mail` once; an error says why it did not go (nothing is retried here).
    async fn send(&self, mail: &Mail) -> anyhow::Result<()>;
}

/// The sender address every adapter reads: without it a deployment sends no mail.
pub const ENV_MAIL_FROM: &str = "SLUICE_MAIL_FROM";

/// Sends nothing: a deployment without a sender address.
pub struct NoMailer;

#[async_trait]
impl Mailer for NoMailer {
    async fn send(&self, _: &Mail) -> anyhow::Result<()> {
        anyhow::bail!(
            "this deployment sends no e-mail: set {ENV_MAIL_FROM} to the sender address \
             (on AWS an SES-verified identity: the template's AlertMailFrom; locally also \
             SLUICE_SMTP_URL, e.g. smtp://mail.example.com:587)"
        )
    }
}
