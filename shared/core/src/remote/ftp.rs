//! [`FileSource`] over FTP or FTPS (suppaftp): one control connection, logged in, binary
//! transfers, passive mode by default. FTPS checks the server's certificate against the
//! system's roots and the connection's `trustedCertificates` (rustls over aws-lc; no
//! OpenSSL). In passive mode the data connections go to the control connection's address
//! whatever the server's PASV reply names, so a reply cannot point them elsewhere.

use super::blocking::{blocking, reader_from_thread, TIMEOUT};
use crate::ports::files::{FileSource, RemoteFile};
use crate::ports::secrets::resolve;
use crate::ports::BlobReader;
use crate::Sluice;
use anyhow::Context;
use async_trait::async_trait;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use sluice_model::{Connection, FtpConnection, FtpTls};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Mode, RustlsConnector, RustlsFtpStream, Status};

pub struct FtpSource {
    control: Arc<Mutex<RustlsFtpStream>>,
}

impl FtpSource {
    pub async fn connect(sluice: &Sluice, c: &Connection) -> Result<Box<dyn FileSource>, String> {
        let Some(f) = c.ftp.clone() else {
            return Err(format!("connection {} has no ftp settings", c.id));
        };
        let password =
            resolve(&*sluice.secrets, "ftp.password", &f.password).map_err(|e| e.to_string())?;
        let shown = format!("{}:{}", f.host_uri, f.port());
        let stream = tokio::task::spawn_blocking(move || login(&f, &password))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("ftp {shown}: {e:#}"))?;
        Ok(Box::new(FtpSource {
            control: Arc::new(Mutex::new(stream)),
        }))
    }

    /// Runs `call` on the control connection, on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut RustlsFtpStream) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let control = self.control.clone();
        blocking(move || {
            let mut stream = control
                .lock()
                .map_err(|_| anyhow::anyhow!("the FTP connection broke in another call"))?;
            call(&mut stream)
        })
        .await
    }
}

/// Connects (TLS first for implicit FTPS, `AUTH TLS` for explicit), logs in, and sets
/// binary transfers and the data connection mode.
fn login(f: &FtpConnection, password: &str) -> anyhow::Result<RustlsFtpStream> {
    let addr = (f.host_uri.as_str(), f.port())
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {}", f.host_uri))?
        .next()
        .with_context(|| format!("{} has no address", f.host_uri))?;
    let mut stream = match f.tls() {
        FtpTls::Implicit =>
        {
            #[allow(deprecated)]
            RustlsFtpStream::connect_secure_implicit(addr, connector(f)?, &f.host_uri)?
        }
        FtpTls::Explicit => RustlsFtpStream::connect_timeout(addr, TIMEOUT)?
            .into_secure(connector(f)?, &f.host_uri)
            .context("TLS (AUTH TLS)")?,
        FtpTls::None => RustlsFtpStream::connect_timeout(addr, TIMEOUT)?,
    };
    stream.get_ref().set_read_timeout(Some(TIMEOUT))?;
    stream.get_ref().set_write_timeout(Some(TIMEOUT))?;
    stream
        .login(f.username.as_str(), password)
        .with_context(|| format!("login as {}", f.username))?;
    if f.tls() == FtpTls::Implicit {
        // suppaftp asks for private data connections only after AUTH TLS; an implicit
        // server wants them too (vsftpd answers 522 to a listing without), once logged in.
        stream.custom_command("PBSZ 0", &[Status::CommandOk])?;
        stream.custom_command("PROT P", &[Status::CommandOk])?;
    }
    stream.transfer_type(FileType::Binary)?;
    if f.use_passive_mode {
        stream.set_mode(Mode::Passive);
        stream.set_passive_nat_workaround(true);
        stream = stream.passive_stream_builder(|addr| {
            let s =
                TcpStream::connect_timeout(&addr, TIMEOUT).map_err(FtpError::ConnectionError)?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(FtpError::ConnectionError)?;
            Ok(s)
        });
    } else {
        stream = stream.active_mode(TIMEOUT);
    }
    Ok(stream)
}

/// TLS checked against the system's roots and the connection's own certificates.
fn connector(f: &FtpConnection) -> anyhow::Result<RustlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(pem) = &f.trusted_certificates {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.context("ftp.trustedCertificates: not a PEM certificate")?;
            roots
                .add(cert)
                .context("ftp.trustedCertificates: not a usable certificate")?;
        }
    }
    // The name is checked now, so a bad one is said before anything is sent.
    ServerName::try_from(f.host_uri.clone()).context("ftp.hostURI is not a TLS server name")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(RustlsConnector::from(Arc::new(config)))
}

