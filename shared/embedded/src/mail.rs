//! Alert mail in the local runtime: SMTP through lettre (TLS by rustls), to the server
//! `SLUICE_SMTP_URL` names, from `SLUICE_MAIL_FROM` ([`sluice_core::MailSettings`]). A
//! runtime without both sends none ([`NoMailer`] says what to set).

use anyhow::Context;
use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sluice_core::ports::{Mail, Mailer, NoMailer};
use sluice_core::MailSettings;
use std::sync::Arc;
use std::time::Duration;

/// How long one alert mail may take (connect, TLS, the whole SMTP exchange).
const SEND_TIMEOUT: Duration = Duration::from_secs(20);

pub struct SmtpMailer {
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpMailer {
    pub fn new(from: &str, smtp_url: &str) -> anyhow::Result<SmtpMailer> {
        let from = from
            .parse()
            .with_context(|| format!("'{from}' is not a sender address"))?;
        // lettre's error quotes no part of the URL, so the password stays out of it.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .context("SLUICE_SMTP_URL is not an SMTP URL lettre reads")?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        Ok(SmtpMailer { from, transport })
    }
}

/// The mailer `settings` ask for: SMTP when they name a sender and a server, else none.
pub fn mailer(settings: Option<&MailSettings>) -> anyhow::Result<Arc<dyn Mailer>> {
    match settings {
        Some(MailSettings {
            from,
            smtp_url: Some(url),
        }) => Ok(Arc::new(SmtpMailer::new(from, url)?)),
        _ => Ok(Arc::new(NoMailer)),
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(&mail.subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &mail.to {
            message = message.to(to
                .parse()
                .with_context(|| format!("'{to}' is not an e-mail address"))?);
        }
        let message = message.body(mail.text.clone())?;
        self.transport
            .send(message)
            .await
            .context("the SMTP server did not take the alert")?;
        Ok(())
    }
}
