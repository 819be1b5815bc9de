//! A DynamoDB stream batch, shaped exactly as Lambda delivers it and built from items read
//! back from a moto table, goes through the trigger function and the whole pipeline on moto.

mod common;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use serde_json::{json, Map, Value};
use sluice_model::JobStatus;
use sluice_testkit::http::TestServer;
use std::collections::HashMap;
use std::time::Duration;

/// DynamoDB's wire JSON for an attribute (`{"S": "x"}`, `{"N": "1"}`, ...), as in stream records.
fn wire(av: &AttributeValue) -> Value {
    match av {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        AttributeValue::Null(_) => json!({"NULL": true}),
        AttributeValue::M(m) => json!({"M": image(m)}),
        AttributeValue::L(l) => json!({"L": l.iter().map(wire).collect::<Vec<_>>()}),
        AttributeValue::Ss(ss) => json!({"SS": ss}),
        AttributeValue::Ns(ns) => json!({"NS": ns}),
        other => panic!("not used in this test: {other:?}"),
    }
}

fn image(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), wire(v)))
            .collect::<Map<_, _>>(),
    )
}

#[tokio::test]
async fn stream_records_run_the_flows_watching_the_table() {
    let Some(env) = common::env("stream_records_run_the_flows_watching_the_table").await else {
        return;
    };
    let h = &env.harness;
    let sink = TestServer::always(201, json!({"id": "x"})).await;
    h.dynamodb
        .create_table()
        .table_name("orders")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    common::define_flow(
        &h.sluice,
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url}}),
        json!({"_id": "e", "name": "e", "type": "dynamodb", "dynamodb": {"tableName": "orders", "eventTypes": ["INSERT"]}, "filter": {"expression": "record.qty > 1"}}),
    )
    .await;

    let mut records = Vec::new();
    for qty in 1..=3 {
        let id = format!("o{qty}");
        h.dynamodb
            .put_item()
            .table_name("orders")
            .item("id", AttributeValue::S(id.clone()))
            .item("qty", AttributeValue::N(qty.to_string()))
            .item(
                "customer",
                AttributeValue::M(HashMap::from([(
                    "name".to_string(),
                    AttributeValue::S(format!("c{qty}")),
                )])),
            )
            .item("tags", AttributeValue::Ss(vec!["a".into()]))
            .send()
            .await
            .unwrap();
        let item = h
            .dynamodb
            .get_item()
            .table_name("orders")
            .key("id", AttributeValue::S(id))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        for event_name in ["INSERT", "MODIFY"] {
            records.push(json!({
                "eventID": format!("{event_name}-{qty}"), "eventName": event_name, "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1", "eventVersion": "1.1",
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-22T00:00:00.000",
                "dynamodb": {"Keys": {"id": {"S": format!("o{qty}")}}, "NewImage": image(&item), "StreamViewType": "NEW_IMAGE", "SequenceNumber": "1", "SizeBytes": 64}
            }));
        }
    }
    let answer = sluice_aws::lambda::trigger_handler(&h.sluice, json!({ "Records": records }))
        .await
        .unwrap();
    let started = answer["started"].as_array().unwrap();
    assert_eq!(started.len(), 1, "one run for the batch: {answer}");
    let job = h
        .wait_for_job(
            started[0]["_jobId"].as_str().unwrap(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(
        (job.num_success, job.num_ignore),
        (2, 1),
        "MODIFY events skipped, qty 1 filtered out: {job:?}"
    );
    let mut bodies: Vec<Value> = sink.received().iter().map(|r| r.json()).collect();
    bodies.sort_by_key(|b| b["id"].as_str().unwrap().to_string());
    assert_eq!(bodies.len(), 2);
    for (b, qty) in bodies.iter().zip([2, 3]) {
        assert_eq!(b["qty"], json!(qty), "numbers arrive as numbers");
        assert_eq!(
            b["customer"]["name"],
            json!(format!("c{qty}")),
            "maps arrive as objects"
        );
        assert_eq!(b["tags"], json!(["a"]));
    }
}
