//! Real servers for tests, started on loopback by the test itself and stopped on drop.
//! Nothing here is a mock: sshd is Debian's OpenSSH, vsftpd is Debian's FTP server, moto is
//! the AWS API emulator from PyPI,
//! and the HTTP target is a real HTTP server.

pub mod big_replies;
pub mod ftpd;
pub mod http;
pub mod moto;
pub mod smtpd;
pub mod sshd;
pub mod webhooks;

/// Waits (at most 5 s) until the server `child` runs listens on 127.0.0.1:`port`; if it exits
/// first, says so with what it wrote to stderr (piped), and `child` is taken.
pub(crate) fn wait_listening(
    name: &str,
    port: u16,
    child: &mut Option<std::process::Child>,
) -> anyhow::Result<()> {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            let mut err = String::new();
            if let Some(mut e) = child.take().and_then(|mut c| c.stderr.take()) {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            anyhow::bail!("{name} exited ({status}): {err}");
        }
        if Instant::now() > deadline {
            anyhow::bail!("{name} did not listen on 127.0.0.1:{port} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
