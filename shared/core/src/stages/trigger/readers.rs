//! Record readers: JSON array, NDJSON and CSV (header row), read as a stream so a large file
//! is never held in memory whole.
//!
//! Each format is parsed by a blocking reader on a blocking thread, reading the async source
//! through `SyncIoBridge`, and handing items one by one through a channel of
//! [`CHANNEL_DEPTH`] slots. Memory is bounded by the reader's buffer plus that many items,
//! whatever the file's size; a slow consumer makes the reader wait.
//!
//! A bad record does not hide the rest: a line (NDJSON, CSV) or an array element (JSON) that
//! cannot be read is an [`Unreadable`] item saying where and why, and reading goes on. Only
//! what stops reading altogether (an I/O error, a JSON file that is neither an array nor an
//! object) ends the stream with a [`ReadError`]. A UTF-8 byte order mark is skipped.
//!
//! A compressed input is decompressed as it is read (flate2, zip): gzip members one after
//! another, and each file of a zip archive in turn (read from its local headers as the bytes
//! come, never seeking), its parts' places named with the file's name (`orders.csv line 3`).

use crate::ports::BlobReader;
use futures::stream::BoxStream;
use serde_json::{Map, Value};
use sluice_model::{Compression, CsvOptions, FileFormat, FileType};
use std::io::{BufRead, BufReader};
use tokio::sync::mpsc;

/// Items of an input, ending with an `Err` if reading had to stop.
pub type RecordStream = BoxStream<'static, Result<Read, ReadError>>;

/// One item of an input.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Record(Value),
    /// A part of the input that is not a record: it is counted as an error record.
    Unreadable(Unreadable),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// Where in the input: "line 12".
    pub at: String,
    pub message: String,
    /// What the input holds there, cut to [`EXCERPT_BYTES`].
    pub text: String,
}

/// Why the input cannot be read any further (with a line/position).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (at {at})")]
pub struct ReadError {
    /// Where in the input: "line 12", "record 7", "byte 1024".
    pub at: String,
    pub message: String,
}

const CHANNEL_DEPTH: usize = 256;

/// How much of an unreadable part of an input its error record keeps.
pub const EXCERPT_BYTES: usize = 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Streams the records of `reader` in `format`. Call from within a tokio runtime.
pub fn stream_records(reader: BlobReader, format: &FileFormat) -> RecordStream {
    let kind = format.kind;
    let csv_opts = format.csv.clone().unwrap_or_default();
    let (tx, rx) = mpsc::channel::<Result<Read, ReadError>>(CHANNEL_DEPTH);
    let handle = tokio::runtime::Handle::current();
    let compression = format.compression_format;
    tokio::task::spawn_blocking(move || {
        let sync = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle);
        let reader = BufReader::with_capacity(64 * 1024, sync);
        let out = Out {
            tx: &tx,
            within: None,
        };
        let result = match compression {
            None => read_one(reader, kind, &csv_opts, &out),
            Some(Compression::Gzip) => {
                let gz = flate2::bufread::MultiGzDecoder::new(reader);
                read_one(
                    BufReader::with_capacity(64 * 1024, gz),
                    kind,
                    &csv_opts,
                    &out,
                )
            }
            Some(Compression::Zip) => read_zip(reader, kind, &csv_opts, &out),
        };
        if let Err(Stop::Failed(e)) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let mut rx = rx;
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// The records of one (uncompressed) input.
fn read_one(
    mut reader: impl BufRead,
    kind: FileType,
    csv_opts: &CsvOptions,
    out: &Out,
) -> Result<(), Stop> {
    skip_bom(&mut reader)?;
    match kind {
        FileType::Json => read_json(reader, out),
        FileType::Ndjson => read_ndjson(reader, out),
        FileType::Csv => read_csv(reader, csv_opts, out),
        // Validation keeps it to imports; said rather than read as something else.
        FileType::Template => Err(Stop::Failed(ReadError {
            at: "the start".into(),
            message: "a template is a format files are written in, not read".into(),
        })),
    }
}

/// Each file of a zip archive in turn, in the archive's order (folders skipped), as the
/// archive's bytes come.
fn read_zip(
    mut reader: impl std::io::Read,
    kind: FileType,
    csv_opts: &CsvOptions,
    out: &Out,
) -> Result<(), Stop> {
    let mut files = 0u32;
    loop {
        let entry = zip::read::read_zipfile_from_stream(&mut reader).map_err(|e| {
            Stop::Failed(ReadError {
                at: format!("zip entry {}", files + 1),
                message: format!("not a zip archive that can be read as it arrives: {e}"),
            })
        })?;
        let Some(entry) = entry else {
            return Ok(());
        };
        files += 1;
        if !entry.is_file() {
            continue;
        }
        let name = entry
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| format!("zip entry {files}"));
        let inner = Out {
            tx: out.tx,
            within: Some(name.clone()),
        };
        read_one(BufReader::new(entry), kind, csv_opts, &inner).map_err(|stop| match stop {
            Stop::Failed(e) => Stop::Failed(ReadError {
                at: format!("{name} {}", e.at),
                message: e.message,
            }),
            gone => gone,
        })?;
    }
}

/// Parses records from bytes already in memory (tests).
pub fn stream_bytes(bytes: Vec<u8>, format: &FileFormat) -> RecordStream {
    stream_records(Box::pin(std::io::Cursor::new(bytes)), format)
}

/// Why a reader stopped early.
enum Stop {
    /// The consumer went away: nothing more to do.
    Gone,
    Failed(ReadError),
}

fn io_stop(at: impl Into<String>, e: std::io::Error) -> Stop {
    Stop::Failed(ReadError {
        at: at.into(),
        message: format!("cannot read: {e}"),
    })
}

/// The sending side of the channel, for the blocking readers.
struct Out<'a> {
    tx: &'a mpsc::Sender<Result<Read, ReadError>>,
    /// The file of an archive being read, which every place it names is in.
    within: Option<String>,
}

