//! Big replies kept bounded. A reply whose body is larger than the deployment's cap
//! (`Settings::replies.excerpt_bytes`, `SLUICE_REPLY_EXCERPT_BYTES`) is cut down the moment
//! it arrives, before it goes into the ledger or the page, to what the rest of the pipeline
//! needs of it:
//! - the first match of each of the processor's `responseMapping` extracts, run over the
//!   whole reply (`BoundedBody::selected`; extract reads them instead of the body);
//! - the parts of the body its evaluator reads: the member paths under `response.body` in
//!   its CEL program (`ConditionCache::reads`), with the objects and lists on the way;
//! - an excerpt of `excerpt_bytes`, and the body's size;
//! - the whole body in the system bucket, only when the deployment keeps them
//!   (`SLUICE_KEEP_FULL_REPLIES`).
//!
//! Extract and evaluate decide on that exactly as on the whole reply, so a reply's size never
//! changes a record's outcome. An evaluator that reads the whole body (`size(response.body)`)
//! keeps the whole body: that is what it needs. For what can still be big, the stores get
//! bounded forms: a ledger outcome too large for one item is kept in the system bucket, and
//! a stored error keeps the excerpt without parts over the cap.

use crate::conditions::{Reads, Step};
use crate::stages::extract::select;
use crate::stages::processor::Processor;
use crate::{Error, Result, Sluice};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use sluice_model::{BoundedBody, Reply};
use std::collections::BTreeSet;

/// What a processor's extract and evaluate read of its replies.
pub(crate) struct Needs {
    extracts: Vec<String>,
    body: Reads,
    /// Whether a `responseMapping` extract or the evaluator reads the reply's headers (the
    /// hooks see only status and body).
    headers: bool,
}

impl Needs {
    pub fn of(sluice: &Sluice, p: &Processor) -> Needs {
        let extracts: Vec<String> = p
            .mapping()
            .map(|m| m.fields.iter().map(|f| f.extract.clone()).collect())
            .unwrap_or_default();
        let headers = extracts.iter().any(|e| extract_reads_headers(e))
            || evaluator_reads_headers(&sluice.caches.conditions, p.evaluator());
        Needs {
            extracts,
            body: body_reads(sluice, p.evaluator()),
            headers,
        }
    }
}

/// Whether a `responseMapping` extract can select from the headers: anything not plainly
/// under `$.body` or `$.status` (`$..id` descends into them too).
fn extract_reads_headers(extract: &str) -> bool {
    let path = sluice_model::extract_path(extract);
    !["$.body", "$.status"].iter().any(|under| {
        path.strip_prefix(under)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    })
}

fn evaluator_reads_headers(
    conditions: &crate::conditions::ConditionCache,
    evaluator: &str,
) -> bool {
    let Ok(Reads::Paths(paths)) = conditions.reads(evaluator, "response") else {
        return true;
    };
    let headers = Step::Field("headers".into());
    paths.iter().any(|p| p.first() == Some(&headers))
}

/// A reply as the ledger keeps it for a redelivered page: what extract and evaluate read of
/// it, so without its headers unless they are read (on DynamoDB a chunk's outcomes share an
/// item, billed per KB written).
pub(crate) fn for_ledger(needs: &Needs, reply: &Reply) -> Value {
    let mut kept = json!(reply);
    if !needs.headers {
        if let Some(r) = kept.as_object_mut() {
            r.remove("headers");
        }
    }
    kept
}

/// What the evaluator reads of `response.body`. One it cannot compile reads it all (it
/// fails on every record anyway, saying why).
fn body_reads(sluice: &Sluice, evaluator: &str) -> Reads {
    let Ok(Reads::Paths(paths)) = sluice.caches.conditions.reads(evaluator, "response") else {
        return Reads::Whole;
    };
    let body = Step::Field("body".into());
    let mut under: BTreeSet<Vec<Step>> = BTreeSet::new();
    for path in paths {
        match path.split_first() {
            Some((first, [])) if *first == body => return Reads::Whole,
            Some((first, rest)) if *first == body => {
                under.insert(rest.to_vec());
            }
            // `response.status`, `response.headers`: always kept.
            _ => {}
        }
    }
    Reads::Paths(under)
}

