//! Writing a file over SFTP (ssh2, on a blocking thread): host key checked against the pinned
//! key, written under a temporary name in the target directory, then renamed into place, so a
//! reader never sees half a file.

use base64::Engine;
use sluice_model::OverwritePolicy;
use ssh2::{HashType, RenameFlags, Session};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything needed to reach the server, credentials already resolved.
#[derive(Clone)]
pub struct SftpTarget {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Option<String>,
    pub private_key: Option<String>,
    /// `ssh-ed25519 AAAA...` (known_hosts style) or `SHA256:...`.
    pub host_key: String,
    pub timeout: Duration,
}

impl SftpTarget {
    /// The target of an sftp connection, its `secret:` references resolved.
    pub fn of(
        secrets: &dyn crate::ports::Secrets,
        c: &sluice_model::SftpConnection,
        timeout: Duration,
    ) -> crate::Result<SftpTarget> {
        use crate::ports::secrets::resolve;
        Ok(SftpTarget {
            host: c.host.clone(),
            port: c.port,
            username: c.username.clone(),
            password: c
                .password
                .as_deref()
                .map(|v| resolve(secrets, "sftp.password", v))
                .transpose()?,
            private_key: c
                .private_key
                .as_deref()
                .map(|v| resolve(secrets, "sftp.privateKey", v))
                .transpose()?,
            host_key: c.host_key.clone(),
            timeout,
        })
    }
}

#[derive(Debug, PartialEq)]
pub enum Written {
    /// Written, with the final path and byte count.
    Done { path: String, bytes: usize },
    /// The file existed and the policy is skip.
    SkippedExisting { path: String },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SftpError {
    #[error("host key mismatch: the server at {0} presented {1}, not the pinned key")]
    HostKeyMismatch(String, String),
    #[error("file {0} exists and the overwrite policy is fail")]
    Exists(String),
    #[error("{0}")]
    Other(String),
}

fn other(context: &str) -> impl Fn(ssh2::Error) -> SftpError + '_ {
    move |e| SftpError::Other(format!("{context}: {e}"))
}

/// Does the server's key match the pinned one?
pub fn host_key_matches(
    pinned: &str,
    key_type: &str,
    key_blob: &[u8],
    sha256: Option<&[u8]>,
) -> bool {
    let pinned = pinned.trim();
    if let Some(fp) = pinned.strip_prefix("SHA256:") {
        let Some(hash) = sha256 else { return false };
        let ours = base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash);
        return ours == fp.trim_end_matches('=');
    }
    // known_hosts style: optional host field, key type, base64 blob
    let parts: Vec<&str> = pinned.split_whitespace().collect();
    let (t, b) = match parts.as_slice() {
        [t, b, ..] if t.starts_with("ssh-") || t.starts_with("ecdsa-") => (*t, *b),
        [_, t, b, ..] => (*t, *b),
        _ => return false,
    };
    t == key_type
        && base64::engine::general_purpose::STANDARD
            .decode(b)
            .is_ok_and(|k| k == key_blob)
}

fn key_type_name(t: ssh2::HostKeyType) -> &'static str {
    match t {
        ssh2::HostKeyType::Rsa => "ssh-rsa",
        ssh2::HostKeyType::Dss => "ssh-dss",
        ssh2::HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        ssh2::HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        ssh2::HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        ssh2::HostKeyType::Ed25519 => "ssh-ed25519",
        _ => "unknown",
    }
}

