//! OpenSSH's sshd on a loopback port with a temporary host key and user key.
//!
//! `sshd -D -e -f <config>` runs as the current user (root in CI: `PermitRootLogin yes`),
//! accepts only the temporary user key, and serves SFTP with `internal-sftp`. Files written
//! over SFTP land in the real filesystem, under [`SshServer::root`].

use anyhow::{bail, Context};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct SshServer {
    pub port: u16,
    pub user: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn keygen(path: &Path) -> anyhow::Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "sluice-test", "-f"])
        .arg(path)
        .output()
        .context("ssh-keygen is not installed (apt-get install openssh-client)")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl SshServer {
    /// Starts sshd and waits (at most 5 s) until it accepts connections.
    pub fn start() -> anyhow::Result<SshServer> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            bail!("/usr/sbin/sshd is missing: install Debian's openssh-server (tests/run.sh does)");
        }
        std::fs::create_dir_all("/run/sshd").ok(); // privilege separation directory
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        keygen(&d.join("host_key"))?;
        keygen(&d.join("user_key"))?;
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys"))?;
        std::fs::create_dir_all(d.join("root"))?;
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(whoami);
        let port = free_port()?;
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PermitRootLogin yes\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PubkeyAuthentication yes\nSubsystem sftp internal-sftp\nLogLevel ERROR\nAllowUsers {user}\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config)?;
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start sshd")?;
        let mut server = SshServer {
            port,
            user,
            dir,
            child: Some(child),
        };
        crate::wait_listening("sshd", port, &mut server.child)?;
        Ok(server)
    }

    /// The server's public host key as a known_hosts style line: `ssh-ed25519 AAAA...`.
    pub fn host_key_line(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("host_key.pub")).expect("host key exists");
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Some other valid key line, for host-key mismatch tests.
    pub fn other_key_line(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("user_key.pub")).expect("user key exists");
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The user's private key (OpenSSH format).
    pub fn private_key_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("user_key")).expect("user key exists")
    }

    /// A directory to write under (an absolute path on this machine).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Stops the server (to test a target that is down).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn whoami() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "root".into())
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
    }
}
