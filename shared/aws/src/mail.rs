//! Alert mail on AWS: SES (v2 `SendEmail`, simple content), from the deployment's sender
//! identity (`SLUICE_MAIL_FROM`, which SES must have verified). Linked only where the
//! `mail` feature is on (the deliver function, which sends alerts).

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use sluice_core::ports::{Mail, Mailer};

pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesMailer {
    pub fn new(client: aws_sdk_sesv2::Client, from: String) -> SesMailer {
        SesMailer { client, from }
    }
}

fn utf8(data: &str) -> anyhow::Result<Content> {
    Ok(Content::builder().data(data).charset("UTF-8").build()?)
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let message = Message::builder()
            .subject(utf8(&mail.subject)?)
            .body(Body::builder().text(utf8(&mail.text)?).build())
            .build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(mail.to.clone()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(aws_sdk_sesv2::Error::from)
            .with_context(|| format!("SES did not send the alert from {}", self.from))?;
        Ok(())
    }
}
