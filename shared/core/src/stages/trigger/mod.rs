//! trigger: finds the flows an event concerns, takes the run lock, opens the job, reads the
//! records as a stream and cuts them into pages for translate. Starting and ending runs is
//! [`crate::runs`].

mod cutter;
pub(crate) use cutter::Shaping;
pub mod events;
pub mod files_read;
pub mod http_export;
pub mod listener;
pub mod readers;
pub mod schedule;

use crate::budget;
use crate::hooks::export::PreSavePage;
use crate::ports::{BlobReader, RemoteFile};
use crate::remote;
use crate::runs;
use crate::stages::deliver;
use crate::{Error, Result, Sluice, Stage};
use cutter::{Batch, PageCutter};
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_model::{
    Export, ExportType, FileFormat, FileType, Job, JobError, Resume, RetryItem, RunOrder,
    RunSource, SourceRecord,
};
use std::collections::BTreeMap;

/// The trigger stage's entry point for run orders (what its queue carries), and for the
/// completed jobs whose picked-up files it deletes or moves ([`files_read`]).
pub const HANDLER: super::StageHandler = super::StageHandler::runs_and_files_read(
    Stage::Trigger,
    |sluice, order| Box::pin(handle_run(sluice, order)),
    |sluice, job| Box::pin(files_read::handle(sluice, job)),
);

/// Reads the records of one run order and sends them on as pages. Safe to redeliver: page
/// ids are the same each time, and every later stage is idempotent on them; a redelivered
/// order that checkpointed (see [`cutter`]) goes on from its last page.
pub async fn handle_run(sluice: &Sluice, order: RunOrder) -> Result<()> {
    let Some(job) = sluice.store.get_job(&order.job_id).await? else {
        return Err(Error::not_found("Job", &order.job_id));
    };
    if job.status.is_finished() {
        return Ok(());
    }
    if job.paging_done {
        // Read whole before (this is a redelivery): only the closing may be left to do.
        if job.all_pages_done() {
            runs::complete_job(sluice, &order.job_id).await?;
        }
        return Ok(());
    }
    let flow = sluice.flow(&order.flow_id).await?;
    let generators: Vec<usize> = match order.generator_index {
        Some(i) => vec![i],
        None => (0..flow.page_generators.len())
            .filter(|&i| {
                order
                    .export_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&flow.page_generators[i].export_id))
            })
            .collect(),
    };
    let resume = order.resume.as_ref();
    let steps = flow.steps();
    let mut cutter = PageCutter {
        sluice,
        order: &order,
        entry: steps.number(steps.entry()),
        first_page_index: job.first_page_index,
        pages: resume.map_or(0, |r| r.pages_cut),
        continued: false,
        canceled: false,
        at: None,
    };
    // Why reading failed, with the export (id and name) it failed at.
    let mut failure: Option<(String, Option<String>, Option<String>)> = None;
    for gi in generators {
        // A continuation picks up at the generator it was reading.
        if resume.is_some_and(|r| gi < r.generator_index) {
            continue;
        }
        let export_id = flow.page_generators[gi].export_id.clone();
        let export = match sluice.export(&export_id).await {
            Ok(e) => e,
            Err(e) => {
                failure = Some((e.to_string(), Some(export_id), None));
                break;
            }
        };
        let resume_here = resume.filter(|r| r.generator_index == gi);
        if resume_here.is_some_and(|r| r.aborted) {
            continue;
        }
        let read = read_generator(&mut cutter, gi, &export, &job, resume_here).await;
        if cutter.canceled {
            // Canceled while reading: nothing more of it is read or sent.
            return Ok(());
        }
        if let Err(message) = read? {
            failure = Some((message, Some(export.id.clone()), Some(export.name.clone())));
            break;
        }
        if cutter.continued {
            // The rest is read by the continuation this invocation queued.
            return Ok(());
        }
    }
    let job = sluice
        .store
        .finish_paging(&order.job_id, cutter.pages)
        .await?;
    if let Some((message, export_id, step_name)) = failure {
        let error = JobError {
            id: format!("{}-export", order.job_id),
            job_id: order.job_id.clone(),
            flow_id: order.flow_id.clone(),
            processor_index: -1,
            import_id: None,
            export_id,
            step_name,
            page_id: String::new(),
            record_key: String::new(),
            record: Value::Null,
            request: None,
            response: None,
            code: sluice_model::FailureCode::Export,
            message: message.clone(),
            retry_data_key: order.job_id.clone(),
            occurred_at: sluice.clock.now(),
            resolved: false,
            tags: Vec::new(),
        };
        sluice.store.put_errors(&[error]).await?;
        runs::fail_job(sluice, &order.job_id, message).await?;
    } else if job.all_pages_done() {
        runs::complete_job(sluice, &order.job_id).await?;
    }
    Ok(())
}

