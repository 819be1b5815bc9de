//! Filters and transforms of `type: "script"`: integrator.io's per-record script functions,
//! `filter(options)` (true keeps the record) and `transform(options)` (returns the record),
//! each called with `{record, settings}`. All the records of a page go to the engine in one
//! round trip, under one time limit. The other forms (CEL, rules) are dispatched to
//! `crate::filters` and `crate::transform` from here, so each stage has one call per step.

use super::{common_options, HookFailure};
use crate::{Result, Sluice};
use serde_json::{Map, Value};
use sluice_model::{FailureCode, Filter, HookPoint, HookRef, PageRecord, RecordState, Transform};
use std::sync::Arc;

/// Applies `filter` to the active records: ignored when it does not hold, failed with
/// `code` when it cannot be decided. `whose` names it in the reason.
pub(crate) async fn filter_records(
    sluice: &Sluice,
    filter: &Filter,
    (whose, code): (&str, FailureCode),
    settings: Option<&Map<String, Value>>,
    records: &mut [PageRecord],
) -> Result<()> {
    let Filter::Script(hook) = filter else {
        crate::filters::apply(sluice, filter, (whose, code), records.iter_mut());
        return Ok(());
    };
    let point = HookPoint::Filter;
    let answers = call_per_record(sluice, point, hook, settings, records).await?;
    let reason = format!(
        "filtered out by {whose} (script {}, function {})",
        hook.script_id, hook.function
    );
    for (r, answer) in records.iter_mut().filter(|r| r.is_active()).zip(answers) {
        match answer {
            Ok(v) if truthy(&v) => {}
            Ok(_) => {
                r.state = RecordState::Ignored {
                    reason: reason.clone(),
                }
            }
            Err(f) => r.fail(code, f.0),
        }
    }
    Ok(())
}

/// Applies `transform` to the active records; a record it cannot transform fails with
/// `code`, holding the record as it was.
pub(crate) async fn transform_records(
    sluice: &Sluice,
    transform: &Transform,
    code: FailureCode,
    settings: Option<&Map<String, Value>>,
    records: &mut [PageRecord],
) -> Result<()> {
    let Transform::Script(hook) = transform else {
        sluice.transform_records(transform, records.iter_mut());
        return Ok(());
    };
    let point = HookPoint::Transform;
    let answers = call_per_record(sluice, point, hook, settings, records).await?;
    for (r, answer) in records.iter_mut().filter(|r| r.is_active()).zip(answers) {
        match answer {
            Ok(Value::Null) => {
                let why = "returned nothing (undefined or null): return the record";
                r.fail(code, HookFailure::new(point, hook, why).0)
            }
            Ok(v) => r.data = v,
            Err(f) => r.fail(code, f.0),
        }
    }
    Ok(())
}

/// One call per active record with `{record, settings}`, in order.
async fn call_per_record(
    sluice: &Sluice,
    point: HookPoint,
    hook: &HookRef,
    settings: Option<&Map<String, Value>>,
    records: &[PageRecord],
) -> Result<Vec<Result<Value, HookFailure>>> {
    let base = common_options(sluice, settings, None);
    let inputs: Vec<Value> = (records.iter())
        .filter(|r| r.is_active())
        .map(|r| {
            let mut o = base.clone();
            o.insert("record".into(), r.data.clone());
            Value::Object(o)
        })
        .collect();
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    let script = match super::load(sluice, point, hook).await? {
        Ok(s) => s,
        Err(f) => return Ok(vec![Err(f); inputs.len()]),
    };
    let out = sluice
        .caches
        .scripts
        .call_each(Arc::new(script), &hook.function, &inputs)
        .await;
    super::log_lines(point, hook, &out.logs);
    Ok(out
        .results
        .into_iter()
        .map(|r| r.map_err(|e| HookFailure::new(point, hook, e)))
        .collect())
}

/// JavaScript's truth of what the function returned.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn truth_is_javascripts() {
        use serde_json::json;
        for (v, t) in [
            (json!(0), false),
            (json!(""), false),
            (json!(null), false),
            (json!(2), true),
            (json!("x"), true),
            (json!({}), true),
        ] {
            assert_eq!(super::truthy(&v), t, "{v}");
        }
    }
}