impl Out<'_> {
    fn record(&self, v: Value) -> Result<(), Stop> {
        self.send(Read::Record(v))
    }
    fn unreadable(&self, at: String, message: String, text: &[u8]) -> Result<(), Stop> {
        let at = match &self.within {
            Some(file) => format!("{file} {at}"),
            None => at,
        };
        self.send(Read::Unreadable(Unreadable {
            at,
            message,
            text: excerpt(text),
        }))
    }
    fn send(&self, item: Read) -> Result<(), Stop> {
        self.tx.blocking_send(Ok(item)).map_err(|_| Stop::Gone)
    }
}

/// The first [`EXCERPT_BYTES`] of `bytes` as text (invalid UTF-8 replaced), marked when cut.
pub fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(EXCERPT_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < bytes.len() {
        text.push('…');
    }
    text
}

fn skip_bom(reader: &mut impl BufRead) -> Result<(), Stop> {
    let head = reader.fill_buf().map_err(|e| io_stop("byte 0", e))?;
    if head.starts_with(BOM) {
        reader.consume(BOM.len());
    }
    Ok(())
}

/// serde_json's message without its " at line L column C" (the caller says where).
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

/// One record per line; blank lines are skipped.
fn read_ndjson(mut reader: impl BufRead, out: &Out) -> Result<(), Stop> {
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        n += 1;
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io_stop(format!("line {n}"), e))?;
        if read == 0 {
            return Ok(());
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(text) {
            Ok(v) => out.record(v)?,
            Err(e) => out.unreadable(
                format!("line {n}"),
                format!(
                    "invalid JSON at column {}: {}",
                    e.column(),
                    json_message(&e)
                ),
                text,
            )?,
        }
    }
}

/// A top-level array is read element by element (see [`Elements`]); any other top-level
/// value is one record, and a file that is not JSON at all cannot be read.
fn read_json(mut reader: impl BufRead, out: &Out) -> Result<(), Stop> {
    let mut line = 1u64;
    // Find the first byte that is not whitespace, without consuming it.
    let first = loop {
        let buf = reader.fill_buf().map_err(|e| io_stop("line 1", e))?;
        let Some(&b) = buf.first() else {
            return Ok(()); // an empty file holds no records
        };
        if !b.is_ascii_whitespace() {
            break b;
        }
        line += (b == b'\n') as u64;
        reader.consume(1);
    };
    if first != b'[' {
        return match serde_json::from_reader::<_, Value>(reader) {
            Ok(v) => out.record(v),
            Err(e) => Err(Stop::Failed(ReadError {
                at: format!("line {}", line + e.line() as u64 - 1),
                message: format!(
                    "not a JSON array of records nor one JSON object: {} (for one record per line, the format is ndjson)",
                    json_message(&e)
                ),
            })),
        };
    }
    reader.consume(1);
    let mut elements = Elements::new(line);
    loop {
        let buf = reader
            .fill_buf()
            .map_err(|e| io_stop(format!("line {}", elements.line), e))?;
        if buf.is_empty() {
            return elements.end(out);
        }
        let n = buf.len();
        for &b in buf {
            elements.byte(b, out)?;
        }
        reader.consume(n);
    }
}

