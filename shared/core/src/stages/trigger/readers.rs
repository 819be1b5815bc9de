//! Record readers: JSON array, NDJSON and CSV (header row), read as a stream so a large file
//! is never held in memory whole.
//!
//! Each format is parsed by a blocking parser (serde_json, csv) on a blocking thread, reading
//! the async source through `SyncIoBridge`, and handing records one by one through a channel of
//! [`CHANNEL_DEPTH`] slots. Memory is bounded by the parser's buffer plus that many records,
//! whatever the file's size; a slow consumer makes the parser wait.

use crate::ports::BlobReader;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sluice_model::{CsvOptions, FileFormat, FileType};
use std::io::{BufRead, BufReader, Read};
use tokio::sync::mpsc;

/// One record, or why the input could not be read at that point (with a line/position).
pub type RecordStream = BoxStream<'static, Result<Value, ReadError>>;

#[derive(Debug, thiserror::Error)]
#[error("{message} (at {at})")]
pub struct ReadError {
    /// Where in the input: "line 12", "record 7", "byte 1024".
    pub at: String,
    pub message: String,
}

const CHANNEL_DEPTH: usize = 256;

/// Streams the records of `reader` in `format`. Call from within a tokio runtime.
pub fn stream_records(reader: BlobReader, format: &FileFormat) -> RecordStream {
    let kind = format.kind;
    let csv_opts = format.csv.clone().unwrap_or_default();
    let (tx, rx) = mpsc::channel::<Result<Value, ReadError>>(CHANNEL_DEPTH);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let sync = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle);
        let reader = BufReader::with_capacity(64 * 1024, sync);
        match kind {
            FileType::Json => read_json(reader, &tx),
            FileType::Ndjson => read_ndjson(reader, &tx),
            FileType::Csv => read_csv(reader, &csv_opts, &tx),
        }
    });
    tokio_stream(rx).boxed()
}

/// Parses records from bytes already in memory (CLI `--records`, tests).
pub fn stream_bytes(bytes: Vec<u8>, format: &FileFormat) -> RecordStream {
    stream_records(Box::pin(std::io::Cursor::new(bytes)), format)
}

fn tokio_stream(
    mut rx: mpsc::Receiver<Result<Value, ReadError>>,
) -> impl futures::Stream<Item = Result<Value, ReadError>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

type Tx = mpsc::Sender<Result<Value, ReadError>>;

/// A top-level array is read element by element; any other top-level value is one record.
fn read_json(reader: impl Read, tx: &Tx) {
    struct Elements<'a>(&'a Tx);
    impl<'de> Visitor<'de> for Elements<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of records or one JSON object")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut n = 0usize;
            while let Some(v) = seq.next_element::<Value>()? {
                n += 1;
                if self.0.blocking_send(Ok(v)).is_err() {
                    return Ok(()); // the reader went away
                }
            }
            let _ = n;
            Ok(())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            let v: Map<String, Value> =
                serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            let _ = self.0.blocking_send(Ok(Value::Object(v)));
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = (&mut de)
        .deserialize_any(Elements(tx))
        .and_then(|_| de.end());
    if let Err(e) = result {
        let _ = tx.blocking_send(Err(ReadError {
            at: format!("line {} column {}", e.line(), e.column()),
            message: format!("invalid JSON: {e}"),
        }));
    }
}

fn read_ndjson(reader: impl BufRead, tx: &Tx) {
    for (i, line) in reader.lines().enumerate() {
        let at = format!("line {}", i + 1);
        let item = match line {
            Err(e) => Err(ReadError {
                at,
                message: format!("cannot read: {e}"),
            }),
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => serde_json::from_str::<Value>(&l).map_err(|e| ReadError {
                at,
                message: format!("invalid JSON: {e}"),
            }),
        };
        let stop = item.is_err();
        if tx.blocking_send(item).is_err() || stop {
            return;
        }
    }
}

fn read_csv(reader: impl Read, opts: &CsvOptions, tx: &Tx) {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(
            opts.column_delimiter
                .as_bytes()
                .first()
                .copied()
                .unwrap_or(b','),
        )
        .has_headers(opts.has_header_row)
        .flexible(false)
        .from_reader(reader);
    let headers: Option<Vec<String>> = if opts.has_header_row {
        match r.headers() {
            Ok(h) => Some(h.iter().map(str::to_string).collect()),
            Err(e) => {
                let _ = tx.blocking_send(Err(ReadError {
                    at: "line 1".into(),
                    message: format!("invalid CSV header: {e}"),
                }));
                return;
            }
        }
    } else {
        None
    };
    for row in r.records() {
        let item = match row {
            Err(e) => {
                let at = e
                    .position()
                    .map(|p| format!("line {}", p.line()))
                    .unwrap_or_else(|| "unknown position".into());
                Err(ReadError {
                    at,
                    message: format!("invalid CSV: {e}"),
                })
            }
            Ok(rec) => {
                let mut m = Map::new();
                for (i, field) in rec.iter().enumerate() {
                    let name = headers
                        .as_ref()
                        .and_then(|h| h.get(i).cloned())
                        .unwrap_or_else(|| format!("column{}", i + 1));
                    m.insert(name, Value::String(field.to_string()));
                }
                Ok(Value::Object(m))
            }
        };
        let stop = item.is_err();
        if tx.blocking_send(item).is_err() || stop {
            return;
        }
    }
}