/// Connects, checks the host key and authenticates.
pub fn connect(t: &SftpTarget) -> Result<Session, SftpError> {
    let addr = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| SftpError::Other(format!("cannot resolve {}: {e}", t.host)))?
        .next()
        .ok_or_else(|| SftpError::Other(format!("{} has no address", t.host)))?;
    let tcp = TcpStream::connect_timeout(&addr, t.timeout)
        .map_err(|e| SftpError::Other(format!("cannot connect to {}:{}: {e}", t.host, t.port)))?;
    let mut session = Session::new().map_err(other("ssh session"))?;
    session.set_timeout(t.timeout.as_millis() as u32);
    session.set_tcp_stream(tcp);
    session.handshake().map_err(other("ssh handshake"))?;
    let (blob, kind) = session
        .host_key()
        .ok_or_else(|| SftpError::Other("the server sent no host key".into()))?;
    let kind = key_type_name(kind);
    let sha = session.host_key_hash(HashType::Sha256).map(|h| h.to_vec());
    if !host_key_matches(&t.host_key, kind, blob, sha.as_deref()) {
        let shown = sha
            .map(|h| {
                format!(
                    "{kind} SHA256:{}",
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)
                )
            })
            .unwrap_or_else(|| kind.to_string());
        return Err(SftpError::HostKeyMismatch(
            format!("{}:{}", t.host, t.port),
            shown,
        ));
    }
    if let Some(key) = &t.private_key {
        session
            .userauth_pubkey_memory(&t.username, None, key, None)
            .map_err(other("key authentication"))?;
    } else if let Some(pw) = &t.password {
        session
            .userauth_password(&t.username, pw)
            .map_err(other("password authentication"))?;
    }
    if !session.authenticated() {
        return Err(SftpError::Other(format!(
            "authentication as {} failed",
            t.username
        )));
    }
    Ok(session)
}

/// Writes `content` to `directory/name` under `policy`.
pub fn write_file(
    t: &SftpTarget,
    directory: &str,
    name: &str,
    content: &[u8],
    policy: OverwritePolicy,
) -> Result<Written, SftpError> {
    let session = connect(t)?;
    let sftp = session.sftp().map_err(other("sftp subsystem"))?;
    let dir = if directory.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(directory)
    };
    mkdir_p(&sftp, &dir)?;
    let final_path = dir.join(name);
    let shown = final_path.display().to_string();
    let exists = sftp.stat(&final_path).is_ok();
    match (exists, policy) {
        (true, OverwritePolicy::Skip) => return Ok(Written::SkippedExisting { path: shown }),
        (true, OverwritePolicy::Fail) => return Err(SftpError::Exists(shown)),
        _ => {}
    }
    let temp = dir.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = sftp.create(&temp).map_err(other("create temporary file"))?;
        f.write_all(content)
            .map_err(|e| SftpError::Other(format!("write: {e}")))?;
        drop(f);
        // OpenSSH speaks SFTP v3, whose rename refuses an existing target: remove it first.
        if sftp
            .rename(
                &temp,
                &final_path,
                Some(RenameFlags::OVERWRITE | RenameFlags::ATOMIC | RenameFlags::NATIVE),
            )
            .is_err()
        {
            if policy == OverwritePolicy::Overwrite && sftp.stat(&final_path).is_ok() {
                sftp.unlink(&final_path)
                    .map_err(other("remove the old file"))?;
            }
            sftp.rename(&temp, &final_path, None)
                .map_err(other("rename into place"))?;
        }
        Ok(Written::Done {
            path: shown.clone(),
            bytes: content.len(),
        })
    })();
    if result.is_err() {
        let _ = sftp.unlink(&temp);
    }
    result
}

/// Does `directory/name` exist? (Used when a crashed upload is redelivered.)
pub fn exists(t: &SftpTarget, directory: &str, name: &str) -> Result<bool, SftpError> {
    let session = connect(t)?;
    let sftp = session.sftp().map_err(other("sftp subsystem"))?;
    Ok(sftp.stat(&Path::new(directory).join(name)).is_ok())
}

pub(crate) fn mkdir_p(sftp: &ssh2::Sftp, dir: &Path) -> Result<(), SftpError> {
    let mut cur = PathBuf::new();
    for part in dir.components() {
        cur.push(part);
        if sftp.stat(&cur).is_err() {
            if let Err(e) = sftp.mkdir(&cur, 0o755) {
                if sftp.stat(&cur).is_err() {
                    return Err(SftpError::Other(format!("mkdir {}: {e}", cur.display())));
                }
            }
        }
    }
    Ok(())
}
