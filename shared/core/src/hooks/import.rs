//! An import's hooks: `preMap` and `postMap` in translate (what the import sends), and
//! `postSubmit` in evaluate (what its replies count as).
//!
//! preMap and postMap change what this import renders and sends, not the record the flow
//! carries on: the record as it came in is kept (`PageRecord::original`) for the next
//! processor and for retries.

use super::shape::{self, RecordAnswer};
use super::{call, common_options, HookFailure, SCRIPT_ERROR};
use crate::stages::processor::{replies, Processor, Target};
use crate::{Result, Sluice};
use serde_json::{json, Map, Value};
use sluice_model::{HookPoint, HookRef, Page, PageRecord, RecordState, Reply};

/// The import's hooks, if the processor is an import that has any.
fn hooks_of(p: &Processor) -> Option<&sluice_model::ImportHooks> {
    match &p.target {
        Target::Import(i) => i.hooks.as_ref(),
        Target::Lookup(_) => None,
    }
}

fn options_base(sluice: &Sluice, p: &Processor) -> Map<String, Value> {
    let settings = match &p.target {
        Target::Import(i) => i.settings.as_ref(),
        Target::Lookup(e) => e.settings.as_ref(),
    };
    common_options(sluice, settings, Some(&p.connection))
}

/// preMap, before the mapping: `data` is the page's active records; each `{data}` answer
/// replaces what this import maps and renders (the record as it came is kept).
pub(crate) async fn pre_map(sluice: &Sluice, page: &mut Page, p: &Processor) -> Result<()> {
    let Some(hook) = hooks_of(p).and_then(|h| h.pre_map.as_ref()) else {
        return Ok(());
    };
    let mut options = options_base(sluice, p);
    let data = active(page).map(|(_, r)| r.data.clone()).collect();
    options.insert("data".into(), Value::Array(data));
    let point = HookPoint::PreMap;
    let answers = record_answers(sluice, page, point, hook, options).await?;
    apply_answers(page, point, hook, answers, |r, _, data| r.set_data(data));
    Ok(())
}

/// postMap, after the mapping: `preMapData` (what was mapped) and `postMapData` (what the
/// mapping made, or the record itself without a mapping); each `{data}` answer is what the
/// body is rendered from. `mapped` is the mapping's output by position in the page.
pub(crate) async fn post_map(
    sluice: &Sluice,
    page: &mut Page,
    p: &Processor,
    mapped: &mut Option<Vec<Option<Value>>>,
) -> Result<()> {
    let Some(hook) = hooks_of(p).and_then(|h| h.post_map.as_ref()) else {
        return Ok(());
    };
    let mut options = options_base(sluice, p);
    let pre: Vec<Value> = active(page).map(|(_, r)| r.data.clone()).collect();
    let post = active(page).map(|(i, r)| {
        (mapped.as_ref().and_then(|m| m[i].clone())).unwrap_or_else(|| r.data.clone())
    });
    let post = post.collect();
    options.insert("preMapData".into(), Value::Array(pre));
    options.insert("postMapData".into(), Value::Array(post));
    let point = HookPoint::PostMap;
    let answers = record_answers(sluice, page, point, hook, options).await?;
    let m = mapped.get_or_insert_with(|| vec![None; page.records.len()]);
    apply_answers(page, point, hook, answers, |_, i, data| m[i] = Some(data));
    Ok(())
}

fn active(page: &Page) -> impl Iterator<Item = (usize, &sluice_model::PageRecord)> {
    page.records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_active())
}

/// Calls a preMap/postMap hook and reads its answer: one `{data}`, `{errors}`,
/// `{data, errors}` or `{}` per active record.
async fn record_answers(
    sluice: &Sluice,
    page: &Page,
    point: HookPoint,
    hook: &HookRef,
    options: Map<String, Value>,
) -> Result<Result<Vec<RecordAnswer>, HookFailure>> {
    let given = active(page).count();
    if given == 0 {
        return Ok(Ok(Vec::new()));
    }
    Ok(call(sluice, point, hook, &Value::Object(options))
        .await?
        .and_then(|answer| {
            let items =
                shape::one_per_record(answer, given).map_err(|e| failure(point, hook, e))?;
            (items.into_iter().enumerate())
                .map(|(i, item)| shape::record_answer(item, i).map_err(|e| failure(point, hook, e)))
                .collect()
        }))
}

/// Applies the answers to the active records in order: `keep` takes each `{data}` (with the
/// record's position in the page); `{errors}` fails the record, `{}` ignores it, and an
/// answer that could not be read fails them all.
fn apply_answers(
    page: &mut Page,
    point: HookPoint,
    hook: &HookRef,
    answers: Result<Vec<RecordAnswer>, HookFailure>,
    mut keep: impl FnMut(&mut sluice_model::PageRecord, usize, Value),
) {
    let active = page
        .records
        .iter_mut()
        .enumerate()
        .filter(|(_, r)| r.is_active());
    let answers = match answers {
        Ok(a) => a,
        Err(f) => return active.for_each(|(_, r)| r.fail(SCRIPT_ERROR, f.0.clone())),
    };
    for ((i, r), answer) in active.zip(answers) {
        match answer {
            RecordAnswer::Data(data) => keep(r, i, data),
            RecordAnswer::Errors(message) => r.fail(
                SCRIPT_ERROR,
                format!(
                    "{} hook (script {}, function {}) rejected the record: {message}",
                    point.name(),
                    hook.script_id,
                    hook.function
                ),
            ),
            RecordAnswer::Ignore => {
                r.state = RecordState::Ignored {
                    reason: format!("ignored by the {} hook", point.name()),
                }
            }
        }
    }
}