/// Cuts the inside of a JSON array into its elements without parsing them, so one broken
/// element is reported and the next ones are still read; serde_json parses each element.
///
/// It only tracks strings and bracket nesting. Recovery inside a broken element: a closing
/// bracket closes up to the matching opening one, and a string still open at the end of its
/// line ends the element there (JSON strings hold no raw newline), so a broken element ends
/// where a person would say it does in a file with one record per line or a pretty-printed
/// one.
struct Elements {
    state: Where,
    /// The element being read, and the line it started on.
    buf: Vec<u8>,
    start: u64,
    open: Vec<u8>,
    in_string: bool,
    escaped: bool,
    /// The line the next byte is on.
    line: u64,
    /// What follows the closing bracket, if anything but whitespace.
    trailing: Vec<u8>,
    trailing_line: u64,
}

#[derive(PartialEq)]
enum Where {
    Before,
    In,
    After,
    Closed,
}

impl Elements {
    fn new(line: u64) -> Self {
        Elements {
            state: Where::Before,
            buf: Vec::new(),
            start: line,
            open: Vec::new(),
            in_string: false,
            escaped: false,
            line,
            trailing: Vec::new(),
            trailing_line: 0,
        }
    }

    fn byte(&mut self, b: u8, out: &Out) -> Result<(), Stop> {
        match self.state {
            Where::Before | Where::After if b.is_ascii_whitespace() => {}
            Where::Before | Where::After if b == b']' => self.state = Where::Closed,
            // An extra comma holds no record; a missing one is forgiven.
            Where::Before | Where::After if b == b',' => self.state = Where::Before,
            Where::Before | Where::After => {
                self.state = Where::In;
                self.start = self.line;
                self.inside(b, out)?;
            }
            Where::In => self.inside(b, out)?,
            Where::Closed => {
                if !b.is_ascii_whitespace() && self.trailing.len() <= EXCERPT_BYTES {
                    if self.trailing.is_empty() {
                        self.trailing_line = self.line;
                    }
                    self.trailing.push(b);
                }
            }
        }
        if b == b'\n' {
            self.line += 1;
        }
        Ok(())
    }