/// Reads one generator's records into pages. The outer Result is infrastructure; the inner
/// Err is why the export could not be read (the job fails with it).
async fn read_generator(
    cutter: &mut PageCutter<'_>,
    gi: usize,
    export: &Export,
    job: &Job,
    resume: Option<&Resume>,
) -> Result<Result<(), String>> {
    let size = export.page_size();
    let hook = PreSavePage::of(cutter.sluice, export, job).await?;
    let mut batch =
        Batch::new(gi, cutter.entry, size, Shaping::of(export)).with_pre_save_page(hook);
    if let Some(r) = resume {
        batch.records.extend(r.carried.iter().cloned());
    }
    let outcome = read_source(cutter, &mut batch, gi, export, job, resume).await?;
    // Whatever was read before a failure still goes on: nothing read is dropped.
    batch.flush(cutter).await?;
    Ok(outcome)
}

async fn read_source(
    cutter: &mut PageCutter<'_>,
    batch: &mut Batch,
    gi: usize,
    export: &Export,
    job: &Job,
    resume: Option<&Resume>,
) -> Result<Result<(), String>> {
    let size = export.page_size();
    let skip = resume.map_or(0, |r| r.skip);
    match &cutter.order.source {
        RunSource::Records { records } => {
            for r in records {
                if batch.aborted() {
                    break;
                }
                batch.push(cutter, r.clone()).await?;
            }
        }
        RunSource::Retry { items } => {
            // Records that failed at a processor re-enter there as they were; records that
            // failed the export's shaping are shaped again.
            let mut by_processor: BTreeMap<(usize, bool), Vec<&RetryItem>> = BTreeMap::new();
            for item in items {
                by_processor
                    .entry((item.processor_index, item.reshape))
                    .or_default()
                    .push(item);
            }
            for ((processor, reshape), items) in by_processor {
                let shaping = if reshape {
                    Shaping::of(export)
                } else {
                    Shaping::default()
                };
                let mut b = Batch::new(gi, processor, size, shaping);
                for item in items {
                    b.push(cutter, item.record.clone()).await?;
                }
                b.flush(cutter).await?;
            }
        }
        RunSource::StoredRecords { bucket, key } => {
            let object = Object {
                bucket,
                key,
                name: format!("s3://{bucket}/{key}"),
                format: FileFormat::of(FileType::Ndjson),
            };
            cutter.reading(Value::Null, skip);
            return read_object(cutter, batch, &object, skip).await;
        }
        RunSource::S3Object { bucket, key } => {
            let noted = [key.clone()];
            runs::pickup::reading(&*cutter.sluice.store, &job.id, &export.id, &noted).await?;
            let object = Object::in_s3(bucket, key, export);
            cutter.reading(Value::Null, skip);
            return read_object(cutter, batch, &object, skip).await;
        }
        RunSource::File {
            bucket,
            key,
            name,
            format,
        } => {
            let object = Object {
                bucket,
                key,
                name: name.clone(),
                format: match format {
                    Some(kind) => FileFormat {
                        csv: export.file.as_ref().and_then(|f| f.csv.clone()),
                        ..readers::format_of(Some(&FileFormat::of(*kind)), name)
                    },
                    None => readers::format_of(export.file.as_ref(), name),
                },
            };
            cutter.reading(Value::Null, skip);
            return read_object(cutter, batch, &object, skip).await;
        }
        RunSource::Export => match export.kind {
            ExportType::Http => return read_http(cutter, batch, export, job, resume).await,
            ExportType::S3 => return read_prefix(cutter, batch, export, job, resume).await,
            ExportType::Ftp => return read_remote(cutter, batch, export, job, resume).await,
            // Webhook and stream exports have records only when an event brings them.
            ExportType::Webhook | ExportType::Dynamodb => {}
        },
    }
    Ok(Ok(()))
}

