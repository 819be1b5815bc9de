//! The blocking clients' side of the async world: calls on blocking threads, and files
//! streamed from a thread through a bounded channel of chunks.

use crate::ports::BlobReader;
use bytes::Bytes;
use std::io::Read;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a connect or a read may take before the server is taken as gone.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Chunks of a file read on a blocking thread.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the reading thread and the reader of the stream.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The sending side of [`reader_from_thread`].
pub(crate) struct Chunks(mpsc::Sender<std::io::Result<Bytes>>);

impl Chunks {
    /// Copies `source` to the stream; false when the stream's reader went away.
    pub(crate) fn copy(&self, source: &mut dyn Read) -> std::io::Result<bool> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if self
                .0
                .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                .is_err()
            {
                return Ok(false);
            }
        }
    }
}

/// A stream of what `work` copies on a blocking thread; an Err it returns is the stream's
/// last item, so the reader sees why reading stopped.
pub(crate) fn reader_from_thread(
    work: impl FnOnce(&Chunks) -> std::io::Result<()> + Send + 'static,
) -> BlobReader {
    let (tx, mut rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let chunks = Chunks(tx);
        if let Err(e) = work(&chunks) {
            let _ = chunks.0.blocking_send(Err(e));
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Box::pin(tokio_util::io::StreamReader::new(stream))
}

/// Runs a blocking call of a client on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(call).await?
}
