//! Webhook listeners: a delivery posted to a webhook export's public URL is verified as its
//! listener asks (token, HMAC over the raw body, basic auth or a secret URL), read as records
//! and kept as a waiting run of every enabled flow that reads the export
//! (`runs::start_event_run`, kind `webhook`), all before it is answered.
//!
//! A delivery that names itself (an `Idempotency-Key` header, or the listener's
//! `idempotencyHeader`) is one event: sent again, it starts no flow's run a second time.
//!
//! Invariants: a delivery that fails its check is refused (`Error::Unauthorized`, saying
//! which check) before anything is read or kept, so it counts nothing; a delivery answered
//! with success is durable in the store (big ones in the system bucket under `waiting/`)
//! and will run when its flow is free, however busy the flow is now.

use super::events::flows_reading;
use crate::ports::secrets::resolve;
use crate::ports::Secrets;
use crate::runs::start_event_run;
use crate::{Error, Result, Sluice};
use base64::Engine;
use hmac::{KeyInit, Mac};
use http::HeaderMap;
use serde_json::Value;
use sluice_model::{
    DigestEncoding, ExportType, HmacAlgorithm, RunKind, RunRequest, RunSource, TokenPlace,
    Verification, WebhookListener,
};
use subtle::ConstantTimeEq;

/// The largest body a listener takes (5 MiB). A Lambda function's synchronous request is at
/// most 6 MB including the event around the body (headers, the API Gateway envelope), so
/// this leaves room for them; `sluice dev` holds to the same limit, so a flow tried locally
/// behaves as deployed. Larger bodies are answered 413.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// One request to a listener, as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub export_id: &'a str,
    /// The token segment of `/exports/{id}/{token}/data`, when the request came that way.
    pub url_token: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// The raw body: what an HMAC is computed over.
    pub body: &'a [u8],
}

/// What a kept delivery is answered with, and the runs it became.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub status: u16,
    pub body: Option<String>,
    /// How many records were kept, and the job ids of the runs that started at once (the
    /// others wait for their flow).
    pub records: usize,
    pub started: Vec<String>,
}

/// Verifies `delivery`, keeps its records as a waiting run of each enabled flow reading the
/// export and says how to answer. `NotFound` when the export has no listener or no enabled
/// flow reads it, `Unauthorized` naming the failed check, `Validation` for a body that is
/// not JSON records.
pub async fn receive(sluice: &Sluice, delivery: Delivery<'_>) -> Result<Accepted> {
    let export = sluice.export(delivery.export_id).await?;
    let listener = match (&export.webhook, export.kind) {
        (Some(l), ExportType::Webhook) => l,
        _ => {
            return Err(Error::not_found(
                "Webhook listener",
                format!(
                    "{} (give the export type webhook and a `webhook` with `verify`)",
                    export.id
                ),
            ))
        }
    };
    verify(&*sluice.secrets, listener, &delivery)?;
    let records = records(delivery.body)?;
    let flows: Vec<String> = flows_reading(sluice, ExportType::Webhook)
        .await?
        .into_iter()
        .filter(|(_, e)| e.id == export.id)
        .map(|(f, _)| f.id)
        .collect();
    if flows.is_empty() {
        return Err(Error::not_found(
            "Enabled flow reading export",
            format!("{}: nothing was kept", export.id),
        ));
    }
    let event = delivery_event(listener, &export.id, delivery.headers)?;
    let mut started = Vec::new();
    for flow in &flows {
        let request = RunRequest {
            export_ids: Some(vec![export.id.clone()]),
            source: Some(RunSource::Records {
                records: records.clone(),
            }),
            ..Default::default()
        };
        let run = start_event_run(sluice, flow, event.as_deref(), request, RunKind::Webhook);
        if let Some(s) = run.await? {
            started.push(s.job_id);
        }
    }
    tracing::info!(export = %export.id, records = records.len(), flows = flows.len(), "webhook delivery kept");
    Ok(Accepted {
        status: listener.success_status(),
        body: listener.success_body.clone(),
        records: records.len(),
        started,
    })
}

