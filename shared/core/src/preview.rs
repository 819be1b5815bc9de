//! Preview: what each step of a flow would do with sample records, worked out by the stages'
//! own functions on pages that never reach a queue: the trigger's shaping and preSavePage,
//! translate (filter, preMap, mapping, postMap, the request or file), deliver's request
//! building with the credentials masked, extract and evaluate on a sample reply, and the
//! routers.
//!
//! Invariant: nothing is sent (no queue message; deliver's sender only builds the request,
//! and an OAuth2 token is not fetched), nothing is stored (the store is read for the
//! definitions only) and nothing is counted (the stages get a job that exists only here).

use crate::hooks::export::PreSavePage;
use crate::stages::evaluate::{self, Verdicts};
use crate::stages::processor::{Processor, Target};
use crate::stages::translate::{self, Keep};
use crate::stages::trigger::Shaping;
use crate::stages::{deliver, extract, routing};
use crate::{Error, Result, Sluice, Stage};
use serde_json::Value;
use sluice_model::preview::{
    Preview, PreviewOutcome, PreviewRequest, RecordPreview, SampleReply, StepPreview,
};
use sluice_model::{
    FailureCode, Flow, Job, Page, PageRecord, Position, RecordState, RenderedRequest, Reply,
    RunKind,
};
use std::collections::{BTreeMap, HashSet};

/// The job id the previewed pages carry; no job of that id is ever stored.
const PREVIEW_JOB: &str = "preview";

/// Which hooks a preview runs, and why: said in every preview.
pub fn hooks_run() -> &'static str {
    if cfg!(feature = "hooks") {
        "preSavePage, preMap and postMap run, since they shape what would be sent; \
         postSubmit and postResponseMap run on the sample reply, since they judge it. Scripts \
         reach no network, file or process, so running them sends nothing (their console \
         lines go to this process's log)."
    } else {
        "no hooks run: this process is built without the JavaScript engine (on AWS only the \
         trigger, translate and evaluate functions have it), so a step with a hook shows the \
         error its records would get here; `sluice preview` runs them."
    }
}

/// Previews `flow_id` with `request`'s sample records (its first page generator's export
/// shapes them).
pub async fn preview(sluice: &Sluice, flow_id: &str, request: &PreviewRequest) -> Result<Preview> {
    let flow = sluice.flow(flow_id).await?;
    let generator = flow
        .page_generators
        .first()
        .ok_or_else(|| Error::invalid("pageGenerators", "the flow has no page generator"))?;
    let export = sluice.export(&generator.export_id).await?;
    let job = Job::new(
        PREVIEW_JOB.into(),
        flow.id.clone(),
        RunKind::Manual,
        sluice.clock.now(),
    );
    let mut trails = Trails::default();
    let page_id = "preview".to_string();
    let mut records: Vec<PageRecord> = (request.records.iter().take(request.limit()))
        .enumerate()
        .map(|(i, data)| PageRecord::new(format!("{page_id}-r{i:05}"), data.clone()))
        .collect();
    records.iter().for_each(|r| trails.start(&r.key, &r.data));
    Shaping::of(&export).apply(sluice, &mut records).await?;
    if let Some(hook) = PreSavePage::of(sluice, &export, &job).await? {
        hook.apply(sluice, &page_id, 0, &mut records).await?;
    }
    for r in &records {
        let mut view = view("export", None, &export.name, outcome_of(r, false));
        view.record = r.data.clone();
        trails.push(&r.key, view);
    }
    records.retain(PageRecord::is_active);
    let steps = flow.steps();
    let first = Page {
        job_id: PREVIEW_JOB.into(),
        flow_id: flow.id.clone(),
        page_id,
        page_index: 0,
        processor_index: steps.number(steps.entry()),
        records,
        batches: Vec::new(),
        file: None,
        records_ref: None,
        trace_id: PREVIEW_JOB.into(),
    };
    let mut pages = vec![first];
    let sample = request.reply.as_ref();
    while let Some(page) = pages.pop() {
        if !page.records.is_empty() {
            pages.extend(at_position(sluice, &flow, &job, page, sample, &mut trails).await?);
        }
    }
    Ok(Preview {
        flow_id: flow.id.clone(),
        hooks: hooks_run().into(),
        records: trails.0.into_values().collect(),
    })
}

/// One page at its position; returns the pages it goes on as.
async fn at_position(
    sluice: &Sluice,
    flow: &Flow,
    job: &Job,
    page: Page,
    sample: Option<&SampleReply>,
    trails: &mut Trails,
) -> Result<Vec<Page>> {
    match flow.steps().position(page.processor_index) {
        Position::Step(i) => at_step(sluice, flow, job, page, i, sample, trails).await,
        Position::Router(r) => {
            let records = page.records.clone();
            at_router(sluice, flow, r, &page, records, trails).await
        }
        Position::End => {
            // A flow without page processors: what the export hands on succeeds.
            for r in &page.records {
                trails.push(
                    &r.key,
                    view("end", None, &flow.name, PreviewOutcome::Succeeds),
                );
            }
            Ok(Vec::new())
        }
    }
}

