//! A webhook export's listener: the public URL a source system posts records to, and how a
//! delivery proves it comes from that system. The wire shape is integrator.io's flat
//! `webhook` object (`verify`, `token`, `key`, ...); [`WebhookListener::verification`] reads it
//! into one [`Verification`] with exactly the fields its method uses, so the stage code never
//! sees a token without its place or an HMAC without its key. A stored listener was validated
//! by the same reading.

use crate::{validate, ValidationErrors};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a delivery is verified (integrator.io's `webhook.verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookVerify {
    /// A shared token in a header (`header`) or in a query parameter (`path`).
    Token,
    /// An HMAC of the raw body with `key`, sent in `header`.
    Hmac,
    /// HTTP basic auth with `username` and `password`.
    Basic,
    /// The URL itself is the secret: `/exports/{id}/{token}/data`.
    SecretUrl,
}

/// The source system a listener is set up for. Only `custom`: the verification is given by
/// the listener's own fields, as for any system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookProvider {
    Custom,
}

/// The digest an HMAC is computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl HmacAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            HmacAlgorithm::Sha1 => "sha1",
            HmacAlgorithm::Sha256 => "sha256",
            HmacAlgorithm::Sha512 => "sha512",
        }
    }
}

/// How the HMAC is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DigestEncoding {
    Hex,
    Base64,
}

/// The listener of a `webhook` export (integrator.io's export field `webhook`). Without it a
/// webhook export is fed only by the run endpoint and `sluice run --records`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"verify": "hmac", "algorithm": "sha256", "encoding": "hex",
    "key": "secret:SHOP_WEBHOOK_KEY", "header": "X-Shop-Signature", "successStatusCode": 202}))]
pub struct WebhookListener {
    /// Who sends the deliveries (integrator.io's `webhook.provider`): `custom` only, a
    /// source whose check is set by the fields below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<WebhookProvider>,
    /// How a delivery is verified; required: a listener never takes unverified records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(required = true)]
    pub verify: Option<WebhookVerify>,
    /// The shared token (verify `token` and `secret_url`); masked in answers; may be
    /// `secret:NAME`. A secret URL's token is letters, digits, `-`, `_`, `.`, at least 16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The query parameter carrying the token (verify `token`, when no `header` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The header carrying the token (verify `token`; `Authorization: Bearer <token>` is read
    /// too) or the signature (verify `hmac`, required; a `sha256=` style prefix is allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The HMAC's digest (verify `hmac`, required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<HmacAlgorithm>,
    /// How the signature is written (verify `hmac`, required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<DigestEncoding>,
    /// The HMAC key (verify `hmac`, required): a `secret:NAME` reference, so the store never
    /// holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Basic auth's user name (verify `basic`, required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Basic auth's password (verify `basic`, required); masked in answers; may be `secret:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The status a kept delivery is answered with: 200-299, default 204.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_status_code: Option<u16>,
    /// The body of that answer (sent as JSON when it parses as JSON, else as text); none with 204.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_body: Option<String>,
    /// The header that names a delivery (Sluice's own field; default `Idempotency-Key`), for
    /// a source that sends its delivery's id elsewhere (`X-GitHub-Delivery`,
    /// `X-Shopify-Webhook-Id`, ...). A delivery sent again with the same id (the sender
    /// timed out, or was answered with an error after the records were kept for some of
    /// the export's flows) runs no flow twice; without the header each delivery is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_header: Option<String>,
}

/// Where a token is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPlace<'a> {
    Header(&'a str),
    Query(&'a str),
}

/// One verification method with what it needs, read from a [`WebhookListener`]. Credentials
/// are as written: `secret:NAME` or the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification<'a> {
    Token {
        token: &'a str,
        place: TokenPlace<'a>,
    },
    Hmac {
        key: &'a str,
        algorithm: HmacAlgorithm,
        encoding: DigestEncoding,
        header: &'a str,
    },
    Basic {
        username: &'a str,
        password: &'a str,
    },
    SecretUrl {
        token: &'a str,
    },
}

/// The answer to a kept delivery.
pub const DEFAULT_SUCCESS_STATUS: u16 = 204;

