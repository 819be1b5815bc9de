//! Batches: requests that carry several records of a page (`requestMode: page`, up to
//! `http.batchSize` each). Each batch is one send, claimed once in the ledger under its
//! first record's name; its reply is split into each record's own reply: the results array
//! at `http.response.resourcePath`, matched to the batch's records by position or by key
//! (`http.response.matchBy`). A record's reply is the batch reply's status and headers with
//! its result as the body, so the responseMapping and the evaluator read it as they read a
//! record's own reply, and each record succeeds or fails on its own result.
//!
//! Invariants: every record of a batch is settled from the batch's one reply, fresh or
//! recorded in the ledger (a redelivered page sends no batch again, and splits the recorded
//! reply the same way); a batch whose send was cut off leaves every record it carried
//! `delivery_unknown`; the reply is split whole, before it is bounded, so its size never
//! hides a record's result (each record's reply is bounded on its own).

use crate::values::text_of;
use serde_json::Value;
use sluice_model::paths::RecordPath;
use sluice_model::{BatchReplies, FailureCode, ImportResponse, MatchBy, Page, PageRecord, Reply};
use std::collections::HashMap;

/// Splits `reply` over the records of batch `at` and records what it says for each: a
/// reply per record (a record it has no result for fails, saying why), or the whole reply
/// shared by all when it has no per-record results.
pub(crate) fn settle(page: &mut Page, at: usize, reply: Reply, response: Option<&ImportResponse>) {
    let keys = page.batches[at].record_keys.clone();
    let position: HashMap<&str, usize> = page
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.key.as_str(), i))
        .collect();
    let at_page: Vec<usize> = keys
        .iter()
        .filter_map(|k| position.get(k.as_str()).copied())
        .collect();
    drop(position);
    let records: Vec<&PageRecord> = at_page.iter().map(|&i| &page.records[i]).collect();
    let replies = match split(&reply, &records, response) {
        None => BatchReplies::Shared {
            reply: Box::new(reply),
        },
        Some(each) => {
            let mut replies = Vec::with_capacity(each.len());
            for (&i, result) in at_page.iter().zip(each) {
                match result {
                    Ok(own) => replies.push(Some(own)),
                    Err(why) => {
                        page.records[i].fail(FailureCode::NoReply, why);
                        replies.push(None);
                    }
                }
            }
            BatchReplies::PerRecord { replies }
        }
    };
    page.batches[at].replies = Some(replies);
}

/// Each record's reply, in the order of `records`, or `None` when the reply has no
/// per-record results (no `resourcePath`, or no list there: an error page, say).
fn split(
    reply: &Reply,
    records: &[&PageRecord],
    response: Option<&ImportResponse>,
) -> Option<Vec<Result<Reply, String>>> {
    let response = response?;
    let written = response.resource_path.as_deref()?;
    let path = RecordPath::compile(written).ok()?;
    let found = path.get(&reply.body)?;
    let Value::Array(results) = found.as_ref() else {
        return None;
    };
    let own = |result: &Value| Reply {
        body: result.clone(),
        bounded: None,
        ..reply.clone()
    };
    Some(match &response.match_by {
        None if results.len() == records.len() => results.iter().map(|r| Ok(own(r))).collect(),
        None => {
            let why = format!(
                "the reply lists {} results (http.response.resourcePath '{written}') for the {} \
                 records of its request: matched by position they cannot be told apart \
                 (http.response.matchBy matches them by key)",
                results.len(),
                records.len()
            );
            records.iter().map(|_| Err(why.clone())).collect()
        }
        Some(by) => by_key(results, records, by)
            .into_iter()
            .map(|r| r.map(own))
            .collect(),
    })
}

/// Each record's result found by key: the first result whose value at `resultPath` reads
/// as the same text as the record's at `recordPath`.
fn by_key<'r>(
    results: &'r [Value],
    records: &[&PageRecord],
    by: &MatchBy,
) -> Vec<Result<&'r Value, String>> {
    let (Ok(result_path), Ok(record_path)) = (
        RecordPath::compile(&by.result_path),
        RecordPath::compile(&by.record_path),
    ) else {
        // A stored import was validated: its paths compile.
        let why = "http.response.matchBy has a path that does not compile".to_string();
        return records.iter().map(|_| Err(why.clone())).collect();
    };
    let mut index: HashMap<String, &Value> = HashMap::new();
    for result in results {
        if let Some(key) = result_path.get(result) {
            index.entry(text_of(&key)).or_insert(result);
        }
    }
    records
        .iter()
        .map(|r| {
            let key = record_path
                .get(r.flow_data())
                .map(|k| text_of(&k))
                .filter(|k| !k.is_empty())
                .ok_or_else(|| {
                    format!(
                        "the record has no {} to find its result in the reply by",
                        by.record_path
                    )
                })?;
            index.get(&key).copied().ok_or_else(|| {
                format!(
                    "the reply has no result whose {} is '{key}' (this record's {})",
                    by.result_path, by.record_path
                )
            })
        })
        .collect()
}