async fn at_step(
    sluice: &Sluice,
    flow: &Flow,
    job: &Job,
    mut page: Page,
    index: usize,
    sample: Option<&SampleReply>,
    trails: &mut Trails,
) -> Result<Vec<Page>> {
    let p = Processor::of(sluice, flow.clone(), index).await?;
    let field = flow.steps().step(index).map(|s| s.field.clone());
    let field = field.unwrap_or_default();
    let translated = translate::translate(sluice, &mut page, &p, Some(job), Keep::Mapped).await?;
    let reply = own_sample(&p).or_else(|| sample.map(SampleReply::to_reply));
    let requests = requests_as_they_would_go(sluice, &p, &mut page).await;
    let mut views = Vec::with_capacity(page.records.len());
    for (i, (r, request)) in page.records.iter().zip(requests).enumerate() {
        let mut v = view(&field, Some(index), p.name(), PreviewOutcome::GoesOn);
        v.record = r.data.clone();
        v.mapped = translated.mapped.as_ref().and_then(|m| m[i].clone());
        v.request = request;
        v.file = page.file.clone();
        views.push(v);
    }
    let judged = match (translated.next, &reply) {
        (Stage::Deliver, None) => false,
        (Stage::Deliver, Some(reply)) => {
            give_reply(&mut page, &p, reply);
            extract::extract(&mut page, &p);
            evaluate::evaluate(sluice, &mut page, &p).await?;
            true
        }
        // Nothing to send, or a file (assumed written): judged as evaluate would.
        _ => true,
    };
    let is_last = p.next == Position::End;
    let verdicts = evaluate::tally(sluice, &page, Some(&p), is_last);
    let onward: HashSet<&str> = verdicts.forward.iter().map(|r| r.key.as_str()).collect();
    for (r, mut v) in page.records.iter().zip(views) {
        v.reply = r.exchange.as_ref().and_then(|e| e.reply.clone());
        v.extracted = r.extracted.clone();
        v.outcome = match (judged, &r.state) {
            (false, RecordState::Active) => PreviewOutcome::AwaitsReply,
            _ => outcome_of(r, is_last),
        };
        if let PreviewOutcome::Fails { proceeds, .. } = &mut v.outcome {
            *proceeds = onward.contains(r.key.as_str());
        }
        trails.push(&r.key, v);
    }
    if !judged {
        return Ok(Vec::new());
    }
    let forward = verdicts.forward;
    match p.next {
        Position::Step(t) => Ok(vec![page.onward(t, page.page_id.clone(), forward)]),
        Position::Router(r) => at_router(sluice, flow, r, &page, forward, trails).await,
        Position::End => Ok(Vec::new()),
    }
}

/// Each record's request (or the page's one request) as deliver would send it, masked; a
/// request deliver could not send (a bad URL, say) fails its record as deliver would.
async fn requests_as_they_would_go(
    sluice: &Sluice,
    p: &Processor,
    page: &mut Page,
) -> Vec<Option<RenderedRequest>> {
    let mut batches = Vec::with_capacity(page.batches.len());
    for b in &page.batches {
        batches.push(deliver::as_it_would_go(sluice, p, &b.request).await);
    }
    let mut out = Vec::with_capacity(page.records.len());
    for r in page.records.iter_mut() {
        let own = match (&r.exchange, r.is_active()) {
            (Some(e), true) => Some(deliver::as_it_would_go(sluice, p, &e.request).await),
            _ => None,
        };
        let carried_by = page
            .batches
            .iter()
            .position(|b| b.record_keys.contains(&r.key))
            .filter(|_| r.is_active());
        match own.as_ref().or(carried_by.map(|i| &batches[i])) {
            Some(Ok(request)) => out.push(Some(request.clone())),
            Some(Err(e)) => {
                r.fail(FailureCode::Config, e.clone());
                out.push(None);
            }
            None => out.push(None),
        }
    }
    out
}

/// The import's own `sampleResponse`, if it has one.
fn own_sample(p: &Processor) -> Option<Reply> {
    match &p.target {
        Target::Import(i) => i.sample_response.as_deref().map(SampleReply::to_reply),
        Target::Lookup(_) => None,
    }
}

/// The sample reply as every request's reply, as deliver would record them (a batch's
/// split into its records' results as deliver splits a reply).
fn give_reply(page: &mut Page, p: &Processor, reply: &Reply) {
    deliver::settle_batches(page, p, reply);
    for r in page.records.iter_mut().filter(|r| r.is_active()) {
        if let Some(e) = r.exchange.as_mut() {
            e.reply = Some(reply.clone());
        }
    }
}

