//! An export's `preSavePage` hook, in trigger: each page cut from the export's records is
//! given to it before it is saved (sent on), with integrator.io's options, and its answer
//! `{data, errors, abort}` is what the page holds.
//!
//! Counting stays exact. Records carry no identity a script keeps, so the page's active
//! records take the answer's `data` in order: when it returns fewer, the rest stay in the page
//! as ignored; when more, the extra join the page with keys of their own; errors it adds become failed records, and the errors it
//! was given (unreadable input) stay as they were. A hook that throws or answers the wrong
//! shape fails the page's records (a page error), keeping their data for a retry. `abort`
//! stops new pages; the pages already cut, this one included, go on.

use super::import::failure;
use super::{call, common_options, shape};
use crate::{Result, Sluice};
use serde_json::{json, Map, Value};
use sluice_model::{Export, FailureCode, HookPoint, HookRef, Job, PageRecord, RecordState};

/// The preSavePage hook of one export in one job, with the options every page shares.
pub(crate) struct PreSavePage {
    hook: HookRef,
    base: Map<String, Value>,
}

impl PreSavePage {
    /// `None` when the export has no preSavePage hook.
    pub(crate) async fn of(sluice: &Sluice, export: &Export, job: &Job) -> Result<Option<Self>> {
        let Some(hook) = export.hooks.as_ref().and_then(|h| h.pre_save_page.clone()) else {
            return Ok(None);
        };
        let connection = match &export.connection_id {
            Some(id) => Some(sluice.connection(id).await?),
            None => None,
        };
        let mut base = common_options(sluice, export.settings.as_ref(), connection.as_ref());
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            json!(t.map(|t| sluice_model::time::format(&t)))
        };
        base.insert("lastExportDateTime".into(), time(job.start_date));
        base.insert("currentExportDateTime".into(), time(job.end_date));
        base.insert("_exportId".into(), json!(export.id));
        base.insert("_flowId".into(), json!(job.flow_id));
        Ok(Some(PreSavePage { hook, base }))
    }

    /// Gives the page to the hook and applies its answer; true when it asked to abort.
    /// New records get keys `{page_id}-r{n:05}` after the page's own.
    pub(crate) async fn apply(
        &self,
        sluice: &Sluice,
        page_id: &str,
        page_index: u64,
        records: &mut Vec<PageRecord>,
    ) -> Result<bool> {
        let active: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].is_active())
            .collect();
        let given_errors: Vec<Value> = records
            .iter()
            .filter_map(|r| match &r.state {
                RecordState::Failed { code, message } => {
                    Some(json!({"code": code, "message": message}))
                }
                _ => None,
            })
            .collect();
        let mut options = self.base.clone();
        let data = active.iter().map(|&i| records[i].data.clone()).collect();
        options.insert("data".into(), Value::Array(data));
        options.insert("errors".into(), Value::Array(given_errors.clone()));
        options.insert("pageIndex".into(), json!(page_index));
        let point = HookPoint::PreSavePage;
        let answer = call(sluice, point, &self.hook, &Value::Object(options))
            .await?
            .and_then(|a| read_answer(a).map_err(|e| failure(point, &self.hook, e)));
        let (data, errors, abort) = match answer {
            Ok(a) => a,
            Err(f) => {
                for &i in &active {
                    records[i].fail(FailureCode::Script, f.0.clone());
                }
                return Ok(false);
            }
        };
        let mut data = data.into_iter();
        for &i in &active {
            match data.next() {
                Some(d) => records[i].data = d,
                None => {
                    records[i].state = RecordState::Ignored {
                        reason: "dropped by the preSavePage hook".into(),
                    }
                }
            }
        }
        let added = data.map(Ok).chain(
            (errors.into_iter())
                .filter(|e| !given_errors.contains(e))
                .map(Err),
        );
        for item in added {
            let key = format!("{page_id}-r{:05}", records.len());
            let record = match item {
                Ok(d) => PageRecord::new(key, d),
                Err(e) => {
                    let mut r = PageRecord::new(key, e.clone());
                    r.fail(
                        FailureCode::Script,
                        format!("preSavePage hook: {}", shape::error_messages(&e)),
                    );
                    r
                }
            };
            records.push(record);
        }
        Ok(abort)
    }
}

/// `{data: [...], errors?: [...], abort?: bool}`.
fn read_answer(answer: Value) -> Result<(Vec<Value>, Vec<Value>, bool), String> {
    let Value::Object(mut m) = answer else {
        return Err(format!(
            "returned {} where {{data, errors, abort}} was expected",
            shape::kind_of(&answer)
        ));
    };
    let data = match m.remove("data") {
        Some(Value::Array(d)) => d,
        Some(other) => {
            return Err(format!(
                "returned data as {}, not an array of records",
                shape::kind_of(&other)
            ))
        }
        None => return Err("returned no data: return {data, errors, abort}".into()),
    };
    let errors = match m.remove("errors") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(e)) => e,
        Some(other) => vec![other],
    };
    let abort = m.remove("abort").and_then(|a| a.as_bool()).unwrap_or(false);
    Ok((data, errors, abort))
}