/// The reply as it is kept: unchanged when its body is within the cap, else bounded.
/// `key` names it in the blob store when the whole body is kept. It cannot fail: the request
/// went out, and its outcome must reach the ledger (a whole body that cannot be stored is
/// only logged).
pub(crate) async fn bound(sluice: &Sluice, needs: &Needs, key: &str, mut reply: Reply) -> Reply {
    let cap = sluice.settings.replies.excerpt_bytes;
    let size = json_size(&reply.body);
    if size <= cap {
        return reply;
    }
    let body = std::mem::take(&mut reply.body);
    let whole = json!({"status": reply.status, "headers": reply.headers, "body": body});
    // An extract that is not valid JSONPath is left out: extract reports it as it would.
    let selected: Map<String, Value> = needs
        .extracts
        .iter()
        .filter_map(|e| Some((e.clone(), select(&whole, e).ok()?)))
        .collect();
    let Value::Object(mut whole) = whole else {
        unreachable!("built as an object above")
    };
    let body = whole.remove("body").unwrap_or_default();
    let text = match &body {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    let stored_at = match sluice.settings.replies.keep_full {
        true => store_whole(sluice, key, &text).await,
        false => None,
    };
    reply.body = match &needs.body {
        Reads::Whole => body,
        Reads::Paths(paths) => prune(&body, paths),
    };
    reply.bounded = Some(BoundedBody {
        bytes: size as u64,
        excerpt: excerpt(&text, cap),
        selected,
        stored_at,
    });
    reply
}

/// Writes a whole body to the system bucket; where, or `None` (logged) if it could not.
async fn store_whole(sluice: &Sluice, key: &str, text: &[u8]) -> Option<String> {
    let bucket = &sluice.settings.system_bucket;
    let at = format!("replies/{}.body", key.replace(':', "/"));
    match sluice
        .blobs
        .put(bucket, &at, Bytes::copy_from_slice(text))
        .await
    {
        Ok(()) => Some(format!("{bucket}/{at}")),
        Err(e) => {
            tracing::warn!(key, error = %e, "the whole reply body could not be kept");
            None
        }
    }
}

/// The serialized size of a value, without building the text.
fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

/// The first `cap` bytes of `text`, cut at a character boundary.
fn excerpt(text: &[u8], cap: usize) -> String {
    let lossy = String::from_utf8_lossy(&text[..text.len().min(cap + 4)]);
    let mut end = cap.min(lossy.len());
    while !lossy.is_char_boundary(end) {
        end -= 1;
    }
    lossy[..end].to_string()
}

/// `body` with only the values at `paths` (and the objects and lists leading to them; a list
/// keeps its elements up to the last one read, earlier ones null unless read too). A path
/// that does not exist keeps what of it does, so `has(...)` reads the same.
fn prune(body: &Value, paths: &BTreeSet<Vec<Step>>) -> Value {
    let mut kept = Value::Null;
    for path in paths {
        keep(body, path, &mut kept);
    }
    kept
}

/// Copies the value at `path` of `from` into `into`, with the containers on the way.
fn keep(from: &Value, path: &[Step], into: &mut Value) {
    let Some((step, rest)) = path.split_first() else {
        *into = from.clone();
        return;
    };
    match (step, from) {
        (Step::Field(name), Value::Object(fields)) => {
            if !into.is_object() {
                *into = Value::Object(Map::new());
            }
            let Some(next) = fields.get(name) else { return };
            let slot = into
                .as_object_mut()
                .expect("made an object above")
                .entry(name.clone())
                .or_insert(Value::Null);
            keep(next, rest, slot);
        }
        (Step::Index(i), Value::Array(items)) => {
            if !into.is_array() {
                *into = Value::Array(Vec::new());
            }
            let Some(next) = items.get(*i as usize) else {
                return;
            };
            let list = into.as_array_mut().expect("made a list above");
            if list.len() <= *i as usize {
                list.resize(*i as usize + 1, Value::Null);
            }
            keep(next, rest, &mut list[*i as usize]);
        }
        // The path goes on where the body has no such container: reading there is an
        // error, as on the whole body, as long as the kind of value it meets is the same.
        _ => {
            if into.is_null() {
                *into = match from {
                    Value::Object(_) => Value::Object(Map::new()),
                    Value::Array(_) => Value::Array(Vec::new()),
                    Value::String(_) => Value::String(String::new()),
                    scalar => scalar.clone(),
                };
            }
        }
    }
}

/// A reply as a stored error keeps it: bounded replies without the parts kept for extract
/// and evaluate when those are themselves over the cap (the excerpt says what came back).
pub(crate) fn for_error(reply: &Reply, cap: usize) -> Value {
    let mut r = reply.clone();
    if let Some(b) = r.bounded.as_mut() {
        if json_size(&r.body) > cap {
            r.body = Value::Null;
        }
        if json_size(&Value::Object(b.selected.clone())) > cap {
            b.selected.clear();
        }
    }
    json!(r)
}

/// A ledger outcome as it is written: inline when `fits` its size (what is left of one store
/// item, see `ledger::Claim::fits`), else kept in the system bucket, the ledger naming where.
pub(crate) async fn ledger_outcome(
    sluice: &Sluice,
    key: &str,
    outcome: Value,
    fits: impl FnOnce(usize) -> bool,
) -> Result<Value> {
    let text = serde_json::to_vec(&outcome).map_err(|e| Error::Internal(e.into()))?;
    if fits(text.len()) {
        return Ok(outcome);
    }
    let bucket = &sluice.settings.system_bucket;
    let at = format!("ledger/{}.json", key.replace(':', "/"));
    sluice.blobs.put(bucket, &at, Bytes::from(text)).await?;
    Ok(json!({"outcomeAt": {"bucket": bucket, "key": at}}))
}

/// A ledger outcome as it was recorded (read back from the blob store if it was kept there).
pub(crate) async fn recorded_outcome(sluice: &Sluice, v: Value) -> Result<Value> {
    let Some(at) = v.get("outcomeAt") else {
        return Ok(v);
    };
    let (bucket, key) = (
        at["bucket"].as_str().unwrap_or_default(),
        at["key"].as_str().unwrap_or_default(),
    );
    let data = sluice.blobs.get(bucket, key).await?.ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "the ledger's outcome at {bucket}/{key} is missing"
        ))
    })?;
    serde_json::from_slice(&data).map_err(|e| Error::Internal(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::ConditionCache;

    #[test]
    fn the_ledger_keeps_headers_only_where_an_extract_can_read_them() {
        for (extract, reads) in [
            ("id", false),
            ("body.items[0].id", false),
            ("$.body..id", false),
            ("status", false),
            ("headers.location", true),
            ("$.headers['x-id']", true),
            ("$..id", true),
            ("$", true),
        ] {
            assert_eq!(extract_reads_headers(extract), reads, "{extract}");
        }
        let conditions = ConditionCache::default();
        for (evaluator, reads) in [
            ("response.status >= 200 && response.status < 300", false),
            ("response.body.ok == true", false),
            ("response.headers['x-ok'] == 'yes'", true),
            ("size(response) > 0", true),
        ] {
            assert_eq!(
                evaluator_reads_headers(&conditions, evaluator),
                reads,
                "{evaluator}"
            );
        }
    }

    fn reads(evaluator: &str) -> BTreeSet<Vec<Step>> {
        let Reads::Paths(p) = ConditionCache::default()
            .reads(evaluator, "response")
            .unwrap()
        else {
            panic!("reads the whole response")
        };
        p.into_iter()
            .filter_map(|p| p.split_first().map(|(_, rest)| rest.to_vec()))
            .collect()
    }

    /// The evaluator gives the same verdict on the pruned body as on the whole one.
    fn same_verdict(evaluator: &str, body: &Value) {
        let c = ConditionCache::default();
        let doc = |b: &Value| json!({"status": 200, "headers": {}, "body": b});
        let pruned = prune(body, &reads(evaluator));
        assert_eq!(
            c.check(evaluator, &[("response", &doc(body))])
                .is_ok_and(|v| v),
            c.check(evaluator, &[("response", &doc(&pruned))])
                .is_ok_and(|v| v),
            "{evaluator} on {pruned}"
        );
        assert_eq!(
            c.check(evaluator, &[("response", &doc(body))]).is_err(),
            c.check(evaluator, &[("response", &doc(&pruned))]).is_err(),
            "{evaluator} on {pruned}"
        );
    }

    #[test]
    fn a_pruned_body_keeps_what_the_evaluator_reads_and_judges_alike() {
        let body = json!({
            "result": {"ok": true, "id": "x"},
            "items": [{"n": 0}, {"n": 1}, {"n": 2, "tag": "a"}],
            "meta": {"page": 1},
            "padding": "x".repeat(10_000),
        });
        let pruned = prune(
            &body,
            &reads("response.body.result.ok && response.body.items[2].tag == 'a'"),
        );
        assert_eq!(
            pruned,
            json!({"result": {"ok": true}, "items": [null, null, {"tag": "a"}]})
        );
        for evaluator in [
            "response.body.result.ok == true",
            "response.body.items[2].tag == 'a'",
            "has(response.body.meta.next)",
            "!has(response.body.meta.next)",
            "has(response.body.nothing.here)",
            "response.body.items[5].n == 5",
            "response.body.result.ok.x == 1",
            "size(response.body.items) == 3",
            "response.body.items.exists(i, i.n == 2)",
            "response.status == 200",
        ] {
            same_verdict(evaluator, &body);
        }
    }

    #[test]
    fn an_excerpt_is_cut_at_a_character() {
        assert_eq!(excerpt("héllo".as_bytes(), 2), "h");
        assert_eq!(excerpt(b"hello", 3), "hel");
        assert_eq!(excerpt(b"hi", 10), "hi");
    }
}
