//! evaluate: the import's CEL evaluator judges each record; counts, stores errors, sends the
//! page to the next processor or finishes it; the last page closes the job ([`crate::runs`]).

use super::deliver::bounded;
use super::processor::{replies, Processor};
use super::routing;
use crate::ports::{Measurement, PageOutcome};
use crate::runs;
use crate::{Result, Sluice, Stage};
use serde_json::{json, Value};
use sluice_model::paths::RecordPath;
use sluice_model::{
    Counting, Exchange, FailureCode, JobError, Page, PageRecord, Position, RecordState, Reply,
    StageMessage,
};

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
    let at = flow.steps().position(page.processor_index);
    let processor = match at {
        Position::Step(i) => Some(Processor::of(sluice, flow.clone(), i).await?),
        _ => None,
    };
    if let Some(p) = &processor {
        evaluate(sluice, &mut page, p).await?;
    }
    // A page at a router is routed; a flow without processors has nothing to judge: its
    // records are successes.
    let next = processor.as_ref().map_or(at, |p| p.next);
    let mut v = tally(sluice, &page, processor.as_ref(), next == Position::End);
    let forward = std::mem::take(&mut v.forward);
    let pages = match next {
        _ if forward.is_empty() => Vec::new(),
        Position::End => Vec::new(),
        Position::Step(t) => vec![page.onward(t, page.page_id.clone(), forward)],
        Position::Router(r) => routing::route(sluice, &flow, r, &page, forward, &mut v).await?,
    };
    if !v.errors.is_empty() {
        sluice.store.put_errors(&v.errors).await?;
    }
    sluice
        .caches
        .lock_renewals
        .renew(sluice, &page.flow_id, &page.job_id)
        .await;
    // Branch pages are counted before they go, so that none can finish before the job
    // knows there are more; one page going on is sent first, as a page was before routers
    // (a send that fails every attempt then leaves its page to the dead letter's count).
    let split = pages.len() > 1;
    if split {
        count_page(sluice, &page, &v, pages.len()).await?;
    }
    for next in pages.iter().cloned() {
        sluice
            .queue
            .send(Stage::Translate, StageMessage::Page(next))
            .await?;
    }
    if split {
        return Ok(());
    }
    count_page(sluice, &page, &v, pages.len()).await
}

