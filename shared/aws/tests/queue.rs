mod common;

use serde_json::json;
use sluice_aws::{decode_message, SqsQueue};
use sluice_core::ports::{Blobs, Queue};
use sluice_core::Stage;
use sluice_model::{Page, PageRecord, StageMessage};
use std::sync::Arc;

fn page(records: usize, filler: usize) -> Page {
    Page {
        job_id: "j1".into(),
        flow_id: "f1".into(),
        page_id: "g0-p000000".into(),
        page_index: 0,
        processor_index: 0,
        records: (0..records)
            .map(|i| {
                PageRecord::new(
                    format!("g0-p000000-r{i:05}"),
                    json!({"i": i, "text": "x".repeat(filler)}),
                )
            })
            .collect(),
        batches: Vec::new(),
        file: None,
        records_ref: None,
        trace_id: "t".into(),
    }
}

async fn receive_all(env: &common::Env, stage: Stage) -> Vec<String> {
    let out = env
        .harness
        .sqs
        .receive_message()
        .queue_url(&env.harness.settings.queue_urls[&stage])
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    out.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.body.unwrap())
        .collect()
}

#[tokio::test]
async fn small_and_large_pages_round_trip_through_sqs() {
    let Some(env) = common::env("small_and_large_pages_round_trip_through_sqs").await else {
        return;
    };
    let h = &env.harness;
    let queue = &h.sluice.queue;
    let small = page(3, 10);
    // ~300 KiB: more than SQS takes, so it must travel by S3 reference.
    let large = page(300, 1024);
    assert!(serde_json::to_vec(&large).unwrap().len() > 256 * 1024);
    queue
        .send(Stage::Deliver, StageMessage::Page(small.clone()))
        .await
        .unwrap();
    queue
        .send(Stage::Deliver, StageMessage::Page(large.clone()))
        .await
        .unwrap();

    let mut bodies = receive_all(&env, Stage::Deliver).await;
    if bodies.len() < 2 {
        bodies.extend(receive_all(&env, Stage::Deliver).await);
    }
    assert_eq!(bodies.len(), 2, "both messages arrive on the deliver queue");
    let by_ref: Vec<_> = bodies.iter().filter(|b| b.contains("messageRef")).collect();
    assert_eq!(by_ref.len(), 1, "only the large page travels by reference");
    assert!(by_ref[0].len() < 1024, "the envelope is small");

    let blobs = h.sluice.blobs.as_ref();
    let mut decoded = Vec::new();
    for b in &bodies {
        match decode_message(b, blobs).await.unwrap() {
            StageMessage::Page(p) => decoded.push(p),
            other => panic!("expected a page, got {other:?}"),
        }
    }
    decoded.sort_by_key(|p| p.records.len());
    assert_eq!(decoded, vec![small, large], "pages come back intact");
    let stored = blobs
        .list(&h.settings.system_bucket, "messages/")
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        1,
        "the large page is kept in the system bucket"
    );
}

#[tokio::test]
async fn sending_to_a_stage_without_a_queue_is_an_error() {
    let Some(env) = common::env("sending_to_a_stage_without_a_queue_is_an_error").await else {
        return;
    };
    let h = &env.harness;
    let queue = SqsQueue::new(
        h.sqs.clone(),
        Default::default(),
        Arc::new(sluice_aws::S3Blobs::new(h.s3.clone())) as Arc<dyn Blobs>,
        &h.settings.system_bucket,
        1024,
    );
    let err = queue
        .send(Stage::Upload, StageMessage::Page(page(1, 1)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upload"), "{err}");
}