/// The format a file name suggests: `.ndjson`/`.jsonl`, `.csv`, else JSON.
pub fn format_for_name(name: &str) -> FileFormat {
    let lower = name.to_ascii_lowercase();
    let kind = if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
        FileType::Ndjson
    } else if lower.ends_with(".csv") {
        FileType::Csv
    } else {
        FileType::Json
    };
    FileFormat { kind, csv: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, ReadBuf};

    async fn collect(bytes: &str, kind: FileType) -> Vec<Result<Value, ReadError>> {
        stream_bytes(bytes.as_bytes().to_vec(), &FileFormat { kind, csv: None })
            .collect()
            .await
    }

    #[tokio::test]
    async fn json_array_object_and_errors() {
        let got = collect(r#"[{"a":1},{"a":2}, {"a":"x\"]"}]"#, FileType::Json).await;
        let values: Vec<Value> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            values,
            vec![json!({"a":1}), json!({"a":2}), json!({"a":"x\"]"})]
        );
        let one = collect(r#"{"only": true}"#, FileType::Json).await;
        assert_eq!(one.len(), 1);
        let bad = collect("[{\"a\":1},\n{\"a\":}]", FileType::Json).await;
        assert!(bad[0].is_ok());
        let err = bad[1].as_ref().unwrap_err();
        assert!(err.at.contains("line 2"), "{err}");
    }

    #[tokio::test]
    async fn ndjson_skips_blank_lines_and_names_bad_line() {
        let got = collect(
            "{\"n\":1}\n\n{\"n\":2}\nnot json\n{\"n\":4}\n",
            FileType::Ndjson,
        )
        .await;
        assert_eq!(got.len(), 3, "stops at the bad line");
        assert_eq!(got[1].as_ref().unwrap(), &json!({"n": 2}));
        assert_eq!(got[2].as_ref().unwrap_err().at, "line 4");
    }

    #[tokio::test]
    async fn csv_header_quotes_delimiter_and_no_header() {
        let got = collect(
            "id,name\n1,\"Smith, J\"\n2,\"multi\nline\"\n",
            FileType::Csv,
        )
        .await;
        let values: Vec<Value> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            values,
            vec![
                json!({"id":"1","name":"Smith, J"}),
                json!({"id":"2","name":"multi\nline"})
            ]
        );
        let fmt = FileFormat {
            kind: FileType::Csv,
            csv: Some(CsvOptions {
                column_delimiter: ";".into(),
                has_header_row: false,
                columns: vec![],
            }),
        };
        let values: Vec<Value> = stream_bytes(b"a;b\nc;d\n".to_vec(), &fmt)
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(values[1], json!({"column1": "c", "column2": "d"}));
        let ragged = collect("a,b\n1,2\n3\n", FileType::Csv).await;
        assert!(ragged[1].as_ref().unwrap_err().message.contains("CSV"));
    }

    /// An endless-looking source made on the fly: N NDJSON records, never all in memory.
    struct Generated {
        next: usize,
        total: usize,
        pending: Vec<u8>,
    }
    impl AsyncRead for Generated {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            while self.pending.len() < buf.remaining() && self.next < self.total {
                let n = self.next;
                let line = format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(200));
                self.pending.extend_from_slice(line.as_bytes());
                self.next += 1;
            }
            let k = self.pending.len().min(buf.remaining());
            buf.put_slice(&self.pending[..k]);
            self.pending.drain(..k);
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn streams_a_large_input_record_by_record() {
        let total = 100_000; // ~22 MB generated on the fly
        let src = Generated {
            next: 0,
            total,
            pending: Vec::new(),
        };
        let mut s = stream_records(
            Box::pin(src),
            &FileFormat {
                kind: FileType::Ndjson,
                csv: None,
            },
        );
        let mut count = 0;
        let mut last = 0;
        while let Some(r) = s.next().await {
            last = r.unwrap()["n"].as_u64().unwrap();
            count += 1;
        }
        assert_eq!((count, last), (total, total as u64 - 1));
    }
}