/// Adds a page's verdicts to its job (once per page and processor) and closes the job when
/// this was its last page. `pages_after`: how many pages carry its records on (0: the page
/// is done; more than 1: a router split it).
pub(crate) async fn count_page(
    sluice: &Sluice,
    page: &Page,
    v: &Verdicts,
    pages_after: usize,
) -> Result<()> {
    let outcome = PageOutcome {
        job_id: page.job_id.clone(),
        page_id: page.page_id.clone(),
        processor_index: page.processor_index,
        num_success: v.success,
        num_error: v.error,
        num_ignore: v.ignore,
        page_done: pages_after == 0,
        branch_pages: pages_after.saturating_sub(1) as u64,
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

/// The step's judgment of each record on its reply: the evaluator, then the import's
/// postSubmit and the processor's postResponseMap hooks.
pub(crate) async fn evaluate(sluice: &Sluice, page: &mut Page, p: &Processor) -> Result<()> {
    let error_path = p
        .import_response()
        .and_then(|r| r.error_path.as_deref())
        .and_then(|path| RecordPath::compile(path).ok());
    judge(sluice, page, p.evaluator(), error_path.as_ref());
    crate::hooks::import::post_submit(sluice, page, p).await?;
    crate::hooks::processor::post_response_map(sluice, page, p).await
}

/// Judges every active record that has a reply: an error message at the import's
/// `http.response.errorPath` fails it with that message, else the evaluator decides.
fn judge(sluice: &Sluice, page: &mut Page, expression: &str, error_path: Option<&RecordPath>) {
    let replies = replies(page);
    for (r, reply) in page
        .records
        .iter_mut()
        .zip(replies)
        .filter(|(r, _)| r.is_active())
    {
        let Some(reply) = reply else {
            r.fail(
                FailureCode::NoReply,
                "no reply was recorded for this record",
            );
            continue;
        };
        let said = error_path.and_then(|p| p.get(&reply.body));
        if let Some(message) = said.filter(|m| !crate::values::is_empty(m)) {
            r.fail(FailureCode::ReplyError, crate::values::text_of(&message));
            continue;
        }
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
                FailureCode::Evaluator,
                format!(
                    "status {}: evaluator `{expression}` is false{}",
                    reply.status,
                    excerpt(&reply)
                ),
            ),
            Err(e) => r.fail(FailureCode::EvaluatorError, e),
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

/// Counts the page's records (each as its [`Counting`] says) and builds the errors; active
/// records at the last processor are successes, at an earlier one they go on, and so do
/// records that failed at a step with `proceedOnFailure`.
pub(crate) fn tally(
    sluice: &Sluice,
    page: &Page,
    processor: Option<&Processor>,
    is_last: bool,
) -> Verdicts {
    let mut v = Verdicts::default();
    let proceed = !is_last && processor.is_some_and(|p| p.entry.proceed_on_failure);
    let label = processor.map_or_else(StepLabel::default, Processor::label);
    let batches = page.batch_index();
    for r in &page.records {
        match &r.state {
            RecordState::Ignored { .. } => v.count(r.counting, Ended::Ignored),
            RecordState::Failed { code, message } => {
                let batched = batches
                    .get(r.key.as_str())
                    .map(|&b| page.batches[b].exchange_for(&r.key));
                let exchange = r.exchange.as_ref().or(batched.as_ref());
                v.errors
                    .push(job_error(sluice, page, &label, r, exchange, *code, message));
                if proceed && !code.is_source_failure() {
                    let mut next = PageRecord::new(r.key.clone(), r.flow_data().clone());
                    next.counting = r.counting.after_failure();
                    v.forward.push(next);
                } else {
                    v.count(r.counting, Ended::Failed);
                }
            }
            RecordState::Active if is_last => v.count(r.counting, Ended::Succeeded),
            RecordState::Active => {
                let mut next = PageRecord::new(r.key.clone(), r.flow_data().clone());
                next.counting = r.counting;
                v.forward.push(next);
            }
        }
    }
    v
}

/// How a record ended, before its [`Counting`] says how its job counts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Ended {
    Succeeded,
    Failed,
    Ignored,
}

impl Verdicts {
    pub(crate) fn count(&mut self, counting: Counting, ended: Ended) {
        let counter = match (counting, ended) {
            (Counting::NotCounted, _) => return,
            (Counting::AsError, _) | (_, Ended::Failed) => &mut self.error,
            (_, Ended::Succeeded) => &mut self.success,
            (_, Ended::Ignored) => &mut self.ignore,
        };
        *counter += 1;
    }
}

/// Which step an error is stored at, as its `_importId`, `_exportId` and `stepName`.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepLabel {
    pub import_id: Option<String>,
    pub export_id: Option<String>,
    pub name: Option<String>,
}

impl Processor {
    fn label(&self) -> StepLabel {
        StepLabel {
            import_id: self.import_id(),
            export_id: self.export_id(),
            name: Some(self.name().to_string()),
        }
    }
}

/// The stored error of a record that failed at the page's step.
pub(crate) fn job_error(
    sluice: &Sluice,
    page: &Page,
    label: &StepLabel,
    r: &PageRecord,
    exchange: Option<&Exchange>,
    code: FailureCode,
    message: &str,
) -> JobError {
    JobError {
        id: format!("{}-{}-{}", page.job_id, page.processor_index, r.key),
        job_id: page.job_id.clone(),
        flow_id: page.flow_id.clone(),
        processor_index: page.processor_index as i64,
        import_id: label.import_id.clone(),
        export_id: label.export_id.clone(),
        step_name: label.name.clone(),
        page_id: page.page_id.clone(),
        record_key: r.key.clone(),
        record: r.flow_data().clone(),
        request: exchange.map(|e| json!(e.request.masked())),
        response: exchange
            .and_then(|e| e.reply.as_ref())
            .map(|r| bounded::for_error(r, sluice.settings.replies.excerpt_bytes)),
        code,
        message: message.into(),
        retry_data_key: format!("{}/{}", page.job_id, r.key),
        occurred_at: sluice.clock.now(),
        resolved: false,
        tags: Vec::new(),
    }
}