/// The event a delivery is, when its sender names it (the listener's idempotency header):
/// each flow's run of it gets a job id of its own that the same delivery sent again maps to
/// again, so a retry of a delivery kept for some flows before it failed, or answered after
/// the sender gave up, is not run twice by any flow (`runs::start_event_run`).
fn delivery_event(
    listener: &WebhookListener,
    export_id: &str,
    headers: &HeaderMap,
) -> Result<Option<String>> {
    let name = listener.idempotency_header();
    let Some(id) = header(headers, name) else {
        return Ok(None);
    };
    if id.is_empty() || id.len() > MAX_DELIVERY_ID_LEN {
        return Err(Error::invalid(
            format!("header {name}"),
            format!("names the delivery: give 1 to {MAX_DELIVERY_ID_LEN} characters, or leave the header out"),
        ));
    }
    Ok(Some(format!("webhook:{export_id}:{id}")))
}

/// The longest delivery id taken from the idempotency header.
const MAX_DELIVERY_ID_LEN: usize = 256;

/// The listener's check over the delivery. A stored listener was validated, so a
/// verification it cannot read is the store's fault, answered as such.
fn verify(secrets: &dyn Secrets, listener: &WebhookListener, d: &Delivery<'_>) -> Result<()> {
    let check = listener
        .verification("webhook")
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored listener is invalid: {e}")))?;
    let secret = |field: &str, raw: &str| resolve(secrets, field, raw);
    let refused = |why: String| Err(Error::Unauthorized(why));
    match check {
        Verification::Token { token, place } => {
            let expected = secret("webhook.token", token)?;
            let (given, where_) = match place {
                TokenPlace::Header(name) => (
                    header(d.headers, name).map(|v| bearer(name, v).to_string()),
                    format!("header {name}"),
                ),
                TokenPlace::Query(name) => {
                    (query(d.query, name), format!("query parameter {name}"))
                }
            };
            match given {
                None => refused(format!("token check failed: no token in the {where_}")),
                Some(g) if !same(g.as_bytes(), expected.as_bytes()) => refused(format!(
                    "token check failed: the token in the {where_} is wrong"
                )),
                Some(_) => Ok(()),
            }
        }
        Verification::Hmac {
            key,
            algorithm,
            encoding,
            header: name,
        } => {
            let key = secret("webhook.key", key)?;
            let Some(sent) = header(d.headers, name) else {
                return refused(format!("hmac check failed: no signature in header {name}"));
            };
            let Some(signature) = decode(sent, algorithm, encoding) else {
                return refused(format!(
                    "hmac check failed: header {name} is not {} {}",
                    algorithm.as_str(),
                    encoding_name(encoding)
                ));
            };
            if hmac_matches(algorithm, key.as_bytes(), d.body, &signature) {
                Ok(())
            } else {
                refused(format!(
                    "hmac check failed: the signature in header {name} does not match the body ({} of the raw body with webhook.key, {})",
                    algorithm.as_str(),
                    encoding_name(encoding)
                ))
            }
        }
        Verification::Basic { username, password } => {
            let password = secret("webhook.password", password)?;
            let Some((user, pass)) = basic(d.headers) else {
                return refused("basic auth check failed: no Authorization: Basic header".into());
            };
            // Both compared, whichever is wrong, so the time says nothing about which.
            let ok = same(user.as_bytes(), username.as_bytes())
                & same(pass.as_bytes(), password.as_bytes());
            if ok {
                Ok(())
            } else {
                refused("basic auth check failed: wrong user name or password".into())
            }
        }
        Verification::SecretUrl { token } => {
            let expected = secret("webhook.token", token)?;
            match d.url_token {
                Some(t) if same(t.as_bytes(), expected.as_bytes()) => Ok(()),
                Some(_) => refused("secret URL check failed: the URL's secret is wrong".into()),
                None => refused(format!(
                    "secret URL check failed: this listener's URL carries its secret: POST to /exports/{}/<token>/data",
                    d.export_id
                )),
            }
        }
    }
}

/// Constant-time equality (the length may show, the content does not).
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.ct_eq(expected).into()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A token sent as `Authorization: Bearer <token>` is the token.
fn bearer<'v>(header: &str, value: &'v str) -> &'v str {
    if header.eq_ignore_ascii_case("authorization") {
        if let Some((scheme, rest)) = value.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return rest.trim();
            }
        }
    }
    value
}