/// An http export, reply by reply; the place kept is the reply being read.
async fn read_http(
    cutter: &mut PageCutter<'_>,
    batch: &mut Batch,
    export: &Export,
    job: &Job,
    resume: Option<&Resume>,
) -> Result<Result<(), String>> {
    let sluice = cutter.sluice;
    let conn_id = export.connection_id.clone().unwrap_or_default();
    let connection = sluice.connection(&conn_id).await?;
    // A delta export reads from its own watermark; a backfill, the window given.
    let since = match job.delta_exports.get(&export.id) {
        Some(since) => *since,
        None => job.start_date,
    };
    let window = http_export::DeltaWindow {
        last_export_date_time: since,
        current_export_date_time: job.end_date,
    };
    let start = match resume {
        Some(r) => cutter::cursor_of(r)?,
        None => http_export::Cursor::start(export),
    };
    let mut skip = resume.map_or(0, |r| r.skip);
    let needed = deliver::time_to_send(&connection);
    let mut fetched_with = start.clone();
    let mut pages = http_export::fetch_pages(sluice, export, &connection, window, start);
    while let Some(page) = pages.next().await {
        let (records, cursor) = match page {
            Ok(page) => page,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let place = serde_json::to_value(&fetched_with).map_err(|e| Error::Internal(e.into()))?;
        cutter.reading(place, skip);
        for r in records.into_iter().skip(skip as usize) {
            batch.push(cutter, r).await?;
        }
        if batch.aborted() {
            // The preSavePage hook asked to stop: no more replies are fetched.
            return Ok(Ok(()));
        }
        skip = 0;
        if !cursor.is_done() && budget::running_out(needed) {
            let next = serde_json::to_value(&cursor).map_err(|e| Error::Internal(e.into()))?;
            cutter.continue_later(batch, next).await?;
            return Ok(Ok(()));
        }
        fetched_with = cursor;
    }
    Ok(Ok(()))
}

/// Every object under an s3 export's prefix that no completed run of the export read
/// ([`runs::pickup`]), in key order; the place kept is the object being read (the cursor
/// names the last one read whole).
async fn read_prefix(
    cutter: &mut PageCutter<'_>,
    batch: &mut Batch,
    export: &Export,
    job: &Job,
    resume: Option<&Resume>,
) -> Result<Result<(), String>> {
    let sluice = cutter.sluice;
    let (bucket, prefix) = s3_location(sluice, export).await?;
    let mut keys = sluice.blobs.list(&bucket, &prefix).await?;
    // In key order, so a continuation can pick up after the last key it read.
    keys.sort();
    let after = resume.and_then(|r| r.cursor.get("afterKey")?.as_str());
    let suffix = export
        .s3
        .as_ref()
        .and_then(|s| s.suffix.clone())
        .unwrap_or_default();
    let listed: Vec<String> = keys
        .into_iter()
        .filter(|k| k.ends_with(&suffix))
        .filter(|k| after.is_none_or(|a| k.as_str() > a))
        .collect();
    // Only objects no completed run of the export read; noted before they are read, so
    // the job's completion remembers them.
    let todo = runs::pickup::new_files(&*sluice.store, &export.id, listed).await?;
    runs::pickup::reading(&*sluice.store, &job.id, &export.id, &todo).await?;
    let mut skip = resume.map_or(0, |r| r.skip);
    let mut read_whole = after.map(str::to_string);
    for (i, key) in todo.iter().enumerate() {
        let object = Object::in_s3(&bucket, key, export);
        let place = match &read_whole {
            Some(k) => json!({ "afterKey": k }),
            None => json!({}),
        };
        cutter.reading(place, skip);
        if let Err(e) = read_object(cutter, batch, &object, skip).await? {
            return Ok(Err(e));
        }
        if batch.aborted() {
            // The preSavePage hook asked to stop: no more objects are read.
            return Ok(Ok(()));
        }
        skip = 0;
        read_whole = Some(key.to_string());
        if i + 1 < todo.len() && budget::running_out(OBJECT_RESERVE) {
            cutter
                .continue_later(batch, json!({ "afterKey": key }))
                .await?;
            return Ok(Ok(()));
        }
    }
    Ok(Ok(()))
}

/// Every file of an ftp export's directory that its name filters take and no completed run
/// of the export read ([`runs::pickup`], by path, size and modification time), in name
/// order, over whichever protocol its connection speaks ([`remote`]); the place kept is the
/// file being read (the cursor names the last one read whole).
async fn read_remote(
    cutter: &mut PageCutter<'_>,
    batch: &mut Batch,
    export: &Export,
    job: &Job,
    resume: Option<&Resume>,
) -> Result<Result<(), String>> {
    let sluice = cutter.sluice;
    let Some(ftp) = &export.ftp else {
        return Ok(Err("the export has no ftp settings".into()));
    };
    let connection = sluice
        .connection(export.connection_id.as_deref().unwrap_or_default())
        .await?;
    let source = match remote::source_for(sluice, &connection).await {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let listed = match source.list(&ftp.directory_path, &|n| ftp.wants(n)).await {
        Ok(files) => files,
        Err(e) => {
            return Ok(Err(format!(
                "{}: {e:#}",
                remote::shown(&connection, &ftp.directory_path)
            )))
        }
    };
    let after = resume.and_then(|r| r.cursor.get("afterFile")?.as_str());
    let keys: Vec<String> = listed
        .iter()
        .filter(|f| after.is_none_or(|a| f.name.as_str() > a))
        .map(RemoteFile::memory_key)
        .collect();
    let todo = runs::pickup::new_files(&*sluice.store, &export.id, keys).await?;
    runs::pickup::reading(&*sluice.store, &job.id, &export.id, &todo).await?;
    let mut skip = resume.map_or(0, |r| r.skip);
    let mut read_whole = after.map(str::to_string);
    for (i, file) in todo
        .iter()
        .filter_map(|k| RemoteFile::from_memory_key(k))
        .enumerate()
    {
        let name = remote::shown(&connection, &file.path);
        let format = readers::format_of(export.file.as_ref(), &file.name);
        let place = match &read_whole {
            Some(f) => json!({ "afterFile": f }),
            None => json!({}),
        };
        cutter.reading(place, skip);
        let reader = match source.open(&file).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(format!("{name}: {e:#}"))),
        };
        if let Err(e) = read_file(cutter, batch, reader, &name, &format, skip).await? {
            return Ok(Err(e));
        }
        if batch.aborted() {
            return Ok(Ok(()));
        }
        skip = 0;
        read_whole = Some(file.name.clone());
        if i + 1 < todo.len() && budget::running_out(OBJECT_RESERVE) {
            cutter
                .continue_later(batch, json!({ "afterFile": file.name }))
                .await?;
            return Ok(Ok(()));
        }
    }
    Ok(Ok(()))
}