/// The modification time of `path` in seconds since the epoch; None when there is no such
/// file (MDTM answers 550 for a missing file and for a folder).
fn modified(stream: &mut RustlsFtpStream, path: &str) -> anyhow::Result<Option<i64>> {
    match stream.mdtm(path) {
        Ok(t) => Ok(Some(t.and_utc().timestamp())),
        Err(FtpError::UnexpectedResponse(r)) if r.status == Status::FileUnavailable => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read the time of {path}: {e}")),
    }
}

/// `path` as a file, if it is one: its size and modification time.
fn stat_file(
    stream: &mut RustlsFtpStream,
    path: &str,
    name: String,
) -> anyhow::Result<Option<RemoteFile>> {
    let Some(modified) = modified(stream, path)? else {
        return Ok(None);
    };
    let size = match stream.size(path) {
        Ok(n) => n as u64,
        Err(FtpError::UnexpectedResponse(r)) if r.status == Status::FileUnavailable => {
            return Ok(None)
        }
        Err(e) => return Err(anyhow::anyhow!("cannot read the size of {path}: {e}")),
    };
    Ok(Some(RemoteFile {
        path: path.to_string(),
        name,
        size,
        modified,
    }))
}

#[async_trait]
impl FileSource for FtpSource {
    async fn list(
        &self,
        directory: &str,
        wanted: &(dyn for<'n> Fn(&'n str) -> bool + Send + Sync),
    ) -> anyhow::Result<Vec<RemoteFile>> {
        let dir = directory.to_string();
        let lines = self
            .with(move |s| {
                s.list(Some(&dir))
                    .with_context(|| format!("cannot list {dir}"))
            })
            .await?;
        // The listing says what is a file; its times are to the minute at best, so each
        // file's own time (MDTM) is asked for.
        let names: Vec<String> = lines
            .iter()
            .filter_map(|l| suppaftp::list::File::try_from(l.as_str()).ok())
            .filter(|f| !f.is_directory() && wanted(f.name()))
            .map(|f| f.name().to_string())
            .collect();
        let dir = directory.to_string();
        let mut files = self
            .with(move |s| {
                let mut files = Vec::new();
                for name in names {
                    let path = RemoteFile::join(&dir, &name);
                    files.extend(stat_file(s, &path, name)?);
                }
                Ok(files)
            })
            .await?;
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    async fn open(&self, file: &RemoteFile) -> anyhow::Result<BlobReader> {
        let path = file.path.clone();
        let shown = path.clone();
        let mut transfer = self
            .with(move |s| {
                s.retr_as_stream(&path)
                    .with_context(|| format!("cannot open {path}"))
            })
            .await?;
        Ok(reader_from_thread(move |out| {
            let whole = out.copy(&mut transfer)?;
            if whole {
                transfer.finish().map_err(|e| {
                    std::io::Error::other(format!(
                        "{shown}: the server did not confirm the transfer: {e}"
                    ))
                })?;
            }
            Ok(())
        }))
    }

    async fn stat(&self, path: &str) -> anyhow::Result<Option<RemoteFile>> {
        let path = path.to_string();
        let name = path.rsplit('/').next().unwrap_or(&path).to_string();
        self.with(move |s| stat_file(s, &path, name)).await
    }

    async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let path = path.to_string();
        self.with(move |s| s.rm(&path).with_context(|| format!("cannot delete {path}")))
            .await
    }

    async fn rename(&self, path: &str, to: &str) -> anyhow::Result<()> {
        let (path, to) = (path.to_string(), to.to_string());
        self.with(move |s| {
            if let Some((dir, _)) = to.rsplit_once('/') {
                make_dirs(s, dir);
            }
            s.rename(&path, &to)
                .with_context(|| format!("cannot move {path} to {to}"))
        })
        .await
    }
}

/// Creates `dir` and the folders above it that are missing. A folder that cannot be made
/// (it exists, or may not be made) is left to the rename after, which then says why.
fn make_dirs(stream: &mut RustlsFtpStream, dir: &str) {
    let mut at = String::new();
    for part in dir.split('/') {
        if part.is_empty() {
            if at.is_empty() {
                at.push('/');
            }
            continue;
        }
        if !at.is_empty() && !at.ends_with('/') {
            at.push('/');
        }
        at.push_str(part);
        let _ = stream.mkdir(&at);
    }
}