    fn inside(&mut self, b: u8, out: &Out) -> Result<(), Stop> {
        if self.in_string {
            match b {
                // No JSON string holds a raw newline: this one is broken, and so is its
                // element, which ends here (the next line starts afresh).
                b'\n' => {
                    self.emit(out)?;
                    self.state = Where::After;
                    return Ok(());
                }
                _ if self.escaped => self.escaped = false,
                b'\\' => self.escaped = true,
                b'"' => self.in_string = false,
                _ => {}
            }
            self.buf.push(b);
            return Ok(());
        }
        match b {
            b',' | b']' if self.open.is_empty() => {
                self.emit(out)?;
                self.state = if b == b']' {
                    Where::Closed
                } else {
                    Where::Before
                };
                return Ok(());
            }
            _ if b.is_ascii_whitespace() && self.open.is_empty() => {
                self.emit(out)?;
                self.state = Where::After;
                return Ok(());
            }
            _ => {}
        }
        self.buf.push(b);
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.open.push(b),
            b'}' | b']' if !self.open.is_empty() => {
                let opening = if b == b'}' { b'{' } else { b'[' };
                while let Some(top) = self.open.pop() {
                    if top == opening {
                        break;
                    }
                }
                if self.open.is_empty() {
                    self.emit(out)?;
                    self.state = Where::After;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The element read so far, parsed.
    fn emit(&mut self, out: &Out) -> Result<(), Stop> {
        let buf = std::mem::take(&mut self.buf);
        self.open.clear();
        self.in_string = false;
        self.escaped = false;
        match serde_json::from_slice::<Value>(&buf) {
            Ok(v) => out.record(v),
            Err(e) => out.unreadable(
                format!("line {}", self.start),
                format!(
                    "invalid JSON (line {} column {}): {}",
                    self.start + e.line() as u64 - 1,
                    e.column(),
                    json_message(&e)
                ),
                &buf,
            ),
        }
    }

    /// The end of the input.
    fn end(mut self, out: &Out) -> Result<(), Stop> {
        if self.state == Where::In {
            if self.open.is_empty() && !self.in_string {
                self.emit(out)?;
            } else {
                let text = std::mem::take(&mut self.buf);
                out.unreadable(
                    format!("line {}", self.start),
                    "the file ends inside this record".into(),
                    &text,
                )?;
            }
        }
        if !self.trailing.is_empty() {
            out.unreadable(
                format!("line {}", self.trailing_line),
                "text after the end of the JSON array".into(),
                &self.trailing,
            )?;
        }
        Ok(())
    }
}

/// Rows as objects keyed by the header row (or `column1`, `column2`, ... without one). A row
/// with another number of fields than the header (or first row), or that is not UTF-8, is
/// unreadable; the rows after it are still read.
fn read_csv(reader: impl BufRead, opts: &CsvOptions, out: &Out) -> Result<(), Stop> {
    let delimiter = opts
        .column_delimiter
        .as_bytes()
        .first()
        .copied()
        .unwrap_or(b',');
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut row = csv::ByteRecord::new();
    let stop = |e: csv::Error, row: &csv::ByteRecord| {
        let at = e
            .position()
            .or(row.position())
            .map(|p| format!("line {}", p.line()))
            .unwrap_or_else(|| "unknown position".into());
        Stop::Failed(ReadError {
            at,
            message: format!("invalid CSV: {e}"),
        })
    };
    let headers: Option<Vec<String>> = if opts.has_header_row {
        if !r.read_byte_record(&mut row).map_err(|e| stop(e, &row))? {
            return Ok(());
        }
        let names = row
            .iter()
            .map(|f| String::from_utf8(f.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                Stop::Failed(ReadError {
                    at: "line 1".into(),
                    message: "the header row is not UTF-8 text".into(),
                })
            })?;
        Some(names)
    } else {
        None
    };
    let mut width = headers.as_ref().map(Vec::len);
    while r.read_byte_record(&mut row).map_err(|e| stop(e, &row))? {
        let line = row.position().map_or(0, |p| p.line());
        let expected = *width.get_or_insert(row.len());
        let problem = if row.len() != expected {
            Some(format!(
                "{} fields, but the {} has {expected}",
                row.len(),
                if headers.is_some() {
                    "header row"
                } else {
                    "first row"
                }
            ))
        } else {
            None
        };
        let fields: Option<Vec<&str>> = row.iter().map(|f| std::str::from_utf8(f).ok()).collect();
        match (problem, fields) {
            (None, Some(fields)) => {
                let mut m = Map::new();
                for (i, field) in fields.into_iter().enumerate() {
                    let name = headers
                        .as_ref()
                        .and_then(|h| h.get(i).cloned())
                        .unwrap_or_else(|| format!("column{}", i + 1));
                    m.insert(name, Value::String(field.to_string()));
                }
                out.record(Value::Object(m))?;
            }
            (problem, _) => {
                let text: Vec<u8> = row.iter().collect::<Vec<_>>().join(&[delimiter][..]);
                let message = problem.unwrap_or_else(|| "not UTF-8 text".into());
                out.unreadable(
                    format!("line {line}"),
                    format!("invalid CSV row: {message}"),
                    &text,
                )?;
            }
        }
    }
    Ok(())
}

/// The format a file is read in: the one given, its compression by the name when it says
/// none; else all by the name ([`format_for_name`]).
pub fn format_of(given: Option<&FileFormat>, name: &str) -> FileFormat {
    match given {
        Some(f) => FileFormat {
            compression_format: f.compression_format.or(compression_for_name(name).0),
            ..f.clone()
        },
        None => format_for_name(name),
    }
}

/// The compression a name ends in (`.gz`, `.zip`), and the name without it.
fn compression_for_name(name: &str) -> (Option<Compression>, &str) {
    let lower = name.to_ascii_lowercase();
    for (suffix, kind) in [(".gz", Compression::Gzip), (".zip", Compression::Zip)] {
        if lower.ends_with(suffix) {
            return (Some(kind), &name[..name.len() - suffix.len()]);
        }
    }
    (None, name)
}

/// The format a file name suggests: `.ndjson`/`.jsonl`, `.csv`, else JSON, compressed when
/// the name ends in `.gz` or `.zip` (`orders.csv.gz`; the files in a zip by the zip's name
/// without `.zip`).
pub fn format_for_name(name: &str) -> FileFormat {
    let (compression, name) = compression_for_name(name);
    let lower = name.to_ascii_lowercase();
    let kind = if lower.ends_with(".ndjson") || lower.ends_with(".jsonl") {
        FileType::Ndjson
    } else if lower.ends_with(".csv") {
        FileType::Csv
    } else {
        FileType::Json
    };
    FileFormat {
        compression_format: compression,
        ..FileFormat::of(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::json;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, ReadBuf};

    async fn collect(bytes: &[u8], kind: FileType) -> Vec<Result<Read, ReadError>> {
        stream_bytes(bytes.to_vec(), &FileFormat::of(kind))
            .collect()
            .await
    }

    /// Records as values, unreadable parts as `{"at": .., "text": ..}`.
    fn items(got: Vec<Result<Read, ReadError>>) -> Vec<Value> {
        got.into_iter()
            .map(|item| match item.expect("no read error") {
                Read::Record(v) => v,
                Read::Unreadable(u) => json!({"at": u.at, "text": u.text}),
            })
            .collect()
    }

    #[tokio::test]
    async fn json_array_and_single_object() {
        let got = collect(
            br#"[{"a":1},{"a":2}, {"a":"x\"]"}, 7, "s", [1,[2]], null]"#,
            FileType::Json,
        )
        .await;
        assert_eq!(
            items(got),
            vec![
                json!({"a":1}),
                json!({"a":2}),
                json!({"a":"x\"]"}),
                json!(7),
                json!("s"),
                json!([1, [2]]),
                Value::Null
            ]
        );
        let one = collect(br#"  {"only": [true, "]"]}"#, FileType::Json).await;
        assert_eq!(items(one), vec![json!({"only": [true, "]"]})]);
        assert!(collect(b"  \n ", FileType::Json).await.is_empty());
        assert!(collect(b"[]", FileType::Json).await.is_empty());
    }

    #[tokio::test]
    async fn a_broken_json_element_is_reported_and_the_elements_after_it_are_read() {
        let file = b"[\n  {\"n\": 1},\n  {\"n\": },\n  {\"n\": [3, 4},\n  {\"n\": \"five},\n  {\"n\": 6}\n]\n";
        let got = items(collect(file, FileType::Json).await);
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], json!({"n": 1}));
        assert_eq!(got[1], json!({"at": "line 3", "text": "{\"n\": }"}));
        assert_eq!(got[2], json!({"at": "line 4", "text": "{\"n\": [3, 4}"}));
        assert_eq!(got[3], json!({"at": "line 5", "text": "{\"n\": \"five},"}));
        assert_eq!(got[4], json!({"n": 6}));
        let cut = items(collect(b"[{\"n\": 1}, {\"n\": 2", FileType::Json).await);
        assert_eq!(cut[1], json!({"at": "line 1", "text": "{\"n\": 2"}));
        let trailing = items(collect(b"[1]\n{\"n\": 2}", FileType::Json).await);
        assert_eq!(
            trailing,
            vec![json!(1), json!({"at": "line 2", "text": "{\"n\":2}"})]
        );
    }

    #[tokio::test]
    async fn a_json_file_that_is_no_array_nor_object_cannot_be_read() {
        let got = collect(b"{\"n\": 1}\n{\"n\": 2}\n", FileType::Json).await;
        let err = got.last().unwrap().as_ref().unwrap_err();
        assert_eq!(err.at, "line 2", "{err}");
        assert!(err.message.contains("ndjson"), "{err}");
    }

    #[tokio::test]
    async fn a_bad_ndjson_line_is_reported_and_the_lines_after_it_are_read() {
        let got = collect(
            b"{\"n\":1}\n\n{\"n\":2}\r\nnot json\n{\"n\":4}",
            FileType::Ndjson,
        )
        .await;
        assert_eq!(
            items(got),
            vec![
                json!({"n": 1}),
                json!({"n": 2}),
                json!({"at": "line 4", "text": "not json"}),
                json!({"n": 4})
            ]
        );
        let bad = collect(b"{\"n\": }\n", FileType::Ndjson).await;
        let Ok(Read::Unreadable(u)) = &bad[0] else {
            panic!("{bad:?}")
        };
        assert_eq!(u.message, "invalid JSON at column 7: expected value");
    }

    #[tokio::test]
    async fn a_byte_order_mark_is_skipped_in_every_format() {
        let bom = |text: &str| [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat();
        let nd = collect(&bom("{\"n\":1}\n{\"n\":2}\n"), FileType::Ndjson).await;
        assert_eq!(items(nd), vec![json!({"n": 1}), json!({"n": 2})]);
        let js = collect(&bom("[{\"n\":1}]"), FileType::Json).await;
        assert_eq!(items(js), vec![json!({"n": 1})]);
        let csv = collect(&bom("id,name\n1,a\n"), FileType::Csv).await;
        assert_eq!(items(csv), vec![json!({"id": "1", "name": "a"})]);
    }

    #[tokio::test]
    async fn csv_header_quotes_delimiter_and_no_header() {
        let got = collect(
            b"id,name\n1,\"Smith, J\"\n2,\"multi\nline\"\n",
            FileType::Csv,
        )
        .await;
        assert_eq!(
            items(got),
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
            ..FileFormat::of(FileType::Csv)
        };
        let values = items(stream_bytes(b"a;b\nc;d\n".to_vec(), &fmt).collect().await);
        assert_eq!(values[1], json!({"column1": "c", "column2": "d"}));
    }

    #[tokio::test]
    async fn a_bad_csv_row_is_reported_and_the_rows_after_it_are_read() {
        let got = items(collect(b"a,b\n1,2\n3\n4,5,6\n\xff,7\n8,9\n", FileType::Csv).await);
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], json!({"a": "1", "b": "2"}));
        assert_eq!(got[1], json!({"at": "line 3", "text": "3"}));
        assert_eq!(got[2], json!({"at": "line 4", "text": "4,5,6"}));
        assert_eq!(got[3]["at"], "line 5");
        assert_eq!(got[4], json!({"a": "8", "b": "9"}));
    }

    #[tokio::test]
    async fn an_unreadable_part_keeps_a_bounded_excerpt() {
        let long = format!("{{\"n\": {}", "9".repeat(5000));
        let got = collect(long.as_bytes(), FileType::Ndjson).await;
        let Ok(Read::Unreadable(u)) = &got[0] else {
            panic!()
        };
        assert_eq!(
            u.text.chars().count(),
            EXCERPT_BYTES + 1,
            "cut, and marked as cut"
        );
    }

    #[tokio::test]
    async fn gzip_and_zip_are_read_decompressed_and_a_zip_names_its_files_in_places() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
        let gzipped = gz.finish().unwrap();
        let format = format_for_name("in.ndjson.gz");
        assert_eq!(
            (format.kind, format.compression_format),
            (FileType::Ndjson, Some(Compression::Gzip))
        );
        let got = stream_bytes(gzipped, &format).collect().await;
        assert_eq!(items(got), vec![json!({"n": 1}), json!({"n": 2})]);

        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("a.csv", options).unwrap();
        zip.write_all(b"id\n1\n").unwrap();
        zip.add_directory("sub/", options).unwrap();
        zip.start_file("sub/b.csv", options).unwrap();
        zip.write_all(b"id\n2\n3,4\n5\n").unwrap();
        let zipped = zip.finish().unwrap().into_inner();
        let format = format_for_name("in.csv.ZIP");
        assert_eq!(format.compression_format, Some(Compression::Zip));
        let got = items(stream_bytes(zipped, &format).collect().await);
        assert_eq!(
            got,
            vec![
                json!({"id": "1"}),
                json!({"id": "2"}),
                json!({"at": "sub/b.csv line 3", "text": "3,4"}),
                json!({"id": "5"})
            ]
        );

        let not_gzip = stream_bytes(b"plain".to_vec(), &format_for_name("x.json.gz"))
            .collect::<Vec<_>>()
            .await;
        assert!(not_gzip[0].is_err(), "{not_gzip:?}");
        let given = FileFormat::of(FileType::Csv);
        assert_eq!(
            format_of(Some(&given), "x.csv.gz").compression_format,
            Some(Compression::Gzip),
            "a format given without a compression takes it from the name"
        );
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
        let mut s = stream_records(Box::pin(src), &FileFormat::of(FileType::Ndjson));
        let mut count = 0;
        let mut last = 0;
        while let Some(r) = s.next().await {
            let Ok(Read::Record(v)) = r else {
                panic!("{r:?}")
            };
            last = v["n"].as_u64().unwrap();
            count += 1;
        }
        assert_eq!((count, last), (total, total as u64 - 1));
    }
}
