//! evaluate: the import's CEL evaluator judges each record; counts, stores errors, sends the
//! page to the next processor or finishes it; the last page closes the job ([`crate::runs`]).

use super::deliver::bounded;
use super::processor::{replies, Processor};
use crate::ports::{Measurement, PageOutcome};
use crate::runs;
use crate::{Result, Sluice, Stage};
use serde_json::{json, Value};
use sluice_model::{JobError, Page, PageRecord, RecordState, Reply, StageMessage};

/// What evaluate decided for one page at one processor.
#[derive(Debug, Default, PartialEq)]
pub struct Verdicts {
    pub success: u64,
    pub error: u64,
    pub ignore: u64,
    /// Records going on to the next processor.
    pub forward: Vec<PageRecord>,
    pub errors: Vec<JobError>,
}

/// The evaluate stage's entry point (what its Lambda function runs).
pub const HANDLER: super::StageHandler =
    super::StageHandler::pages(Stage::Evaluate, |sluice, page| {
        Box::pin(handle(sluice, page))
    });

pub async fn handle(sluice: &Sluice, mut page: Page) -> Result<()> {
    let flow = sluice.flow(&page.flow_id).await?;
    let processor = if page.processor_index < flow.page_processors.len() {
        Some(Processor::of(sluice, flow, page.processor_index).await?)
    } else {
        None
    };
    // A flow without processors has nothing to judge: its records are successes.
    if let Some(p) = &processor {
        judge(sluice, &mut page, p.evaluator());
        crate::hooks::import::post_submit(sluice, &mut page, p).await?;
        crate::hooks::processor::post_response_map(sluice, &mut page, p).await?;
    }
    let is_last = processor.as_ref().is_none_or(|p| p.is_last());
    let mut v = tally(sluice, &page, processor.as_ref(), is_last);

    if !v.errors.is_empty() {
        sluice.store.put_errors(&v.errors).await?;
    }
    let page_done = v.forward.is_empty();
    if !page_done {
        let next = Page {
            job_id: page.job_id.clone(),
            flow_id: page.flow_id.clone(),
            page_id: page.page_id.clone(),
            page_index: page.page_index,
            processor_index: page.processor_index + 1,
            records: std::mem::take(&mut v.forward),
            batch: None,
            file: None,
            records_ref: None,
            trace_id: page.trace_id.clone(),
        };
        sluice
            .queue
            .send(Stage::Translate, StageMessage::Page(next))
            .await?;
    }
    let now = sluice.clock.now();
    let _ = sluice
        .store
        .renew_lock(&page.flow_id, &page.job_id, now, sluice.settings.lock_lease)
        .await;
    count_page(sluice, &page, &v, page_done).await
}

/// Adds a page's verdicts to its job (once per page and processor) and closes the job when
/// this was its last page.
pub(crate) async fn count_page(
    sluice: &Sluice,
    page: &Page,
    v: &Verdicts,
    page_done: bool,
) -> Result<()> {
    let outcome = PageOutcome {
        job_id: page.job_id.clone(),
        page_id: page.page_id.clone(),
        processor_index: page.processor_index,
        num_success: v.success,
        num_error: v.error,
        num_ignore: v.ignore,
        page_done,
    };
    if let Some(job) = sluice.store.record_outcome(&outcome).await? {
        sluice.measure(Measurement::Records {
            flow: page.flow_id.clone(),
            succeeded: v.success,
            failed: v.error,
            ignored: v.ignore,
        });
        if job.all_pages_done() {
            runs::complete_job(sluice, &job.id).await?;
        }
    }
    Ok(())
}

/// Runs the evaluator over every active record that has a reply.
fn judge(sluice: &Sluice, page: &mut Page, expression: &str) {
    let replies = replies(page);
    for (r, reply) in page
        .records
        .iter_mut()
        .zip(replies)
        .filter(|(r, _)| r.is_active())
    {
        let Some(reply) = reply else {
            r.fail("no_reply", "no reply was recorded for this record");
            continue;
        };
        let doc = reply.as_document();
        let extracted = Value::Object(r.extracted.clone());
        match sluice.caches.conditions.check(
            expression,
            &[
                ("record", &r.data),
                ("response", &doc),
                ("extracted", &extracted),
            ],
        ) {
            Ok(true) => {}
            Ok(false) => r.fail(
                "evaluator",
                format!(
                    "status {}: evaluator `{expression}` is false{}",
                    reply.status,
                    excerpt(&reply)
                ),
            ),
            Err(e) => r.fail("evaluator_error", e),
        }
    }
}

/// The reply's body in an error message: its first 300 characters.
fn excerpt(reply: &Reply) -> String {
    let (text, cut) = reply.body_text(300);
    if text.is_empty() {
        return String::new();
    }
    format!(" (reply: {text}{})", if cut { "…" } else { "" })
}

/// Counts the page's records and builds the errors; active records at the last processor are
/// successes, at an earlier one they go on.
pub(crate) fn tally(
    sluice: &Sluice,
    page: &Page,
    processor: Option<&Processor>,
    is_last: bool,
) -> Verdicts {
    let mut v = Verdicts::default();
    let now = sluice.clock.now();
    for r in &page.records {
        match &r.state {
            RecordState::Ignored { .. } => v.ignore += 1,
            RecordState::Failed { code, message } => {
                v.error += 1;
                let exchange = r.exchange.as_ref().or(page.batch.as_ref());
                v.errors.push(JobError {
                    id: format!("{}-{}-{}", page.job_id, page.processor_index, r.key),
                    job_id: page.job_id.clone(),
                    flow_id: page.flow_id.clone(),
                    processor_index: page.processor_index as i64,
                    import_id: processor.and_then(|p| p.import_id()),
                    export_id: processor.and_then(|p| p.export_id()),
                    step_name: processor.map(|p| p.name().to_string()),
                    page_id: page.page_id.clone(),
                    record_key: r.key.clone(),
                    record: r.flow_data().clone(),
                    request: exchange.map(|e| masked_request(&e.request)),
                    response: exchange
                        .and_then(|e| e.reply.as_ref())
                        .map(|r| bounded::for_error(r, sluice.settings.replies.excerpt_bytes)),
                    code: code.clone(),
                    message: message.clone(),
                    retry_data_key: format!("{}/{}", page.job_id, r.key),
                    occurred_at: now,
                    resolved: false,
                    tags: Vec::new(),
                });
            }
            RecordState::Active if is_last => v.success += 1,
            RecordState::Active => {
                let mut next = PageRecord::new(r.key.clone(), r.flow_data().clone());
                next.state = RecordState::Active;
                v.forward.push(next);
            }
        }
    }
    v
}

/// The request as stored with an error: credentials in headers masked.
fn masked_request(req: &sluice_model::RenderedRequest) -> Value {
    let mut r = req.clone();
    for (name, value) in r.headers.iter_mut() {
        if sluice_model::is_secret_header(name) {
            *value = sluice_model::MASK.into();
        }
    }
    json!(r)
}
