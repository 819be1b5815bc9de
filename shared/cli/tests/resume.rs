//! A local run whose process dies loses nothing and sends nothing twice: the queues are
//! durable, the next `sluice run` of the flow (or `sluice dev`) on the same data resumes the
//! job, and a send cut off mid-request is reported, never repeated.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::Duration;

const TOTAL: u64 = 3000;
/// Answered by the sink only after the run is killed: their sends are in flight then.
const SLOW: std::ops::Range<u64> = 1500..1504;

/// A source API paging `TOTAL` records 100 per reply (so the trigger is still paging while
/// pages are delivered), a sink that answers at once (but slowly for `SLOW`), and the
/// `sluice run` command between them.
struct Crashable {
    source: TestServer,
    sink: TestServer,
    dir: tempfile::TempDir,
}

impl Crashable {
    async fn new() -> Crashable {
        let source = TestServer::start(|_, r| {
            let skip: u64 = url::form_urlencoded::parse(r.query.as_bytes())
                .find(|(k, _)| k == "skip")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let items: Vec<Value> = (skip..(skip + 100).min(TOTAL))
                .map(|n| json!({ "n": n }))
                .collect();
            Answer::json(200, json!({ "items": items }))
        })
        .await;
        let sink = TestServer::start(|_, r| {
            let n = r.json()["n"].as_u64().unwrap_or(0);
            let answer = Answer::json(201, json!({ "id": n }));
            if SLOW.contains(&n) {
                Answer::Slow {
                    delay: Duration::from_secs(60),
                    then: Box::new(answer),
                }
            } else {
                answer
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "flow.json",
            &json!({
                "connections": [
                    {"_id": "src", "name": "src", "type": "http", "http": {"baseURI": source.base_url}},
                    {"_id": "dst", "name": "dst", "type": "http", "http": {"baseURI": sink.base_url, "retry": {"maxAttempts": 1}}, "concurrencyLevel": 4}
                ],
                "exports": [{"_id": "e", "name": "e", "type": "http", "_connectionId": "src", "pageSize": 10,
                    "http": {"relativeURI": "/items?skip={{export.http.paging.skip}}", "paging": {"method": "skip"}, "resourcePath": "items"}}],
                "imports": [{"_id": "i", "name": "i", "_connectionId": "dst", "type": "http", "http": {"relativeURI": "/orders", "body": "{{json record}}"}}],
                "flows": [{"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "e"}], "pageProcessors": [{"type": "import", "_importId": "i"}]}]
            }),
        );
        Crashable { source, sink, dir }
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = sluice();
        cmd.arg("run")
            .arg(self.dir.path().join("flow.json"))
            .arg("--data")
            .arg(self.dir.path().join("data"));
        cmd
    }

    fn sent(&self, n: u64) -> bool {
        self.sink
            .received()
            .iter()
            .any(|r| r.json()["n"].as_u64() == Some(n))
    }
}

/// A running `sluice run` whose stderr is read as it goes.
struct Running {
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    fn start(mut cmd: std::process::Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        });
        Running {
            child,
            stderr: Some(stderr),
        }
    }

    /// SIGKILL, as a crash or the OOM killer would; returns what it had printed.
    fn kill_9(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.stderr.take().unwrap().join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The job id in "running flow f: job ID" or "resuming job ID".
fn job_named(stderr: &str, prefix: &str) -> Option<String> {
    let at = stderr.find(prefix)? + prefix.len();
    Some(stderr[at..].split_whitespace().next()?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_any_point_resumes_and_delivers_every_record_once() {
    let c = Crashable::new().await;
    let received = || c.sink.received().len();
    // Where each kill lands: while the trigger pages (300 of 3,000 sent, 64 pages queued),
    // mid-page (the slow sends hold all 4 of the connection's slots), and between stages (a
    // fast stretch, pages queued at every stage).
    type Ready<'a> = Box<dyn Fn() -> bool + 'a>;
    let kills: [(&str, Ready); 3] = [
        ("during paging", Box::new(|| received() >= 300)),
        ("mid-page", Box::new(|| SLOW.clone().all(|n| c.sent(n)))),
        ("between stages", Box::new(|| received() >= 2400)),
    ];
    let mut job: Option<String> = None;
    for (point, ready) in kills {
        let run = Running::start(c.command());
        until(point, ready).await;
        let stderr = run.kill_9();
        match &job {
            None => job = job_named(&stderr, "running flow f: job "),
            Some(id) => assert_eq!(
                job_named(&stderr, "resuming job ").as_ref(),
                Some(id),
                "killed {point}: the interrupted job resumes\n{stderr}"
            ),
        }
        assert!(job.is_some(), "{stderr}");
    }
    let out = c.command().arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("resuming job {}", job.as_ref().unwrap())),
        "{stderr}"
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("a JSON summary");
    let j = &summary["job"];
    assert_eq!(j["_id"].as_str(), job.as_deref());

    // Counted: every record once.
    let count = |k: &str| j[k].as_u64().unwrap();
    assert_eq!(
        count("numSuccess") + count("numError") + count("numIgnore"),
        TOTAL,
        "{j}"
    );
    // Sent: none twice; the only errors are sends cut off by a kill, reported, not repeated.
    let mut times: HashMap<u64, usize> = HashMap::new();
    for r in c.sink.received() {
        *times.entry(r.json()["n"].as_u64().unwrap()).or_default() += 1;
    }
    let errors = summary["errors"].as_array().unwrap();
    let unknown: BTreeSet<u64> = errors
        .iter()
        .map(|e| {
            assert_eq!(e["code"], "delivery_unknown", "{e}");
            e["record"]["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(count("numError"), unknown.len() as u64);
    assert!(
        SLOW.clone().all(|n| unknown.contains(&n)),
        "the sends cut off mid-request: {unknown:?}"
    );
    assert!(
        unknown.len() <= 3 * 4,
        "at most the sends in flight at each kill: {unknown:?}"
    );
    for n in 0..TOTAL {
        let sent = times.get(&n).copied().unwrap_or(0);
        if unknown.contains(&n) {
            assert!(sent <= 1, "record {n} was sent {sent} times");
        } else {
            assert_eq!(sent, 1, "record {n} was sent {sent} times");
        }
    }
    // Resumed where it stopped: the source was not read again from its start (30 replies and
    // the empty last one, plus the reply each resume was in the middle of).
    let replies = c.source.received().len();
    assert!(replies <= 31 + 3, "{replies} requests to the source");
    assert_eq!(out.status.code(), Some(2), "completed with errors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_starts_a_fresh_job_instead_of_resuming_the_interrupted_one() {
    let c = Crashable::new().await;
    let run = Running::start(c.command());
    until("the run sends", || c.sink.received().len() >= 100).await;
    let stderr = run.kill_9();
    let first = job_named(&stderr, "running flow f: job ").unwrap();
    let out = c
        .command()
        .args(["--new", "--json", "--timeout", "3"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("canceled interrupted job {first} of flow f")),
        "{stderr}"
    );
    let second = job_named(&stderr, "running flow f: job ").expect("a new job");
    assert_ne!(second, first);
    // The canceled job does not resume later: the next run is a fresh one too.
    let out = c.command().args(["--timeout", "1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains(&format!("resuming job {first}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_running_in_another_live_process_is_refused_naming_the_job_and_process() {
    let slow = SlowRun::new().await;
    let first = Running::start(slow.command());
    until("the first run sends", || !slow.sink.received().is_empty()).await;
    let out = slow.command().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let pid = first.child.id();
    assert!(
        stderr.contains("Flow is currently running: job ")
            && stderr.contains("its run lock's lease ends at ")
            && stderr.contains(&format!("it runs in sluice process {pid} on ")),
        "{stderr}"
    );
    first.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_sluice_dev_leaves_its_jobs_to_resume_at_the_next_start() {
    let slow = SlowRun::new().await;
    let data = slow.dir.path().join("dev-data");
    let http = reqwest::Client::new();
    let (dev, base) = start_dev(&data).await;
    let bundle: Value =
        serde_json::from_slice(&std::fs::read(slow.dir.path().join("slow.json")).unwrap()).unwrap();
    let loaded = http
        .post(format!("{base}/flows/import-template"))
        .bearer_auth("k")
        .json(&bundle)
        .send()
        .await
        .unwrap();
    assert_eq!(loaded.status(), 201, "{}", loaded.text().await.unwrap());
    // 10 pages of 2, one request at a time: stopping lets the pages being delivered finish
    // (a few seconds) and leaves the others.
    let records: Vec<_> = (0..20).map(|n| json!({ "n": n })).collect();
    let started: Value = http
        .post(format!("{base}/flows/f/run"))
        .bearer_auth("k")
        .json(&json!({ "records": records }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = started["_jobId"].as_str().unwrap().to_string();
    until("the run sends", || !slow.sink.received().is_empty()).await;
    let stderr = stop(dev, "TERM").await;
    assert!(
        stderr.contains("stopped by SIGTERM: 1 unfinished job(s) will resume")
            && stderr.contains(&job_id),
        "{stderr}"
    );
    let sent_while_stopped = slow.sink.received().len();
    assert!(sent_while_stopped < 20, "stopped before the end");

    // Back up: the job resumes and finishes; every record reached the sink once.
    let (dev, base) = start_dev(&data).await;
    let job = finished(&base, &job_id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["numSuccess"], 20, "{job}");
    let mut sent: Vec<u64> = slow
        .sink
        .received()
        .iter()
        .map(|r| r.json()["n"].as_u64().unwrap())
        .collect();
    sent.sort();
    assert_eq!(sent, (0..20).collect::<Vec<_>>(), "each record once");
    signal(&dev, "INT");
    let out = tokio::task::spawn_blocking(move || dev.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("resuming job {job_id}")),
        "{stderr}"
    );
}

/// The job as `sluice dev` at `base` answers it once it is no longer running.
async fn finished(base: &str, job_id: &str) -> Value {
    loop {
        let job = api_get(base, &format!("/jobs/{job_id}")).await;
        if job["status"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_dev_resumes_the_job_of_a_killed_sluice_run_when_it_starts() {
    let slow = SlowRun::new().await;
    let run = Running::start(slow.command());
    until("the run sends", || !slow.sink.received().is_empty()).await;
    let job_id = job_named(&run.kill_9(), "running flow f: job ").unwrap();

    let (dev, base) = start_dev(&slow.dir.path().join("data")).await;
    let job = finished(&base, &job_id).await;
    let errors = api_get(&base, &format!("/jobs/{job_id}/errors")).await;
    let stderr = stop(dev, "INT").await;
    assert!(
        stderr.contains(&format!("resuming job {job_id} of flow f")),
        "{stderr}"
    );
    // Every record counted; the one whose send the kill cut off is reported, not resent.
    let count = |k: &str| job[k].as_u64().unwrap();
    assert_eq!(count("numSuccess") + count("numError"), 8, "{job}");
    let unknown: Vec<u64> = errors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["code"], "delivery_unknown", "{e}");
            e["record"]["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(count("numError"), unknown.len() as u64, "{errors}");
    assert!(unknown.len() <= 1, "one send was in flight: {unknown:?}");
    for n in 0..8 {
        let sent = slow
            .sink
            .received()
            .iter()
            .filter(|r| r.json()["n"].as_u64() == Some(n))
            .count();
        let expected = if unknown.contains(&n) { 0..=1 } else { 1..=1 };
        assert!(expected.contains(&sent), "record {n} was sent {sent} times");
    }
}