fn query(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header(headers, "authorization")?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

fn encoding_name(e: DigestEncoding) -> &'static str {
    match e {
        DigestEncoding::Hex => "hex",
        DigestEncoding::Base64 => "base64",
    }
}

/// The signature's bytes. A `sha256=` style prefix (GitHub's, Shopify's are without) is
/// skipped.
fn decode(sent: &str, algorithm: HmacAlgorithm, encoding: DigestEncoding) -> Option<Vec<u8>> {
    let sent = sent
        .strip_prefix(algorithm.as_str())
        .and_then(|s| s.strip_prefix('='))
        .unwrap_or(sent);
    match encoding {
        DigestEncoding::Hex => hex::decode(sent).ok(),
        DigestEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(sent).ok(),
    }
}

/// Does `signature` equal the HMAC of `body` under `key`? `verify_slice` compares in
/// constant time.
fn hmac_matches(algorithm: HmacAlgorithm, key: &[u8], body: &[u8], signature: &[u8]) -> bool {
    fn check<M: Mac + KeyInit>(key: &[u8], body: &[u8], signature: &[u8]) -> bool {
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(key) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    }
    match algorithm {
        HmacAlgorithm::Sha1 => check::<hmac::Hmac<sha1::Sha1>>(key, body, signature),
        HmacAlgorithm::Sha256 => check::<hmac::Hmac<sha2::Sha256>>(key, body, signature),
        HmacAlgorithm::Sha512 => check::<hmac::Hmac<sha2::Sha512>>(key, body, signature),
    }
}

