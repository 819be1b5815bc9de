//! A page processor's `postResponseMap` hook, in evaluate: after the responseMapping and the
//! judgment, it gets the records that succeeded as the flow carries them
//! (`postResponseMapData`) with their replies (`responseData`), and what it returns, one
//! object per record, is what the next processor reads.

use super::import::{failure, response_data};
use super::{call, common_options, shape};
use crate::stages::processor::{replies, Processor, Target};
use crate::{Result, Sluice};
use serde_json::Value;
use sluice_model::{FailureCode, HookPoint, Page};

pub(crate) async fn post_response_map(
    sluice: &Sluice,
    page: &mut Page,
    p: &Processor,
) -> Result<()> {
    let hook = p
        .entry
        .hooks
        .as_ref()
        .and_then(|h| h.post_response_map.as_ref());
    let Some(hook) = hook else {
        return Ok(());
    };
    let replies = replies(page);
    let active: Vec<usize> = (0..page.records.len())
        .filter(|&i| page.records[i].is_active())
        .collect();
    if active.is_empty() {
        return Ok(());
    }
    let settings = match &p.target {
        Target::Import(i) => i.settings.as_ref(),
        Target::Lookup(e) => e.settings.as_ref(),
    };
    let mut options = common_options(sluice, settings, Some(&p.connection));
    let data = active.iter().map(|&i| page.records[i].flow_data().clone());
    options.insert("postResponseMapData".into(), Value::Array(data.collect()));
    let responses = active.iter().map(|&i| match &replies[i] {
        Some(reply) => response_data(reply, &page.records[i].state),
        None => Value::Null,
    });
    options.insert("responseData".into(), Value::Array(responses.collect()));
    let point = HookPoint::PostResponseMap;
    let answers = call(sluice, point, hook, &Value::Object(options))
        .await?
        .and_then(|a| shape::one_per_record(a, active.len()).map_err(|e| failure(point, hook, e)));
    for (n, &i) in active.iter().enumerate() {
        let r = &mut page.records[i];
        match &answers {
            Err(f) => r.fail(FailureCode::Script, f.0.clone()),
            Ok(items) => match &items[n] {
                Value::Object(_) => {
                    r.original = None;
                    r.data = items[n].clone();
                }
                other => {
                    let why = format!(
                        "element {n} is {}, not a record object",
                        shape::kind_of(other)
                    );
                    r.fail(FailureCode::Script, failure(point, hook, why).0);
                }
            },
        }
    }
    Ok(())
}
