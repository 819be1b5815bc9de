//! The adapters of the [`FileSource`] port: SFTP (ssh2, feature `sftp`) and FTP/FTPS
//! (suppaftp over rustls, feature `ftp`), picked by the connection's type. A build without a
//! protocol's feature says so when an export needs it, instead of reading nothing.
//!
//! Both clients are blocking: every call runs on a blocking thread, and a file is streamed
//! by a thread of its own that hands its bytes on in chunks through a bounded channel
//! (`blocking.rs`), so a big file is never held whole.

#[cfg(any(feature = "sftp", feature = "ftp"))]
mod blocking;
#[cfg(feature = "ftp")]
mod ftp;
#[cfg(feature = "sftp")]
mod sftp;

use crate::ports::files::FileSource;
use crate::Sluice;
use sluice_model::{Connection, ConnectionType};

/// A source over `connection`, connected and logged in. The Err is why not, in words the
/// job's error shows.
pub async fn source_for(
    sluice: &Sluice,
    connection: &Connection,
) -> Result<Box<dyn FileSource>, String> {
    let _ = sluice;
    match connection.kind {
        #[cfg(feature = "sftp")]
        ConnectionType::Sftp => sftp::SftpSource::connect(sluice, connection).await,
        #[cfg(not(feature = "sftp"))]
        ConnectionType::Sftp => Err(format!(
            "connection {} is an sftp connection, and this build has no SFTP client (sluice-core's `sftp` feature)",
            connection.id
        )),
        #[cfg(feature = "ftp")]
        ConnectionType::Ftp => ftp::FtpSource::connect(sluice, connection).await,
        #[cfg(not(feature = "ftp"))]
        ConnectionType::Ftp => Err(format!(
            "connection {} is an ftp connection, and this build has no FTP client (sluice-core's `ftp` feature)",
            connection.id
        )),
        other => Err(format!(
            "connection {} is of type {}: an ftp export reads over an sftp or ftp connection",
            connection.id,
            serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        )),
    }
}

/// A file on the connection's server as a URL, for messages: `sftp://host:22/dir/name`.
pub fn shown(connection: &Connection, path: &str) -> String {
    let (scheme, host, port) = match (&connection.sftp, &connection.ftp) {
        (Some(s), _) => ("sftp", s.host.as_str(), s.port),
        (None, Some(f)) => match f.kind {
            sluice_model::FtpProtocol::Ftp => ("ftp", f.host_uri.as_str(), f.port()),
            sluice_model::FtpProtocol::Ftps => ("ftps", f.host_uri.as_str(), f.port()),
        },
        (None, None) => return path.to_string(),
    };
    format!("{scheme}://{host}:{port}/{}", path.trim_start_matches('/'))
}
