mod common;

use serde_json::json;
use sluice_aws::{decode_message, SqsQueue};
use sluice_core::ports::{Blobs, Queue};
use sluice_core::Stage;
use sluice_model::{Page, PageRecord, StageMessage};
use sluice_testkit::noise;
use std::sync::Arc;

fn page(records: usize, filler: usize) -> Page {
    page_of(records, |_| "x".repeat(filler))
}

fn page_of(records: usize, text: impl Fn(usize) -> String) -> Page {
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
                    json!({"i": i, "text": text(i)}),
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

/// Sends both pages to the deliver queue and receives both bodies.
async fn send_and_receive(env: &common::Env, pages: [&Page; 2]) -> Vec<String> {
    for p in pages {
        env.harness
            .sluice
            .queue
            .send(Stage::Deliver, StageMessage::Page(p.clone()))
            .await
            .unwrap();
    }
    let mut bodies = receive_all(env, Stage::Deliver).await;
    if bodies.len() < 2 {
        bodies.extend(receive_all(env, Stage::Deliver).await);
    }
    bodies
}

#[tokio::test]
async fn small_and_large_pages_round_trip_through_sqs() {
    let Some(env) = common::env("small_and_large_pages_round_trip_through_sqs").await else {
        return;
    };
    let h = &env.harness;
    let small = page(3, 10);
    // ~300 KiB that deflates to more than SQS takes, so it must travel by S3 reference.
    let large = page_of(300, |i| noise(1024, i as u64));
    assert!(serde_json::to_vec(&large).unwrap().len() > 256 * 1024);
    let bodies = send_and_receive(&env, [&small, &large]).await;
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
async fn a_big_page_that_compresses_goes_deflated_in_one_billed_request() {
    let Some(env) =
        common::env("a_big_page_that_compresses_goes_deflated_in_one_billed_request").await
    else {
        return;
    };
    let h = &env.harness;
    // ~150 KiB of JSON (three 64 KB requests as it is), much of it repeated as rendered
    // pages are.
    let big = page_of(220, |i| noise(100, i as u64).repeat(6));
    assert!(serde_json::to_vec(&big).unwrap().len() > 128 * 1024);
    let tiny = page(1, 10);
    let mut bodies = send_and_receive(&env, [&big, &tiny]).await;
    bodies.sort_by_key(String::len);
    assert!(
        bodies[0].starts_with('{') && bodies[0].contains("g0-p000000-r00000"),
        "a small page goes as it is: {}",
        bodies[0]
    );
    assert!(bodies[1].starts_with(r#"{"gzip":"#), "{}", &bodies[1][..40]);
    assert!(
        bodies[1].len() < 64 * 1024,
        "one billed request: {} bytes",
        bodies[1].len()
    );
    let blobs = h.sluice.blobs.as_ref();
    match decode_message(&bodies[1], blobs).await.unwrap() {
        StageMessage::Page(p) => assert_eq!(p, big, "the page comes back intact"),
        other => panic!("expected a page, got {other:?}"),
    }
    let stored = blobs
        .list(&h.settings.system_bucket, "messages/")
        .await
        .unwrap();
    assert!(stored.is_empty(), "nothing went by reference: {stored:?}");
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
