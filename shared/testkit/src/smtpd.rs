//! An SMTP server on a loopback port (aiosmtpd from the test venv, `smtp_server.py`) that
//! keeps every message it is handed, parsed, for the test to read ([`SmtpServer::messages`]).

use anyhow::{bail, Context};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = include_str!("smtp_server.py");

/// A running server; killed when dropped.
pub struct SmtpServer {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts the server and waits (at most 10 s) until it listens.
    pub fn start() -> anyhow::Result<SmtpServer> {
        let python = crate::moto::venv_dir().join("bin/python3");
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("messages.ndjson");
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new(&python)
            .args(["-c", SERVER, &port.to_string()])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting aiosmtpd with {}", python.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (ready, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = ready.send(line);
        });
        let mut server = SmtpServer {
            port,
            child,
            log,
            _dir: dir,
        };
        match wait.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.trim() == "ready" => Ok(server),
            _ => {
                let status = server.child.try_wait()?;
                bail!("aiosmtpd did not start (exit: {status:?}); run infra/setup-moto.sh")
            }
        }
    }

    /// `smtp://127.0.0.1:<port>` (no TLS: loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message taken so far, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (at most `timeout`) until `n` messages were taken; returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n || Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