/// Routes records through router `r` as evaluate would, and says which branches each took.
async fn at_router(
    sluice: &Sluice,
    flow: &Flow,
    r: usize,
    from: &Page,
    records: Vec<PageRecord>,
    trails: &mut Trails,
) -> Result<Vec<Page>> {
    let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
    let mut verdicts = Verdicts::default();
    let pages = routing::route(sluice, flow, r, from, records, &mut verdicts).await?;
    let steps = flow.steps();
    let router = steps.router(r).map_or("", |r| r.label());
    // Each record's branches, and the copies made of it, from the pages' ids.
    let mut taken: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut copies: Vec<(&str, &str)> = Vec::new();
    for page in &pages {
        let branch = branch_names(flow, &page.page_id[from.page_id.len()..]);
        for rec in &page.records {
            let copy_of = |k: &&String| {
                rec.key
                    .strip_prefix(k.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            };
            let Some(of) = keys.iter().filter(copy_of).max_by_key(|k| k.len()) else {
                continue;
            };
            taken.entry(of).or_default().push(branch.clone());
            if &rec.key != of {
                copies.push((of, &rec.key));
            }
        }
    }
    let field = format!("routers[{r}]");
    let number = steps.number(Position::Router(r));
    for key in &keys {
        let branches = taken.remove(key.as_str()).unwrap_or_default();
        let outcome = match verdicts.errors.iter().find(|e| &e.record_key == key) {
            Some(e) => PreviewOutcome::Fails {
                code: e.code,
                message: e.message.clone(),
                proceeds: false,
            },
            None if branches.is_empty() => PreviewOutcome::Ignored {
                reason: format!("router {router}: no branch with steps takes it"),
            },
            None => PreviewOutcome::GoesOn,
        };
        let mut v = view(&field, Some(number), router, outcome);
        v.branches = branches;
        trails.push(key, v);
    }
    for (of, copy) in copies {
        trails.copy(of, copy);
    }
    Ok(pages)
}

/// `.r0b1.r2b0` as the branches' names: `By region: Europe → router 2: Everyone`.
fn branch_names(flow: &Flow, suffix: &str) -> String {
    let names = suffix.split('.').filter(|s| !s.is_empty()).map(|seg| {
        let (r, b) = seg
            .strip_prefix('r')
            .and_then(|s| s.split_once('b'))
            .and_then(|(r, b)| Some((r.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .unwrap_or_default();
        match flow.routers.get(r) {
            Some(router) => {
                let branch = router.branches.get(b).map_or("", |b| b.name.as_str());
                format!("{}: {branch}", router.label())
            }
            None => seg.to_string(),
        }
    });
    names.collect::<Vec<_>>().join(" → ")
}

/// A step's view with nothing filled in but where it is and how the record leaves it.
fn view(step: &str, processor_index: Option<usize>, name: &str, o: PreviewOutcome) -> StepPreview {
    StepPreview {
        step: step.into(),
        processor_index,
        name: name.into(),
        record: Value::Null,
        mapped: None,
        request: None,
        file: None,
        reply: None,
        extracted: Default::default(),
        branches: Vec::new(),
        outcome: o,
    }
}

/// How a record leaves a step, from its state there.
fn outcome_of(r: &PageRecord, is_last: bool) -> PreviewOutcome {
    match &r.state {
        RecordState::Active if is_last => PreviewOutcome::Succeeds,
        RecordState::Active => PreviewOutcome::GoesOn,
        RecordState::Ignored { reason } => PreviewOutcome::Ignored {
            reason: reason.clone(),
        },
        RecordState::Failed { code, message } => PreviewOutcome::Fails {
            code: *code,
            message: message.clone(),
            proceeds: false,
        },
    }
}

/// Each record's steps so far, by key (copies sort after the record they were made of).
#[derive(Default)]
struct Trails(BTreeMap<String, RecordPreview>);

impl Trails {
    fn start(&mut self, key: &str, input: &Value) {
        let trail = RecordPreview {
            key: key.into(),
            input: input.clone(),
            steps: Vec::new(),
        };
        self.0.insert(key.into(), trail);
    }

    /// A record a hook added has no sample of its own.
    fn push(&mut self, key: &str, step: StepPreview) {
        if !self.0.contains_key(key) {
            self.start(key, &Value::Null);
        }
        if let Some(t) = self.0.get_mut(key) {
            t.steps.push(step);
        }
    }

    /// A copy of record `of` on a further branch: its own trail from here, with `of`'s so far.
    fn copy(&mut self, of: &str, copy: &str) {
        if let Some(t) = self.0.get(of).cloned() {
            self.0.insert(
                copy.into(),
                RecordPreview {
                    key: copy.into(),
                    ..t
                },
            );
        }
    }
}