pub(super) fn failure(
    point: HookPoint,
    hook: &HookRef,
    why: impl std::fmt::Display,
) -> HookFailure {
    HookFailure::new(point, hook, why)
}

/// integrator.io's `responseData` element for one record's reply, as judged.
pub(crate) fn response_data(reply: &Reply, state: &RecordState) -> Value {
    let errors = match state {
        RecordState::Failed { code, message } => json!([{"code": code, "message": message}]),
        _ => json!([]),
    };
    let id = reply
        .body
        .get("_id")
        .or_else(|| reply.body.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "statusCode": reply.status,
        "errors": errors,
        "ignored": matches!(state, RecordState::Ignored { .. }),
        "id": id,
        "_json": reply.body,
    })
}

/// What was sent for the record: its request's JSON body, else the record as this import
/// had it (a page's one request, a body that is not JSON).
fn sent_data(r: &sluice_model::PageRecord) -> Value {
    let body = r.exchange.as_ref().and_then(|e| e.request.body.as_deref());
    body.and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_else(|| r.data.clone())
}

/// The responseMapping over the reply as postSubmit answered it, when the answer changed its
/// `_json` or `statusCode`: integrator.io maps what postSubmit returns, and Sluice mapped the
/// reply as it came (in extract, so that the evaluator can read `extracted`), so what the
/// hook made of it is mapped again. A reply the hook left alone keeps its mapping, and a
/// bounded reply its selections made over the whole body.
fn remap(p: &Processor, reply: &Reply, answer: &Map<String, Value>, r: &mut PageRecord) {
    let Some(mapping) = p.mapping() else { return };
    let body = answer.get("_json").unwrap_or(&reply.body);
    let status = (answer.get("statusCode").and_then(Value::as_u64))
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(reply.status);
    if *body == reply.body && status == reply.status {
        return;
    }
    let answered = Reply {
        status,
        body: body.clone(),
        bounded: None,
        ..reply.clone()
    };
    if let Err(e) = crate::stages::extract::apply_mapping(mapping, &answered, r) {
        r.fail("mapping", format!("after the postSubmit hook: {e}"));
    }
}

/// Whether a record with a reply was part of what was sent: its own request, or (one request
/// per page) a record still active or judged by the evaluator, not one set aside before.
fn was_sent(r: &sluice_model::PageRecord) -> bool {
    r.exchange.is_some()
        || match &r.state {
            RecordState::Active => true,
            RecordState::Failed { code, .. } => code.starts_with("evaluator"),
            RecordState::Ignored { .. } => false,
        }
}

/// postSubmit, after the evaluator judged the replies: every record that was sent (has a
/// reply) is given as `responseData`, and its answer decides: `errors` non-empty fails the
/// record, `ignored: true` ignores it, else it succeeds (a failure can be forgiven). What the
/// answer makes of the reply is what the responseMapping maps ([`remap`]).
pub(crate) async fn post_submit(sluice: &Sluice, page: &mut Page, p: &Processor) -> Result<()> {
    let Some(hook) = hooks_of(p).and_then(|h| h.post_submit.as_ref()) else {
        return Ok(());
    };
    let replies = replies(page);
    let sent: Vec<usize> = (0..page.records.len())
        .filter(|&i| replies[i].is_some() && was_sent(&page.records[i]))
        .collect();
    if sent.is_empty() {
        return Ok(());
    }
    let mut options = options_base(sluice, p);
    let pick = |f: &dyn Fn(usize) -> Value| Value::Array(sent.iter().map(|&i| f(i)).collect());
    options.insert(
        "preMapData".into(),
        pick(&|i| page.records[i].flow_data().clone()),
    );
    options.insert("postMapData".into(), pick(&|i| sent_data(&page.records[i])));
    options.insert(
        "responseData".into(),
        pick(&|i| response_data(replies[i].as_ref().expect("sent"), &page.records[i].state)),
    );
    let point = HookPoint::PostSubmit;
    let answers = call(sluice, point, hook, &Value::Object(options))
        .await?
        .and_then(|a| shape::one_per_record(a, sent.len()).map_err(|e| failure(point, hook, e)));
    for (n, &i) in sent.iter().enumerate() {
        let r = &mut page.records[i];
        let item = match &answers {
            Err(f) => Err(f.0.clone()),
            Ok(items) => match &items[n] {
                Value::Object(m) => Ok(m),
                other => Err(failure(
                    point,
                    hook,
                    format!(
                        "element {n} is {}, not a responseData object",
                        shape::kind_of(other)
                    ),
                )
                .0),
            },
        };
        match item {
            Err(message) => r.fail(SCRIPT_ERROR, message),
            Ok(m) => {
                let errors = m.get("errors").filter(|e| {
                    !matches!(e, Value::Null) && e.as_array().is_none_or(|a| !a.is_empty())
                });
                if let Some(errors) = errors {
                    let was = match &r.state {
                        RecordState::Failed { code, .. } => code.clone(),
                        _ => SCRIPT_ERROR.to_string(),
                    };
                    r.fail(&was, shape::error_messages(errors));
                } else if m.get("ignored").and_then(Value::as_bool) == Some(true) {
                    r.state = RecordState::Ignored {
                        reason: "ignored by the postSubmit hook".into(),
                    };
                } else {
                    r.state = RecordState::Active;
                }
                remap(p, replies[i].as_ref().expect("sent"), m, r);
            }
        }
    }
    Ok(())
}
