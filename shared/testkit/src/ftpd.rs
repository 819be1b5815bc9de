//! Debian's vsftpd on a loopback port, with a config, a user and (for FTPS) a certificate of
//! its own, all made here.
//!
//! The user is virtual: vsftpd asks PAM through a service file written for this server
//! (`/etc/pam.d/sluice-testkit-ftp-<port>`, removed on drop), whose `pam_pwdfile` checks the
//! password against a file in the server's temporary directory; the files are the `ftp`
//! user's (vsftpd's guest). FTPS uses a throwaway CA and a server certificate for 127.0.0.1
//! signed by it (rcgen), so a client trusts the server by that CA's PEM
//! ([`FtpServer::ca_pem`]). Runs as root (as CI does), like sshd.

use anyhow::{bail, Context};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// How the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpMode {
    /// Plain FTP.
    Plain,
    /// FTPS: `AUTH TLS` on the control connection, required for login and data.
    Explicit,
    /// FTPS: TLS from the first byte.
    Implicit,
}

pub struct FtpServer {
    pub port: u16,
    pub user: String,
    pub password: String,
    ca_pem: Option<String>,
    pam_service: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

const VSFTPD: &str = "/usr/sbin/vsftpd";

/// Where Debian put `pam_pwdfile.so` (libpam-pwdfile), on whichever architecture.
fn pam_pwdfile() -> anyhow::Result<PathBuf> {
    for lib in ["/lib", "/usr/lib"] {
        for arch in std::fs::read_dir(lib).into_iter().flatten().flatten() {
            let module = arch.path().join("security/pam_pwdfile.so");
            if module.exists() {
                return Ok(module);
            }
        }
    }
    bail!("pam_pwdfile.so is missing: install Debian's libpam-pwdfile (tests/run.sh does)")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl FtpServer {
    /// Starts vsftpd and waits (at most 5 s) until it accepts connections.
    pub fn start(mode: FtpMode) -> anyhow::Result<FtpServer> {
        if !Path::new(VSFTPD).exists() {
            bail!("{VSFTPD} is missing: install Debian's vsftpd and libpam-pwdfile (tests/run.sh does)");
        }
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        // The guest user (ftp) reads and writes under the root.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        let root = d.join("root");
        std::fs::create_dir_all(&root)?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777))?;
        let (user, password) = ("sluice".to_string(), "ftp-pw-7f3a".to_string());
        let hash = Command::new("openssl")
            .args(["passwd", "-1", &password])
            .output()
            .context("openssl (for the password hash) is not installed")?;
        std::fs::write(
            d.join("passwd"),
            format!("{user}:{}", String::from_utf8_lossy(&hash.stdout).trim()),
        )?;
        let pam_module = pam_pwdfile()?;
        let port = free_port()?;
        let service = format!("sluice-testkit-ftp-{port}");
        let pam_service = PathBuf::from("/etc/pam.d").join(&service);
        std::fs::write(
            &pam_service,
            format!(
                "auth required {} pwdfile={}\naccount required pam_permit.so\n",
                pam_module.display(),
                d.join("passwd").display()
            ),
        )
        .context("cannot write the PAM service (the FTP tests run as root)")?;
        let mut config = format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\n\
             anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\nguest_enable=YES\nguest_username=ftp\n\
             virtual_use_local_privs=YES\nlocal_umask=022\nlocal_root={root}\npam_service_name={service}\n\
             seccomp_sandbox=NO\nsecure_chroot_dir=/var/run/vsftpd/empty\nuse_localtime=NO\n\
             pasv_enable=YES\npasv_address=127.0.0.1\nport_enable=YES\nconnect_from_port_20=NO\n\
             xferlog_enable=NO\nvsftpd_log_file={d}/vsftpd.log\n",
            root = root.display(),
            d = d.display(),
        );
        let ca_pem = match mode {
            FtpMode::Plain => None,
            FtpMode::Explicit | FtpMode::Implicit => {
                let (ca, cert, key) = certificates()?;
                std::fs::write(d.join("cert.pem"), cert)?;
                std::fs::write(d.join("key.pem"), key)?;
                config.push_str(&format!(
                    "ssl_enable=YES\nrsa_cert_file={d}/cert.pem\nrsa_private_key_file={d}/key.pem\n\
                     force_local_logins_ssl=YES\nforce_local_data_ssl=YES\nrequire_ssl_reuse=NO\n\
                     ssl_sslv2=NO\nssl_sslv3=NO\nssl_tlsv1=YES\nimplicit_ssl={}\n",
                    if mode == FtpMode::Implicit { "YES" } else { "NO" },
                    d = d.display(),
                ));
                Some(ca)
            }
        };
        std::fs::write(d.join("vsftpd.conf"), config)?;
        let child = Command::new(VSFTPD)
            .arg(d.join("vsftpd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start vsftpd")?;
        let mut server = FtpServer {
            port,
            user,
            password,
            ca_pem,
            pam_service,
            dir,
            child: Some(child),
        };
        crate::wait_listening("vsftpd", server.port, &mut server.child)?;
        Ok(server)
    }

    /// The directory the user logs in to (an absolute path on this machine).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A directory under [`root`](Self::root) that the FTP user may write in (files the test
    /// writes there are root's; vsftpd's guest deletes and moves them as `ftp`).
    pub fn writable_dir(&self, relative: &str) -> PathBuf {
        let dir = self.root().join(relative);
        std::fs::create_dir_all(&dir).expect("the directory is made");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .expect("the directory is opened to the FTP user");
        dir
    }

    /// The PEM of the CA that signed the server's certificate (FTPS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.pam_service);
    }
}

/// A throwaway CA, and a certificate for 127.0.0.1 it signed with its key: (CA PEM,
/// certificate PEM, key PEM).
fn certificates() -> anyhow::Result<(String, String, String)> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sluice test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &ca)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}
