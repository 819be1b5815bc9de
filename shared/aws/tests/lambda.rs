mod common;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use serde_json::json;
use sluice_aws::lambda::{classify, s3_objects, table_changes, TriggerEvent};
use sluice_aws::sqs_stage_handler;
use sluice_core::Stage;

fn message(id: &str, body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.body = Some(body.into());
    m.event_source = Some("aws:sqs".into());
    m
}

#[tokio::test]
async fn partial_batch_failure_lists_exactly_the_failed_messages() {
    let Some(env) = common::env("partial_batch_failure_lists_exactly_the_failed_messages").await
    else {
        return;
    };
    let sluice = &env.harness.sluice;
    // A page of a job whose flow does not exist cannot be translated: an infrastructure-level
    // failure for this message only. The others are not JSON / not messages at all, or fine.
    let unknown_flow = json!({"message": "page", "jobId": "j", "flowId": "missing",
        "pageId": "g0-p000000", "pageIndex": 0, "processorIndex": 0, "records": []});
    let mut event = SqsEvent::default();
    event.records = vec![
        message("m-bad-json", "{not json"),
        message("m-missing-flow", &unknown_flow.to_string()),
        message(
            "m-bad-ref",
            &json!({"messageRef": {"bucket": "systembucket", "key": "nope"}}).to_string(),
        ),
    ];
    let response = sqs_stage_handler(sluice, Stage::Translate.handler(), event).await;
    let mut failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed.sort();
    assert_eq!(failed, vec!["m-bad-json", "m-bad-ref", "m-missing-flow"]);

    // An empty batch reports nothing.
    let response = sqs_stage_handler(sluice, Stage::Translate.handler(), SqsEvent::default()).await;
    assert!(response.batch_item_failures.is_empty());
}

#[test]
fn moto_style_s3_notifications_parse_leniently() {
    // As moto sends it: no userIdentity, requestParameters or responseElements.
    let event = json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T10:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
               "bucket": {"name": "in-bucket", "arn": "arn:aws:s3:::in-bucket"},
               "object": {"key": "drop/my+file%C3%A9.csv", "size": 5}}}]});
    assert_eq!(classify(&event), TriggerEvent::S3);
    let objects = s3_objects(&event);
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].bucket, "in-bucket");
    assert_eq!(objects[0].key, "drop/my fileé.csv");
}

#[test]
fn trigger_events_are_told_apart() {
    let tick = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    assert_eq!(classify(&tick), TriggerEvent::Schedule);
    let sqs = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "1", "body": "{}"}]});
    assert_eq!(classify(&sqs), TriggerEvent::Sqs);
    let stream = json!({"Records": [{"eventSource": "aws:dynamodb", "eventName": "INSERT",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123:table/orders/stream/2026",
        "dynamodb": {"NewImage": {"id": {"S": "o1"}, "n": {"N": "2"}}}}]});
    assert_eq!(classify(&stream), TriggerEvent::Dynamodb);
    let changes = table_changes(&stream);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].table_name, "orders");
    assert_eq!(changes[0].event_name, "INSERT");
    assert_eq!(changes[0].new_image, Some(json!({"id": "o1", "n": 2})));
    assert_eq!(classify(&json!({"hello": 1})), TriggerEvent::Unknown);
}
