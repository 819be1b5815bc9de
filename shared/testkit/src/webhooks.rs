//! Webhook listeners under test, the same whatever serves them (`sluice dev`, the api
//! function's router on moto): one export per verification method, each read by its own
//! flow posting every record to `/in` on the target, and for each method a delivery that
//! passes its check and one that fails it.

use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};

/// The HMAC key, given as `secret:WEBHOOK_KEY`: set [`KEY_VAR`] to it in the environment of
/// whatever serves the listeners.
pub const KEY: &str = "whsec-0f9e8d7c6b5a";
pub const KEY_VAR: &str = "SLUICE_SECRET_WEBHOOK_KEY";
/// The secret URL's token.
pub const URL_TOKEN: &str = "u7Rk2pQ9xW4mZ8vN3c";

/// One POST to a listener.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The path (and query) under the service's base URL.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Delivery {
    /// Posts it to the service at `base`: the answer's status and body text.
    pub async fn send(&self, base: &str) -> (u16, String) {
        let mut request = reqwest::Client::new()
            .post(format!("{base}{}", self.path))
            .header("content-type", "application/json")
            .body(self.body.clone());
        for (k, v) in &self.headers {
            request = request.header(k, v);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// A verification method: a delivery it takes, one it refuses, and what the refusal says.
#[derive(Debug, Clone)]
pub struct Case {
    /// The export (and flow `f-<export>`) it goes to.
    pub export: &'static str,
    pub good: Delivery,
    pub bad: Delivery,
    /// Part of the 401's message.
    pub refusal: &'static str,
    /// The answer to the good delivery: status and body.
    pub answer: (u16, &'static str),
}

/// Two records tagged with the export they were posted to.
pub fn records(export: &str) -> Vec<u8> {
    serde_json::to_vec(&json!([{"via": export, "n": 1}, {"via": export, "n": 2}])).unwrap()
}

fn signature(body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn post(path: String, headers: &[(&str, String)], body: Vec<u8>) -> Delivery {
    Delivery {
        path,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        body,
    }
}

/// Every method's case.
pub fn cases() -> Vec<Case> {
    let data = |e: &str| format!("/exports/{e}/data");
    let body = records;
    vec![
        Case {
            export: "wh-token",
            good: post(
                data("wh-token"),
                &[("X-Token", "tok-123".into())],
                body("wh-token"),
            ),
            bad: post(
                data("wh-token"),
                &[("X-Token", "tok-124".into())],
                body("wh-token"),
            ),
            refusal: "token check failed: the token in the header X-Token is wrong",
            answer: (204, ""),
        },
        Case {
            export: "wh-query",
            good: post(
                format!("{}?auth=q-456", data("wh-query")),
                &[],
                body("wh-query"),
            ),
            bad: post(data("wh-query"), &[], body("wh-query")),
            refusal: "token check failed: no token in the query parameter auth",
            answer: (204, ""),
        },
        Case {
            export: "wh-hmac",
            good: post(
                data("wh-hmac"),
                &[("X-Sig", format!("sha256={}", signature(&body("wh-hmac"))))],
                body("wh-hmac"),
            ),
            // Signed, then changed on the way: the signature is over other bytes.
            bad: post(
                data("wh-hmac"),
                &[("X-Sig", signature(&body("wh-hmac")))],
                body("wh-hmac-changed"),
            ),
            refusal: "hmac check failed: the signature in header X-Sig does not match the body",
            answer: (202, r#"{"received":true}"#),
        },
        Case {
            export: "wh-basic",
            good: post(
                data("wh-basic"),
                &[("Authorization", basic("shop", "p4ss"))],
                body("wh-basic"),
            ),
            bad: post(
                data("wh-basic"),
                &[("Authorization", basic("shop", "p4sS"))],
                body("wh-basic"),
            ),
            refusal: "basic auth check failed: wrong user name or password",
            answer: (200, "thanks"),
        },
        Case {
            export: "wh-url",
            good: post(
                format!("/exports/wh-url/{URL_TOKEN}/data"),
                &[],
                body("wh-url"),
            ),
            bad: post(
                format!("/exports/wh-url/{URL_TOKEN}x/data"),
                &[],
                body("wh-url"),
            ),
            refusal: "secret URL check failed: the URL's secret is wrong",
            answer: (204, ""),
        },
    ]
}

/// Connection `c` to the target, an export per case, import `i` posting each record to
/// `/in`, and flow `f-<export>` from each export to `i`.
pub fn bundle(base_url: &str) -> Value {
    let listeners = [
        (
            "wh-token",
            json!({"verify": "token", "token": "tok-123", "header": "X-Token"}),
        ),
        (
            "wh-query",
            json!({"verify": "token", "token": "q-456", "path": "auth"}),
        ),
        (
            "wh-hmac",
            json!({"verify": "hmac", "key": "secret:WEBHOOK_KEY", "algorithm": "sha256",
            "encoding": "hex", "header": "X-Sig", "successStatusCode": 202,
            "successBody": r#"{"received":true}"#}),
        ),
        (
            "wh-basic",
            json!({"verify": "basic", "username": "shop", "password": "p4ss",
            "successStatusCode": 200, "successBody": "thanks"}),
        ),
        (
            "wh-url",
            json!({"verify": "secret_url", "token": URL_TOKEN}),
        ),
    ];
    let exports: Vec<Value> = listeners
        .iter()
        .map(|(id, l)| json!({"_id": id, "name": id, "type": "webhook", "webhook": l}))
        .collect();
    let flows: Vec<Value> = listeners
        .iter()
        .map(|(id, _)| json!({"_id": format!("f-{id}"), "name": id,
            "pageGenerators": [{"_exportId": id}], "pageProcessors": [{"type": "import", "_importId": "i"}]}))
        .collect();
    json!({
        "connections": [{"_id": "c", "name": "Target", "type": "http", "http": {"baseURI": base_url}}],
        "exports": exports,
        "imports": [{"_id": "i", "name": "In", "_connectionId": "c", "type": "http",
                     "http": {"relativeURI": "/in", "body": "{{json record}}"}}],
        "flows": flows,
    })
}

/// Posts every case's bad delivery (refused with 401 saying which check failed) and its
/// good one (answered as its listener says) to the service at `base`.
pub async fn deliver_every_case(base: &str) {
    for case in cases() {
        let (status, body) = case.bad.send(base).await;
        assert_eq!(status, 401, "{}: {body}", case.export);
        assert!(body.contains(case.refusal), "{}: {body}", case.export);
        let (status, body) = case.good.send(base).await;
        assert_eq!((status, body.as_str()), case.answer, "{}", case.export);
    }
}

/// Has the target got each case's two records, and those of `extra` more deliveries of two
/// records each to `wh-token`?
pub fn all_arrived(received: &[crate::http::Received], extra: usize) -> bool {
    cases().iter().all(|c| {
        let want = if c.export == "wh-token" {
            2 * (1 + extra)
        } else {
            2
        };
        arrived(received, c.export) == want
    })
}

/// How many records the target got from each export's flow.
pub fn arrived(received: &[crate::http::Received], export: &str) -> usize {
    received
        .iter()
        .filter(|r| r.path == "/in" && r.json()["via"] == export)
        .count()
}
