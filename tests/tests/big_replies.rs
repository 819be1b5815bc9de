//! Big replies are kept bounded on the embedded store: a 1 MB and a 10 MB reply are judged
//! and mapped as whole, and neither the ledger, the stored errors nor the database file grow
//! with them. (`shared/aws/tests/big_replies.rs` runs the same on DynamoDB.)

use serde_json::json;
use sluice_core::ports::LedgerState;
use sluice_e2e::*;
use sluice_testkit::big_replies;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mb_and_a_10_mb_reply_are_judged_whole_and_kept_bounded() {
    let target = big_replies::target().await;
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::on_disk(dir.path());
    h.load(big_replies::bundle(&target.base_url)).await;
    let job = h.run("f", big_replies::records()).await;
    let errors = h.errors(&job.id).await;
    let store = &h.sluice().store;
    let mut ledger = Vec::new();
    for (chunk, send) in big_replies::ledger_sends(&job.id, store.ledger_chunk_size()) {
        let sends = [send];
        let state = store
            .ledger_claim_chunk(&job.id, &chunk, &sends, chrono::Utc::now())
            .await
            .unwrap()
            .remove(0);
        match state {
            LedgerState::Done(outcome) => ledger.push(outcome),
            other => panic!("{chunk} {sends:?}: {other:?}"),
        }
    }
    big_replies::check(&target, &json!(job), &json!(errors), &ledger);
    // 21 MB of replies went through; the store holds what it needs of them.
    let db: u64 = ["sluice.db", "sluice.db-wal", "queue.db", "queue.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    assert!(db < 4 << 20, "the database files weigh {db} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluator_reading_a_whole_big_list_keeps_it_and_whole_bodies_are_kept_when_asked() {
    let target = big_replies::target().await;
    let mut settings = local_settings();
    settings.replies.keep_full = true;
    let h = Harness::with_settings(settings);
    let mut bundle = big_replies::bundle(&target.base_url);
    bundle["imports"][0]["evaluator"] = json!("size(response.body.items) > 10000");
    h.load(bundle).await;
    let job = h.run("f", vec![json!({"n": 1, "mb": 1, "ok": true})]).await;
    assert_eq!(job.num_success, 1, "{:?}", h.errors(&job.id).await);
    let s = h.sluice();
    let (chunk, send) = big_replies::ledger_sends(&job.id, s.store.ledger_chunk_size()).remove(0);
    let LedgerState::Done(outcome) = s
        .store
        .ledger_claim_chunk(&job.id, &chunk, &[send], chrono::Utc::now())
        .await
        .unwrap()
        .remove(0)
    else {
        panic!("{chunk} is not done")
    };
    // The list the evaluator reads is over a store item's size: the ledger names where it is.
    let at = &outcome["outcomeAt"];
    let kept = s
        .blobs
        .get(at["bucket"].as_str().unwrap(), at["key"].as_str().unwrap())
        .await
        .unwrap()
        .expect("the outcome is in the blob store");
    let outcome: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    assert!(outcome["reply"]["body"]["items"].as_array().unwrap().len() > 10_000);
    // Asked for, the whole body is kept too.
    let stored_at = outcome["reply"]["bounded"]["storedAt"].as_str().unwrap();
    let (bucket, path) = stored_at.split_once('/').unwrap();
    let whole = s.blobs.get(bucket, path).await.unwrap().unwrap();
    assert_eq!(
        whole.len() as u64,
        outcome["reply"]["bounded"]["bytes"].as_u64().unwrap()
    );
}