/// The body's records: a JSON array of them, or one object.
fn records(body: &[u8]) -> Result<Vec<Value>> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::invalid(
            "body",
            format!("is not JSON (line {}, column {}): {e}; send a JSON object (one record) or an array of records", e.line(), e.column()),
        )
    })?;
    match value {
        Value::Array(items) => {
            if let Some(i) = items.iter().position(|r| !r.is_object()) {
                return Err(Error::invalid(
                    format!("body[{i}]"),
                    "is not an object: each record is a JSON object",
                ));
            }
            Ok(items)
        }
        record @ Value::Object(_) => Ok(vec![record]),
        _ => Err(Error::invalid(
            "body",
            "send a JSON object (one record) or an array of records",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MapSecrets;
    use serde_json::json;

    const BODY: &[u8] = br#"[{"id": 1}]"#;

    fn secrets() -> MapSecrets {
        MapSecrets([("KEY".to_string(), "k3y".to_string())].into())
    }

    fn check(
        listener: Value,
        headers: &[(&str, &str)],
        query: Option<&str>,
        url_token: Option<&str>,
    ) -> Result<(), String> {
        let listener: WebhookListener = serde_json::from_value(listener).unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let d = Delivery {
            export_id: "e",
            url_token,
            headers: &map,
            query,
            body: BODY,
        };
        verify(&secrets(), &listener, &d).map_err(|e| match e {
            Error::Unauthorized(m) => m,
            other => panic!("not a refusal: {other}"),
        })
    }

    fn signature(algorithm: HmacAlgorithm, encoding: DigestEncoding) -> String {
        let bytes = match algorithm {
            HmacAlgorithm::Sha1 => {
                let mut m = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"k3y").unwrap();
                m.update(BODY);
                m.finalize().into_bytes().to_vec()
            }
            HmacAlgorithm::Sha256 => {
                let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"k3y").unwrap();
                m.update(BODY);
                m.finalize().into_bytes().to_vec()
            }
            HmacAlgorithm::Sha512 => {
                let mut m = <hmac::Hmac<sha2::Sha512> as KeyInit>::new_from_slice(b"k3y").unwrap();
                m.update(BODY);
                m.finalize().into_bytes().to_vec()
            }
        };
        match encoding {
            DigestEncoding::Hex => hex::encode(bytes),
            DigestEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    #[test]
    fn a_token_is_read_from_its_header_or_query_parameter() {
        let in_header = json!({"verify": "token", "token": "tok", "header": "X-Token"});
        assert_eq!(
            check(in_header.clone(), &[("x-token", "tok")], None, None),
            Ok(())
        );
        let err = check(in_header.clone(), &[("x-token", "tok2")], None, None).unwrap_err();
        assert_eq!(
            err,
            "token check failed: the token in the header X-Token is wrong"
        );
        let err = check(in_header, &[], None, None).unwrap_err();
        assert_eq!(err, "token check failed: no token in the header X-Token");
        let bearer = json!({"verify": "token", "token": "tok", "header": "Authorization"});
        assert_eq!(
            check(bearer, &[("authorization", "Bearer tok")], None, None),
            Ok(())
        );
        let in_query = json!({"verify": "token", "token": "a b", "path": "auth"});
        assert_eq!(
            check(in_query.clone(), &[], Some("x=1&auth=a%20b"), None),
            Ok(())
        );
        assert!(check(in_query, &[], Some("auth=a"), None)
            .unwrap_err()
            .contains("is wrong"));
    }

    #[test]
    fn an_hmac_is_checked_over_the_raw_body_in_every_algorithm_and_encoding() {
        for algorithm in [
            HmacAlgorithm::Sha1,
            HmacAlgorithm::Sha256,
            HmacAlgorithm::Sha512,
        ] {
            for encoding in [DigestEncoding::Hex, DigestEncoding::Base64] {
                let listener = json!({"verify": "hmac", "key": "secret:KEY", "header": "X-Sig",
                    "algorithm": algorithm, "encoding": encoding});
                let good = signature(algorithm, encoding);
                assert_eq!(
                    check(listener.clone(), &[("x-sig", &good)], None, None),
                    Ok(())
                );
                let prefixed = format!("{}={good}", algorithm.as_str());
                assert_eq!(
                    check(listener.clone(), &[("x-sig", &prefixed)], None, None),
                    Ok(())
                );
                let other = signature(
                    if algorithm == HmacAlgorithm::Sha1 {
                        HmacAlgorithm::Sha256
                    } else {
                        HmacAlgorithm::Sha1
                    },
                    encoding,
                );
                let err = check(listener, &[("x-sig", &other)], None, None).unwrap_err();
                assert!(
                    err.starts_with(
                        "hmac check failed: the signature in header X-Sig does not match"
                    ),
                    "{err}"
                );
            }
        }
        let listener = json!({"verify": "hmac", "key": "secret:KEY", "header": "X-Sig",
            "algorithm": "sha256", "encoding": "hex"});
        let err = check(listener.clone(), &[("x-sig", "not hex")], None, None).unwrap_err();
        assert_eq!(err, "hmac check failed: header X-Sig is not sha256 hex");
        let err = check(listener, &[], None, None).unwrap_err();
        assert_eq!(err, "hmac check failed: no signature in header X-Sig");
    }

    #[test]
    fn basic_auth_and_a_secret_url_take_only_their_credentials() {
        let basic = json!({"verify": "basic", "username": "shop", "password": "secret:KEY"});
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("shop:k3y")
        );
        assert_eq!(
            check(basic.clone(), &[("authorization", &good)], None, None),
            Ok(())
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("shop:nope")
        );
        assert_eq!(
            check(basic.clone(), &[("authorization", &bad)], None, None).unwrap_err(),
            "basic auth check failed: wrong user name or password"
        );
        assert!(check(basic, &[], None, None)
            .unwrap_err()
            .contains("no Authorization: Basic"));
        let url = json!({"verify": "secret_url", "token": "0123456789abcdef"});
        assert_eq!(
            check(url.clone(), &[], None, Some("0123456789abcdef")),
            Ok(())
        );
        assert!(check(url.clone(), &[], None, Some("0123456789abcdeX"))
            .unwrap_err()
            .contains("is wrong"));
        assert!(check(url, &[], None, None)
            .unwrap_err()
            .contains("/exports/e/<token>/data"));
    }

    #[test]
    fn the_body_is_an_object_or_an_array_of_objects() {
        assert_eq!(records(br#"{"a": 1}"#).unwrap(), vec![json!({"a": 1})]);
        assert_eq!(records(BODY).unwrap().len(), 1);
        let Error::Validation(e) = records(b"[{\"a\": 1}, 2]").unwrap_err() else {
            panic!()
        };
        assert_eq!(e.0[0].field, "body[1]");
        let Error::Validation(e) = records(b"{\n  \"a\": }").unwrap_err() else {
            panic!()
        };
        assert!(e.0[0].message.contains("line 2"), "{}", e.0[0].message);
    }
}