impl WebhookListener {
    /// The status a kept delivery gets.
    pub fn success_status(&self) -> u16 {
        self.success_status_code.unwrap_or(DEFAULT_SUCCESS_STATUS)
    }

    /// The verification this listener asks for, or every field (under `at`) that is missing,
    /// wrong or not read by the chosen method.
    pub fn verification(&self, at: &str) -> Result<Verification<'_>, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let verification = self.read(&mut e, at);
        self.check_answer(&mut e, at);
        match verification {
            Some(v) if e.is_empty() => Ok(v),
            _ => Err(e),
        }
    }

    /// The method's fields, each required one present; the others absent.
    fn read(&self, e: &mut ValidationErrors, at: &str) -> Option<Verification<'_>> {
        let Some(verify) = self.verify else {
            e.add(
                format!("{at}.verify"),
                "is required: token, hmac, basic or secret_url (a listener never takes unverified records)",
            );
            return None;
        };
        let used: &[&str] = match verify {
            WebhookVerify::Token => &["token", "path", "header"],
            WebhookVerify::Hmac => &["key", "algorithm", "encoding", "header"],
            WebhookVerify::Basic => &["username", "password"],
            WebhookVerify::SecretUrl => &["token"],
        };
        for (name, set) in self.method_fields() {
            if set && !used.contains(&name) {
                e.add(
                    format!("{at}.{name}"),
                    format!("is not read when verify is {}: remove it", verify.as_str()),
                );
            }
        }
        let need = |e: &mut ValidationErrors, name: &str, v: &Option<String>| -> Option<()> {
            match v.as_deref() {
                Some(s) if !s.trim().is_empty() => Some(()),
                _ => {
                    e.add(
                        format!("{at}.{name}"),
                        format!("is required when verify is {}", verify.as_str()),
                    );
                    None
                }
            }
        };
        match verify {
            WebhookVerify::Token => {
                need(e, "token", &self.token)?;
                let place = match (&self.header, &self.path) {
                    (Some(h), _) => TokenPlace::Header(h),
                    (None, Some(p)) => TokenPlace::Query(p),
                    (None, None) => {
                        e.add(
                            format!("{at}.header"),
                            "give header (the header that carries the token) or path (the query parameter that does)",
                        );
                        return None;
                    }
                };
                if let TokenPlace::Header(h) = place {
                    validate::header_name(e, &format!("{at}.header"), h);
                }
                Some(Verification::Token {
                    token: self.token.as_deref()?,
                    place,
                })
            }
            WebhookVerify::Hmac => {
                let key = need(e, "key", &self.key);
                let header = need(e, "header", &self.header);
                if let Some(k) = self
                    .key
                    .as_deref()
                    .filter(|k| !crate::is_secret_reference(k))
                {
                    if !k.is_empty() {
                        e.add(
                            format!("{at}.key"),
                            "must be a secret reference (secret:NAME), so the store never holds the key",
                        );
                    }
                }
                if self.algorithm.is_none() {
                    e.add(
                        format!("{at}.algorithm"),
                        "is required when verify is hmac: sha1, sha256 or sha512",
                    );
                }
                if self.encoding.is_none() {
                    e.add(
                        format!("{at}.encoding"),
                        "is required when verify is hmac: hex or base64",
                    );
                }
                key?;
                header?;
                validate::header_name(e, &format!("{at}.header"), self.header.as_deref()?);
                Some(Verification::Hmac {
                    key: self.key.as_deref()?,
                    algorithm: self.algorithm?,
                    encoding: self.encoding?,
                    header: self.header.as_deref()?,
                })
            }
            WebhookVerify::Basic => {
                let user = need(e, "username", &self.username);
                need(e, "password", &self.password)?;
                user?;
                Some(Verification::Basic {
                    username: self.username.as_deref()?,
                    password: self.password.as_deref()?,
                })
            }
            WebhookVerify::SecretUrl => {
                need(e, "token", &self.token)?;
                let token = self.token.as_deref()?;
                if !crate::is_secret_reference(token) && !is_url_secret(token) {
                    e.add(
                        format!("{at}.token"),
                        "must be at least 16 letters, digits, `-`, `_` or `.`: it is a segment of the URL",
                    );
                }
                Some(Verification::SecretUrl { token })
            }
        }
    }

    /// Which method fields are set, by name.
    fn method_fields(&self) -> [(&'static str, bool); 8] {
        [
            ("token", self.token.is_some()),
            ("path", self.path.is_some()),
            ("header", self.header.is_some()),
            ("algorithm", self.algorithm.is_some()),
            ("encoding", self.encoding.is_some()),
            ("key", self.key.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
        ]
    }

    /// The header naming a delivery.
    pub fn idempotency_header(&self) -> &str {
        self.idempotency_header
            .as_deref()
            .unwrap_or(crate::DEFAULT_IDEMPOTENCY_HEADER)
    }

    fn check_answer(&self, e: &mut ValidationErrors, at: &str) {
        if let Some(h) = &self.idempotency_header {
            validate::header_name(e, &format!("{at}.idempotencyHeader"), h);
        }
        let status = self.success_status();
        if !(200..=299).contains(&status) {
            e.add(
                format!("{at}.successStatusCode"),
                format!("{status} is not a success status: give one of 200-299"),
            );
        }
        if status == 204 && self.success_body.is_some() {
            e.add(
                format!("{at}.successBody"),
                "a 204 answer has no body: set successStatusCode to 200 or 202 to send one",
            );
        }
    }
}

impl WebhookVerify {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookVerify::Token => "token",
            WebhookVerify::Hmac => "hmac",
            WebhookVerify::Basic => "basic",
            WebhookVerify::SecretUrl => "secret_url",
        }
    }
}

