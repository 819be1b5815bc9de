//! A real API server on 127.0.0.1 over the embedded runtime (SQLite in memory, local queues
//! with workers), called over HTTP with reqwest.
#![allow(dead_code)]

pub mod conformance;

use axum::routing::post;
use serde_json::{json, Value};
use sluice_api::{router, ApiConfig};
use sluice_core::ports::MapSecrets;
use sluice_embedded::LocalRuntime;
use std::sync::{Arc, Mutex};

pub const KEY: &str = "k-alice-0123456789";
/// The secret in the fixture connection: must never appear in any response.
pub const SECRET: &str = "tok-VERY-SECRET-42";

pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub runtime: LocalRuntime,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: u16,
    pub text: String,
    pub json: Value,
    pub content_type: Option<String>,
}

impl Reply {
    /// The `field` of every error entry.
    pub fn fields(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["field"].as_str().map(String::from))
            .collect()
    }

    /// The first error entry's (code, field).
    pub fn error(&self) -> (String, Option<String>, String) {
        let e = &self.json["errors"][0];
        (
            e["code"].as_str().unwrap_or("").to_string(),
            e["field"].as_str().map(String::from),
            e["message"].as_str().unwrap_or("").to_string(),
        )
    }
}

impl Api {
    pub async fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let runtime = LocalRuntime::in_memory(dir.path(), Arc::new(MapSecrets::default())).unwrap();
        let config = ApiConfig {
            api_keys: vec![("alice".into(), KEY.into()), ("bob".into(), "k-bob".into())],
        };
        let app = router(runtime.sluice(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .unwrap(),
            runtime,
            _dir: dir,
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        assert_eq!(
            headers.get("x-content-type-options").map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{method} {path}: every answer carries X-Content-Type-Options: nosniff"
        );
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
        conformance::check(method.as_str(), path, status, content_type, &text);
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            text,
            json,
            content_type: content_type.map(String::from),
        }
    }

    /// A request with the given headers (and no others but the key's).
    pub async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .body(body.to_string());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let text = res.text().await.unwrap();
        conformance::check(
            method.as_str(),
            path,
            status,
            content_type.as_deref(),
            &text,
        );
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            text,
            json,
            content_type,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, Some(KEY), None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(
            reqwest::Method::POST,
            path,
            Some(KEY),
            Some(body.to_string().into_bytes()),
        )
        .await
    }
    pub async fn post_raw(&self, path: &str, body: &str) -> Reply {
        self.send(
            reqwest::Method::POST,
            path,
            Some(KEY),
            Some(body.as_bytes().to_vec()),
        )
        .await
    }
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(
            reqwest::Method::PUT,
            path,
            Some(KEY),
            Some(body.to_string().into_bytes()),
        )
        .await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, Some(KEY), None)
            .await
    }

    /// Runs `flow` over `records` and waits for its job to finish.
    pub async fn run_and_wait(&self, flow: &str, records: Value) -> sluice_model::Job {
        let r = self
            .post(&format!("/flows/{flow}/run"), json!({ "records": records }))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let job_id = r.json["_jobId"].as_str().unwrap();
        self.wait(job_id).await
    }

    pub async fn wait(&self, job_id: &str) -> sluice_model::Job {
        self.runtime
            .wait_for_job(job_id, std::time::Duration::from_secs(20), |_| {})
            .await
            .unwrap()
    }

    /// Points the fixture's import at a path the target does not serve, so every record
    /// fails (404), runs `n` records through `f1` and returns the finished job.
    pub async fn failed_run(&self, n: usize) -> sluice_model::Job {
        let r = self
            .put(
                "/imports/imp1",
                json!({"http": {"method": "POST", "relativeURI": "/missing"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let records: Vec<Value> = (0..n).map(|i| json!({ "id": i })).collect();
        let job = self.run_and_wait("f1", json!(records)).await;
        assert_eq!(job.num_error, n as u64);
        job
    }

    /// Creates a connection (with SECRET), a webhook export, an http import to `target` and
    /// a flow `f1` linking them. Returns the flow as created.
    pub async fn seed(&self, target: &str) -> Value {
        let c = self
            .post(
                "/connections",
                json!({
                    "_id": "conn1", "name": "target", "type": "http",
                    "http": {"baseURI": target,
                             "auth": {"type": "token", "token": {"token": SECRET}}}
                }),
            )
            .await;
        assert_eq!(c.status, 201, "{}", c.text);
        let x = self
            .post(
                "/exports",
                json!({"_id": "exp1", "name": "incoming", "type": "webhook"}),
            )
            .await;
        assert_eq!(x.status, 201, "{}", x.text);
        let i = self
            .post(
                "/imports",
                json!({"_id": "imp1", "name": "post items", "type": "http",
                       "_connectionId": "conn1",
                       "http": {"method": "POST", "relativeURI": "/items"}}),
            )
            .await;
        assert_eq!(i.status, 201, "{}", i.text);
        let f = self.post("/flows", flow_body("f1")).await;
        assert_eq!(f.status, 201, "{}", f.text);
        f.json
    }
}

pub fn flow_body(id: &str) -> Value {
    json!({
        "_id": id,
        "name": format!("flow {id}"),
        "pageGenerators": [{"_exportId": "exp1"}],
        "pageProcessors": [{"type": "import", "_importId": "imp1"}]
    })
}

/// A real HTTP target on 127.0.0.1 that answers 201 and keeps what it was sent.
pub struct Target {
    pub url: String,
    pub received: Arc<Mutex<Vec<Value>>>,
}

pub async fn target() -> Target {
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/items",
        post(move |axum::Json(body): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(json!({"id": "d-1"})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Target {
        url: format!("http://{addr}"),
        received,
    }
}
