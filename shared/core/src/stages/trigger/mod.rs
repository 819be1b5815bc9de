//! trigger: finds the flows an event concerns, takes the run lock, opens the job, reads the
//! records as a stream and cuts them into pages for translate. Starting and ending runs is
//! [`crate::runs`].

pub mod events;
pub mod http_export;
pub mod readers;
pub mod schedule;

use crate::budget;
use crate::ports::Measurement;
use crate::runs;
use crate::stages::deliver;
use crate::{Error, Result, Sluice, Stage};
use futures::StreamExt;
use serde_json::{json, Value};
use sluice_model::{
    Export, ExportType, FileFormat, FileType, Job, JobError, Page, PageRecord, RecordState, Resume,
    RetryItem, RunOrder, RunSource, StageMessage,
};
use std::collections::BTreeMap;

/// Reads the records of one run order and sends them on as pages. Safe to redeliver: page
/// ids are the same each time, and every later stage is idempotent on them.
/// The trigger stage's entry point for run orders (what its queue carries).
pub const HANDLER: super::StageHandler =
    super::StageHandler::runs(Stage::Trigger, |sluice, order| {
        Box::pin(handle_run(sluice, order))
    });

pub async fn handle_run(sluice: &Sluice, order: RunOrder) -> Result<()> {
    let Some(job) = sluice.store.get_job(&order.job_id).await? else {
        return Err(Error::not_found("Job", &order.job_id));
    };
    if job.status.is_finished() {
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
    let mut cutter = PageCutter {
        sluice,
        order: &order,
        pages: resume.map_or(0, |r| r.pages_cut),
        continued: false,
    };
    let mut failure: Option<(String, Option<String>)> = None;
    for gi in generators {
        // A continuation picks up at the generator it was reading.
        if resume.is_some_and(|r| gi < r.generator_index) {
            continue;
        }
        let export_id = flow.page_generators[gi].export_id.clone();
        let export = match sluice.export(&export_id).await {
            Ok(e) => e,
            Err(e) => {
                failure = Some((e.to_string(), Some(export_id)));
                break;
            }
        };
        let resume_here = resume.filter(|r| r.generator_index == gi);
        if let Err(message) = read_generator(&mut cutter, gi, &export, &job, resume_here).await? {
            failure = Some((message, Some(export.id.clone())));
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
    if let Some((message, export_id)) = failure {
        let error = JobError {
            id: format!("{}-export", order.job_id),
            job_id: order.job_id.clone(),
            flow_id: order.flow_id.clone(),
            processor_index: -1,
            import_id: None,
            export_id,
            page_id: String::new(),
            record_key: String::new(),
            record: Value::Null,
            request: None,
            response: None,
            code: "export".into(),
            message: message.clone(),
            retry_data_key: order.job_id.clone(),
            occurred_at: sluice.clock.now(),
            resolved: false,
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
    let filter = export.filter.as_ref().map(|f| f.expression.clone());
    let mut batch = Batch::new(gi, 0, size, filter);
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
    let sluice = cutter.sluice;
    let size = export.page_size();
    match &cutter.order.source {
        RunSource::Records { records } => {
            for r in records {
                batch.push(cutter, r.clone()).await?;
            }
        }
        RunSource::Retry { items } => {
            let mut by_processor: BTreeMap<usize, Vec<&RetryItem>> = BTreeMap::new();
            for item in items {
                by_processor
                    .entry(item.processor_index)
                    .or_default()
                    .push(item);
            }
            for (processor, items) in by_processor {
                let mut b = Batch::new(gi, processor, size, None);
                for item in items {
                    b.push(cutter, item.record.clone()).await?;
                }
                b.flush(cutter).await?;
            }
        }
        RunSource::StoredRecords { bucket, key } => {
            let ndjson = FileFormat {
                kind: FileType::Ndjson,
                csv: None,
            };
            return read_object(cutter, batch, bucket, key, &ndjson).await;
        }
        RunSource::S3Object { bucket, key } => {
            let format = export
                .file
                .clone()
                .unwrap_or_else(|| readers::format_for_name(key));
            return read_object(cutter, batch, bucket, key, &format).await;
        }
        RunSource::Export => match export.kind {
            ExportType::Http => {
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
                    Some(r) => serde_json::from_value(r.cursor.clone()).map_err(|e| {
                        Error::Internal(anyhow::anyhow!("unreadable paging cursor: {e}"))
                    })?,
                    None => http_export::Cursor::start(export),
                };
                let needed = deliver::time_to_send(&connection);
                let mut pages =
                    http_export::fetch_pages(sluice, export, &connection, window, start);
                while let Some(page) = pages.next().await {
                    match page {
                        Ok((records, cursor)) => {
                            for r in records {
                                batch.push(cutter, r).await?;
                            }
                            if !cursor.is_done() && budget::running_out(needed) {
                                let cursor = serde_json::to_value(&cursor)
                                    .map_err(|e| Error::Internal(e.into()))?;
                                continue_later(cutter, batch, cursor).await?;
                                return Ok(Ok(()));
                            }
                        }
                        Err(e) => return Ok(Err(e.to_string())),
                    }
                }
            }
            ExportType::S3 => {
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
                let todo: Vec<&String> = keys
                    .iter()
                    .filter(|k| k.ends_with(&suffix))
                    .filter(|k| after.is_none_or(|a| k.as_str() > a))
                    .collect();
                for (i, key) in todo.iter().enumerate() {
                    let format = export
                        .file
                        .clone()
                        .unwrap_or_else(|| readers::format_for_name(key));
                    if let Err(e) = read_object(cutter, batch, &bucket, key, &format).await? {
                        return Ok(Err(e));
                    }
                    if i + 1 < todo.len() && budget::running_out(OBJECT_RESERVE) {
                        continue_later(cutter, batch, json!({ "afterKey": key })).await?;
                        return Ok(Ok(()));
                    }
                }
            }
            // Webhook and stream exports have records only when an event brings them.
            ExportType::Webhook | ExportType::Dynamodb => {}
        },
    }
    Ok(Ok(()))
}

async fn read_object(
    cutter: &mut PageCutter<'_>,
    batch: &mut Batch,
    bucket: &str,
    key: &str,
    format: &FileFormat,
) -> Result<Result<(), String>> {
    let Some(reader) = cutter.sluice.blobs.open(bucket, key).await? else {
        return Ok(Err(format!("s3://{bucket}/{key} does not exist")));
    };
    let mut records = readers::stream_records(reader, format);
    while let Some(r) = records.next().await {
        match r {
            Ok(v) => batch.push(cutter, v).await?,
            Err(e) => return Ok(Err(format!("s3://{bucket}/{key}: {e}"))),
        }
    }
    Ok(Ok(()))
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

/// Counts pages across generators and sends them.
struct PageCutter<'a> {
    sluice: &'a Sluice,
    order: &'a RunOrder,
    pages: u64,
    /// This invocation ran short of time and queued a continuation for the rest.
    continued: bool,
}

/// Time kept back when reading the objects under an s3 prefix: another object is started
/// only with more than this left in the invocation.
const OBJECT_RESERVE: std::time::Duration = std::time::Duration::from_secs(30);

/// The invocation is running out of time in a long export (http paging, or many objects
/// under an s3 prefix): the rest is read by a continuation of the run order, queued to the
/// trigger with where reading stands (`cursor`), the page count and the records not yet cut
/// into a page.
async fn continue_later(
    cutter: &mut PageCutter<'_>,
    batch: &mut Batch,
    cursor: Value,
) -> Result<()> {
    let mut order = cutter.order.clone();
    order.resume = Some(Resume {
        generator_index: batch.generator,
        pages_cut: cutter.pages,
        carried: std::mem::take(&mut batch.records),
        cursor,
    });
    tracing::info!(
        pages = cutter.pages,
        "trigger ran short of time; the export continues in the next invocation"
    );
    cutter.sluice.measure(Measurement::Continued {
        flow: order.flow_id.clone(),
        stage: Stage::Trigger,
    });
    cutter
        .sluice
        .queue
        .send(Stage::Trigger, StageMessage::Run(order))
        .await?;
    cutter.continued = true;
    Ok(())
}

/// Records collecting into the next page of one generator.
struct Batch {
    generator: usize,
    processor: usize,
    size: usize,
    filter: Option<String>,
    records: Vec<Value>,
}

impl Batch {
    fn new(generator: usize, processor: usize, size: usize, filter: Option<String>) -> Self {
        Batch {
            generator,
            processor,
            size,
            filter,
            records: Vec::with_capacity(size),
        }
    }

    async fn push(&mut self, cutter: &mut PageCutter<'_>, record: Value) -> Result<()> {
        self.records.push(record);
        if self.records.len() >= self.size {
            self.flush(cutter).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, cutter: &mut PageCutter<'_>) -> Result<()> {
        if self.records.is_empty() {
            return Ok(());
        }
        let index = cutter.pages;
        let page_id = if self.processor == 0 {
            format!("g{}-p{index:06}", self.generator)
        } else {
            format!("g{}-r{}-p{index:06}", self.generator, self.processor)
        };
        let mut records: Vec<PageRecord> = self
            .records
            .drain(..)
            .enumerate()
            .map(|(i, data)| PageRecord::new(format!("{page_id}-r{i:05}"), data))
            .collect();
        if let Some(expr) = &self.filter {
            for r in records.iter_mut() {
                match cutter
                    .sluice
                    .caches
                    .conditions
                    .check(expr, &[("record", &r.data)])
                {
                    Ok(true) => {}
                    Ok(false) => {
                        r.state = RecordState::Ignored {
                            reason: format!("filtered out by the export's filter `{expr}`"),
                        }
                    }
                    Err(e) => r.fail("filter", e),
                }
            }
        }
        let page = Page {
            job_id: cutter.order.job_id.clone(),
            flow_id: cutter.order.flow_id.clone(),
            page_id,
            page_index: index,
            processor_index: self.processor,
            records,
            batch: None,
            file: None,
            records_ref: None,
            trace_id: cutter.order.job_id.clone(),
        };
        cutter
            .sluice
            .queue
            .send(Stage::Translate, StageMessage::Page(page))
            .await?;
        cutter.pages += 1;
        Ok(())
    }
}

/// A job summary for logs and callbacks.
pub fn summary(job: &Job) -> Value {
    json!({
        "_jobId": job.id, "_flowId": job.flow_id, "status": job.status,
        "numSuccess": job.num_success, "numError": job.num_error, "numIgnore": job.num_ignore,
        "numPages": job.num_pages, "startedAt": job.started_at, "endedAt": job.ended_at,
    })
}
