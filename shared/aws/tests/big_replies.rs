//! Big replies are kept bounded on DynamoDB (items hold at most 400 KB): a 1 MB and a 10 MB
//! reply are judged and mapped as whole, and their ledger outcomes and stored errors fit.
//! (`tests/tests/big_replies.rs` runs the same on the embedded store.)

mod common;

use serde_json::json;
use sluice_core::ports::{Kind, LedgerState};
use sluice_testkit::big_replies;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mb_and_a_10_mb_reply_are_judged_whole_and_kept_bounded() {
    let Some(env) = common::env("a_1_mb_and_a_10_mb_reply_are_judged_whole_and_kept_bounded").await
    else {
        return;
    };
    let h = &env.harness;
    let store = &h.sluice.store;
    let target = big_replies::target().await;
    let bundle = big_replies::bundle(&target.base_url);
    for (kind, collection) in [
        (Kind::Connection, "connections"),
        (Kind::Export, "exports"),
        (Kind::Import, "imports"),
        (Kind::Flow, "flows"),
    ] {
        for doc in bundle[collection].as_array().unwrap() {
            let id = doc["_id"].as_str().unwrap();
            store.put_definition(kind, id, doc).await.unwrap();
        }
    }
    let job_id = common::start(&h.sluice, "f", big_replies::records()).await;
    let job = h
        .wait_for_job(&job_id, Duration::from_secs(120))
        .await
        .unwrap();
    let errors = store.list_errors(&job_id).await.unwrap();
    let mut ledger = Vec::new();
    for (chunk, send) in big_replies::ledger_sends(&job_id, store.ledger_chunk_size()) {
        let sends = [send];
        let state = store
            .ledger_claim_chunk(&job_id, &chunk, &sends, chrono::Utc::now())
            .await
            .unwrap()
            .remove(0);
        match state {
            LedgerState::Done(outcome) => ledger.push(outcome),
            other => panic!("{chunk} {sends:?}: {other:?}"),
        }
    }
    big_replies::check(&target, &json!(job), &json!(errors), &ledger);
}
