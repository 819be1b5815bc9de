//! moto in server mode on 127.0.0.1, from the venv `infra/setup-moto.sh` prepares
//! (`$SLUICE_VENV`, default `$HOME/.cache/sluice/venv`), started through `moto_server.py`,
//! which makes DynamoDB's writes atomic as they are on AWS (moto's own are not: two racing
//! conditional writes can both win, and a cancelled transaction erases concurrent writes).

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `moto_server`; killed when dropped.
pub struct Moto {
    child: Child,
    port: u16,
}

/// Where the venv with moto lives.
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("SLUICE_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache/sluice/venv")
        }
    }
}

fn moto_binary() -> PathBuf {
    venv_dir().join("bin/moto_server")
}

/// moto's server with DynamoDB writes serialised; run by the venv's python.
const SERVER: &str = include_str!("moto_server.py");

/// True when moto is installed in the venv.
pub fn moto_installed() -> bool {
    moto_binary().is_file()
}

impl Moto {
    /// Starts moto on a free loopback port and waits (at most ~10 s) until it answers.
    pub fn start() -> anyhow::Result<Moto> {
        let bin = moto_binary();
        if !bin.is_file() {
            bail!(
                "moto is not installed ({} missing): run infra/setup-moto.sh",
                bin.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let python = venv_dir().join("bin/python3");
        let child = Command::new(&python)
            .args(["-c", SERVER, "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting moto with {}", python.display()))?;
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if moto.request("GET", "/moto-api/").is_ok() {
                return Ok(moto);
            }
            if let Some(status) = moto.child.try_wait()? {
                bail!("moto_server exited early with {status}");
            }
            if Instant::now() > deadline {
                bail!("moto_server did not answer on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// For tests: `Some(moto)`, or `None` after printing "SKIPPED: moto not installed" when
    /// moto is missing and `SLUICE_REQUIRE_MOTO` is unset. With `SLUICE_REQUIRE_MOTO` set
    /// (CI), a missing moto panics so it cannot pass silently.
    pub fn start_or_skip(test: &str) -> Option<Moto> {
        if !moto_installed() && std::env::var_os("SLUICE_REQUIRE_MOTO").is_none() {
            eprintln!("SKIPPED: moto not installed ({test}); run infra/setup-moto.sh");
            return None;
        }
        Some(
            Moto::start()
                .expect("moto must start (SLUICE_REQUIRE_MOTO is set or moto is installed)"),
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, for the SDK's endpoint override.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forgets every resource (queues, tables, buckets) so tests start clean.
    pub fn reset(&self) -> anyhow::Result<()> {
        let status = self.request("POST", "/moto-api/reset")?;
        if status != 200 {
            bail!("moto reset answered {status}");
        }
        Ok(())
    }

    /// The mail SES has sent (moto keeps it; `/moto-api/data.json`'s `ses.Message`): each
    /// with `source`, `destinations.ToAddresses`, `subject` and `body`.
    pub fn sent_mail(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let (status, body) = self.exchange("GET", "/moto-api/data.json")?;
        if status != 200 {
            bail!("moto's data.json answered {status}");
        }
        let data: serde_json::Value = serde_json::from_str(&body)?;
        Ok(data["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// One plain HTTP/1.1 request; returns the status code.
    fn request(&self, method: &str, path: &str) -> anyhow::Result<u16> {
        Ok(self.exchange(method, path)?.0)
    }

    /// One plain HTTP/1.1 request; returns the status code and the body.
    fn exchange(&self, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("moto answered without a status line")?;
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_string();
        Ok((status, body))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