/// Can `token` be a secret URL's segment: long enough to guess at no better than chance, and
/// nothing a URL would need to escape?
pub fn is_url_secret(token: &str) -> bool {
    token.len() >= 16
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listener(v: serde_json::Value) -> WebhookListener {
        serde_json::from_value(v).unwrap()
    }

    fn fields(v: serde_json::Value) -> Vec<String> {
        let err = listener(v).verification("webhook").unwrap_err();
        err.0.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn each_method_reads_its_own_fields() {
        let l = listener(json!({"verify": "token", "token": "t", "path": "auth"}));
        assert_eq!(
            l.verification("webhook").unwrap(),
            Verification::Token {
                token: "t",
                place: TokenPlace::Query("auth")
            }
        );
        let l = listener(
            json!({"verify": "hmac", "key": "secret:K", "algorithm": "sha512",
            "encoding": "base64", "header": "X-Sig"}),
        );
        assert_eq!(
            l.verification("webhook").unwrap(),
            Verification::Hmac {
                key: "secret:K",
                algorithm: HmacAlgorithm::Sha512,
                encoding: DigestEncoding::Base64,
                header: "X-Sig"
            }
        );
        let l = listener(json!({"verify": "secret_url", "token": "0123456789abcdef"}));
        assert_eq!(l.success_status(), 204);
        assert!(l.verification("webhook").is_ok());
    }

    #[test]
    fn names_every_missing_stray_or_wrong_field() {
        assert_eq!(fields(json!({})), ["webhook.verify"]);
        assert_eq!(
            fields(json!({"verify": "hmac", "key": "plain", "header": "X-Sig"})),
            ["webhook.key", "webhook.algorithm", "webhook.encoding"]
        );
        assert_eq!(
            fields(json!({"verify": "basic", "username": "u", "password": "p", "token": "t"})),
            ["webhook.token"]
        );
        assert_eq!(
            fields(json!({"verify": "token", "token": "t"})),
            ["webhook.header"]
        );
        assert_eq!(
            fields(json!({"verify": "secret_url", "token": "short"})),
            ["webhook.token"]
        );
        assert_eq!(
            fields(json!({"verify": "basic", "username": "u", "password": "p",
                "successStatusCode": 302})),
            ["webhook.successStatusCode"]
        );
        assert_eq!(
            fields(json!({"verify": "basic", "username": "u", "password": "p",
                "successBody": "ok"})),
            ["webhook.successBody"]
        );
        assert_eq!(
            fields(json!({"verify": "basic", "username": "u", "password": "p",
                "idempotencyHeader": "X Delivery"})),
            ["webhook.idempotencyHeader"]
        );
    }
}