/// A file to read: where it is, what to call it in errors, and its format.
struct Object<'a> {
    bucket: &'a str,
    key: &'a str,
    /// As the user knows it: `s3://bucket/key`, or the path given to `sluice run --records`.
    name: String,
    format: FileFormat,
}

impl<'a> Object<'a> {
    /// An S3 object, in the export's format or else the one its key says.
    fn in_s3(bucket: &'a str, key: &'a str, export: &Export) -> Object<'a> {
        Object {
            bucket,
            key,
            name: format!("s3://{bucket}/{key}"),
            format: readers::format_of(export.file.as_ref(), key),
        }
    }
}

/// Leading unreadable parts held back before the first record: if this many come and no
/// record, the file is taken as unreadable as a whole (wrong format, not text).
const UNREADABLE_BEFORE_ANY_RECORD: usize = 100;

/// Reads one file into the batch, after the `skip` items already in pages. A part that is
/// not a record becomes an error record; a file none of whose first parts is a record (or
/// that cannot be read on) fails the job (the inner Err), saying so.
async fn read_object(
    cutter: &mut PageCutter<'_>,
    batch: &mut Batch,
    object: &Object<'_>,
    skip: u64,
) -> Result<Result<(), String>> {
    let name = object.name.as_str();
    let Some(reader) = cutter.sluice.blobs.open(object.bucket, object.key).await? else {
        return Ok(Err(format!("{name} does not exist")));
    };
    read_file(cutter, batch, reader, name, &object.format, skip).await
}

