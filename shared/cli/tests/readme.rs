//! The README's curl examples, run as they are written against a real `sluice dev` (and
//! `sluice dev sink`), each answering the status its comment says.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str], health: &str) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    for _ in 0..200 {
        let up = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-f", health])
            .status()
            .is_ok_and(|s| s.success());
        if up {
            return running;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{args:?} did not answer {health}");
}

/// The commands of the README's tested block: continuation lines joined; the trailing
/// `# NNN ...` comment is the expected status (lines without one set shell variables).
fn examples(readme: &str) -> Vec<(String, Option<u16>)> {
    let marker = "<!-- curl examples: run by shared/cli/tests/readme.rs -->";
    let block = readme
        .split_once(marker)
        .expect("the README marks its tested curl examples")
        .1;
    let block = block.split_once("```sh\n").unwrap().1;
    let block = block.split_once("\n```").unwrap().0;
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        if let Some(start) = line.strip_suffix('\\') {
            pending.push_str(start);
            continue;
        }
        pending.push_str(line);
        let command = std::mem::take(&mut pending);
        let status = command
            .rsplit_once("  # ")
            .and_then(|(_, c)| c.get(..3))
            .and_then(|s| s.parse().ok());
        out.push((command, status));
    }
    out
}

#[test]
fn the_readme_curl_examples_run_against_sluice_dev() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let commands = examples(&readme);
    assert!(commands.len() >= 12, "{commands:?}");
    let dir = tempfile::tempdir().unwrap();
    let (api, sink) = (free_port(), free_port());
    let _sink = start(
        &["dev", "sink", "--port", &sink.to_string()],
        &format!("http://127.0.0.1:{sink}/healthz"),
    );
    let data = dir.path().join("data");
    let _dev = start(
        &[
            "dev",
            "--port",
            &api.to_string(),
            "--api-key",
            "devkey",
            "--data",
            data.to_str().unwrap(),
        ],
        &format!("http://127.0.0.1:{api}/healthz"),
    );
    let body = dir.path().join("body");
    // curl answers its status on stdout and keeps the body in a file.
    let mut prelude = format!(
        "curl() {{ command curl -o '{}' -w '%{{http_code}}' \"$@\"; }}\n",
        body.display()
    );
    let mut job = String::new();
    for (command, status) in commands {
        let command = command
            .replace("localhost:8080", &format!("127.0.0.1:{api}"))
            .replace("127.0.0.1:8090", &format!("127.0.0.1:{sink}"));
        let Some(expected) = status else {
            prelude.push_str(&command);
            prelude.push('\n');
            continue;
        };
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("{prelude}{command}"))
            .env("JOB", &job)
            .output()
            .unwrap();
        let answered = String::from_utf8_lossy(&out.stdout).to_string();
        let text = std::fs::read_to_string(&body).unwrap_or_default();
        assert_eq!(
            answered,
            expected.to_string(),
            "{command}\nanswered {answered}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if let Some(id) = v["_jobId"].as_str() {
                job = id.to_string();
                // Let the run finish, so the later examples see its job complete.
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    assert!(!job.is_empty(), "the examples started a run");
}
