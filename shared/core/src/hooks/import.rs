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
use sluice_model::{HookPoint, HookRef, Page, RecordState, Reply};

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

/// Runs preMap, then postMap, over the page's active records, before they are rendered.
/// (Until imports have mappings, what postMap sees as `postMapData` is preMap's data.)
pub(crate) async fn before_render(sluice: &Sluice, page: &mut Page, p: &Processor) -> Result<()> {
    let Some(hooks) = hooks_of(p) else {
        return Ok(());
    };
    if let Some(hook) = &hooks.pre_map {
        let data = active_data(page);
        let mut options = options_base(sluice, p);
        options.insert("data".into(), Value::Array(data));
        run_record_hook(sluice, page, HookPoint::PreMap, hook, options).await?;
    }
    if let Some(hook) = &hooks.post_map {
        let pre_map_data: Vec<Value> = (page.records.iter())
            .filter(|r| r.is_active())
            .map(|r| r.flow_data().clone())
            .collect();
        let mut options = options_base(sluice, p);
        options.insert("preMapData".into(), Value::Array(pre_map_data));
        options.insert("postMapData".into(), Value::Array(active_data(page)));
        run_record_hook(sluice, page, HookPoint::PostMap, hook, options).await?;
    }
    Ok(())
}

fn active_data(page: &Page) -> Vec<Value> {
    (page.records.iter())
        .filter(|r| r.is_active())
        .map(|r| r.data.clone())
        .collect()
}

/// Calls a preMap/postMap hook with the page's active records and applies its answer:
/// one `{data}`, `{errors}`, `{data, errors}` or `{}` per record.
async fn run_record_hook(
    sluice: &Sluice,
    page: &mut Page,
    point: HookPoint,
    hook: &HookRef,
    options: Map<String, Value>,
) -> Result<()> {
    let given = page.records.iter().filter(|r| r.is_active()).count();
    if given == 0 {
        return Ok(());
    }
    let answers = call(sluice, point, hook, &Value::Object(options))
        .await?
        .and_then(|answer| {
            let items =
                shape::one_per_record(answer, given).map_err(|e| failure(point, hook, e))?;
            (items.into_iter().enumerate())
                .map(|(i, item)| shape::record_answer(item, i).map_err(|e| failure(point, hook, e)))
                .collect::<Result<Vec<_>, _>>()
        });
    let active = page.records.iter_mut().filter(|r| r.is_active());
    match answers {
        Err(f) => active.for_each(|r| r.fail(SCRIPT_ERROR, f.0.clone())),
        Ok(answers) => {
            for (r, answer) in active.zip(answers) {
                match answer {
                    RecordAnswer::Data(data) => r.set_data(data),
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
    }
    Ok(())
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
/// record, `ignored: true` ignores it, else it succeeds (a failure can be forgiven).
pub(crate) async fn after_submit(sluice: &Sluice, page: &mut Page, p: &Processor) -> Result<()> {
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
    options.insert(
        "postMapData".into(),
        pick(&|i| page.records[i].data.clone()),
    );
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
            }
        }
    }
    Ok(())
}