/// Reads one opened file (called `name` in errors) into the batch; see [`read_object`].
async fn read_file(
    cutter: &mut PageCutter<'_>,
    batch: &mut Batch,
    reader: BlobReader,
    name: &str,
    format: &FileFormat,
    skip: u64,
) -> Result<Result<(), String>> {
    let mut items = readers::stream_records(reader, format).skip(skip as usize);
    // Parts read before any record: held until a record shows the file is readable. Any
    // item already in pages (skip > 0) went on, so a record came before it.
    let mut held: Vec<readers::Unreadable> = Vec::new();
    let mut readable = skip > 0;
    while let Some(item) = items.next().await {
        if batch.aborted() {
            return Ok(Ok(()));
        }
        match item {
            Ok(readers::Read::Record(v)) => {
                readable = true;
                for bad in held.drain(..) {
                    batch.take(cutter, unreadable(name, bad)).await?;
                }
                batch.push(cutter, v).await?;
            }
            Ok(readers::Read::Unreadable(bad)) if readable => {
                batch.take(cutter, unreadable(name, bad)).await?
            }
            Ok(readers::Read::Unreadable(bad)) => {
                held.push(bad);
                if held.len() >= UNREADABLE_BEFORE_ANY_RECORD {
                    return Ok(Err(not_readable(name, format, &held, false)));
                }
            }
            Err(e) => return Ok(Err(format!("{name}: {e}"))),
        }
    }
    if !held.is_empty() {
        return Ok(Err(not_readable(name, format, &held, true)));
    }
    Ok(Ok(()))
}

fn unreadable(name: &str, bad: readers::Unreadable) -> SourceRecord {
    SourceRecord::Unreadable {
        text: bad.text,
        message: format!("{name} {}: {}", bad.at, bad.message),
    }
}

/// Why a file is unreadable as a whole: its first parts, none of them a record.
fn not_readable(
    name: &str,
    format: &FileFormat,
    held: &[readers::Unreadable],
    whole: bool,
) -> String {
    let kind = match format.kind {
        FileType::Json => "JSON",
        FileType::Ndjson => "NDJSON",
        FileType::Csv => "CSV",
        FileType::Template => "a template",
    };
    let first = &held[0];
    format!(
        "{name} cannot be read as {kind}: {} ({} at {}: {}); nothing was read from it (if the file is in another format, say which: --format or the export's file.type)",
        if whole {
            format!("none of its {} parts is a record", held.len())
        } else {
            format!("its first {} parts are not records", held.len())
        },
        if held.len() == 1 { "it is" } else { "the first is" },
        first.at,
        first.message
    )
}

/// The bucket and prefix of an s3 export: its own settings, else its connection's.
pub async fn s3_location(sluice: &Sluice, export: &Export) -> Result<(String, String)> {
    let conn = match &export.connection_id {
        Some(id) => Some(sluice.connection(id).await?),
        None => None,
    };
    let conn_s3 = conn.as_ref().and_then(|c| c.s3.clone());
    let bucket = export
        .s3
        .as_ref()
        .and_then(|s| s.bucket.clone())
        .or_else(|| conn_s3.as_ref().map(|s| s.bucket.clone()))
        .ok_or_else(|| Error::invalid("s3.bucket", "no bucket on the export or its connection"))?;
    let prefix = export
        .s3
        .as_ref()
        .and_then(|s| s.prefix.clone())
        .or_else(|| conn_s3.and_then(|s| s.prefix))
        .unwrap_or_default();
    Ok((bucket, prefix))
}

/// Time kept back when reading the objects under an s3 prefix: another object is started
/// only with more than this left in the invocation.
const OBJECT_RESERVE: std::time::Duration = std::time::Duration::from_secs(30);

/// A job summary for logs and callbacks.
pub fn summary(job: &Job) -> Value {
    json!({
        "_jobId": job.id, "_flowId": job.flow_id, "status": job.status,
        "numSuccess": job.num_success, "numError": job.num_error, "numIgnore": job.num_ignore,
        "numPages": job.num_pages, "startedAt": job.started_at, "endedAt": job.ended_at,
    })
}
