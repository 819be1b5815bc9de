//! Helpers for the tests of the `sluice` binary: the command, bundles on disk, a slow flow,
//! `sluice dev` started on a free port, signals.

#![allow(dead_code)] // each test file uses some of these

use serde_json::json;
pub use sluice_testkit::http::{Answer, TestServer};
use std::process::Command;
use std::time::Duration;

pub fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

pub fn write(dir: &std::path::Path, name: &str, v: &serde_json::Value) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p
}

/// A flow posting 8 records one at a time (concurrencyLevel 1) to a sink that takes 700 ms
/// per request, and the `sluice run` command for it.
pub struct SlowRun {
    pub sink: TestServer,
    pub dir: tempfile::TempDir,
}

impl SlowRun {
    pub async fn new() -> SlowRun {
        Self::with_flow(|_| json!({})).await
    }

    /// A slow run whose flow also has the fields `extra` gives for the sink's base URL
    /// (`afterProcess`, say).
    pub async fn with_flow(extra: impl FnOnce(&str) -> serde_json::Value) -> SlowRun {
        let sink = TestServer::start(|_, _| Answer::Slow {
            delay: Duration::from_millis(700),
            then: Box::new(Answer::json(200, json!({}))),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut flow = json!({"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "e"}], "pageProcessors": [{"type": "import", "_importId": "i"}]});
        flow.as_object_mut()
            .unwrap()
            .extend(extra(&sink.base_url).as_object().unwrap().clone());
        write(
            dir.path(),
            "slow.json",
            &json!({
                "connections": [{"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url}, "concurrencyLevel": 1}],
                "exports": [{"_id": "e", "name": "e", "type": "webhook", "pageSize": 2}],
                "imports": [{"_id": "i", "name": "i", "_connectionId": "c", "type": "http", "http": {"relativeURI": "/orders"}}],
                "flows": [flow]
            }),
        );
        let records: String = (0..8).map(|n| format!("{{\"n\": {n}}}\n")).collect();
        std::fs::write(dir.path().join("r.ndjson"), records).unwrap();
        SlowRun { sink, dir }
    }

    /// What the sink got at `path` (`/orders`: the records; `/done`: after-process calls).
    pub fn sent(&self, path: &str) -> Vec<sluice_testkit::http::Received> {
        let got = self.sink.received();
        got.into_iter().filter(|r| r.path == path).collect()
    }

    pub fn command(&self) -> Command {
        let mut cmd = sluice();
        cmd.arg("run")
            .arg(self.dir.path().join("slow.json"))
            .arg("--records")
            .arg(self.dir.path().join("r.ndjson"))
            .arg("--data")
            .arg(self.dir.path().join("data"));
        cmd
    }
}

/// `sluice dev` on a free port over `data`; waits until it answers.
pub async fn start_dev(data: &std::path::Path) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = sluice()
        .args([
            "dev",
            "--port",
            &port.to_string(),
            "--api-key",
            "k",
            "--data",
        ])
        .arg(data)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    panic!("sluice dev did not start on {base}");
}

/// Sends `signal` (`INT`, `TERM`) to the child.
pub fn signal(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Sends `sig` to the child and waits for it to exit; returns what it printed on stderr.
pub async fn stop(child: std::process::Child, sig: &str) -> String {
    signal(&child, sig);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Waits (up to a minute) until `ready`, checking every 10 ms.
pub async fn until(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..6000 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting until {what}");
}

/// The flow's latest jobs once at least `count` of them are there and every one has finished
/// (waits up to a minute): a record reaches its target before its job is judged and closed,
/// so a test that saw the records arrive must wait for this before it reads counts.
pub async fn finished_jobs(base: &str, flow: &str, count: usize) -> Vec<serde_json::Value> {
    let path = format!("/flows/{flow}/jobs/latest");
    for _ in 0..600 {
        let jobs = api_get(base, &path).await;
        let jobs = jobs.as_array().cloned().unwrap_or_default();
        let finished = |job: &serde_json::Value| {
            serde_json::from_value::<sluice_model::JobStatus>(job["status"].clone())
                .is_ok_and(|s| s.is_finished())
        };
        if jobs.len() >= count && jobs.iter().all(finished) {
            return jobs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {count} finished job(s) of {flow}");
}

/// What the API of `sluice dev` at `base` answers to a GET of `path` (key `k`).
pub async fn api_get(base: &str, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
