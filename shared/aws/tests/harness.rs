mod common;

use sluice_aws::config::{
    dead_letter_logical_id, function_logical_id, queue_env, queue_logical_id, BUCKET_LOGICAL_ID,
    ENV_BUCKET, ENV_TABLE, TABLE_LOGICAL_ID,
};
use sluice_aws::harness::MAX_RECEIVE_COUNT;
use sluice_core::Stage;
use std::collections::{BTreeMap, HashSet};

const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// Top-level resources of the template: logical id -> type. The template uses CloudFormation
/// tags (!Ref, !GetAtt) that plain YAML parsers reject, and its layout is fixed (two-space
/// indent), so a line scan is enough.
fn template_resources() -> BTreeMap<String, String> {
    let mut resources = BTreeMap::new();
    let mut in_resources = false;
    let mut current: Option<String> = None;
    for line in TEMPLATE.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_resources = line.trim_end() == "Resources:";
            current = None;
            continue;
        }
        if !in_resources {
            continue;
        }
        if let Some(id) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !id.starts_with(' ') && !id.starts_with('#') {
                current = Some(id.to_string());
                continue;
            }
        }
        if let (Some(id), Some(kind)) = (&current, line.strip_prefix("    Type: ")) {
            resources.insert(id.clone(), kind.trim().to_string());
        }
    }
    resources
}

fn of_type(resources: &BTreeMap<String, String>, kind: &str) -> HashSet<String> {
    resources
        .iter()
        .filter(|(_, k)| k.as_str() == kind)
        .map(|(id, _)| id.clone())
        .collect()
}

#[test]
fn template_declares_what_the_code_names() {
    let resources = template_resources();
    assert!(resources.len() > 20, "template parsed: {resources:?}");
    let functions = of_type(&resources, "AWS::Serverless::Function");
    for stage in Stage::ALL {
        assert!(
            functions.contains(&function_logical_id(stage)),
            "{stage:?} function"
        );
        assert!(
            TEMPLATE.contains(&format!(
                "{}: !Ref {}",
                queue_env(stage),
                queue_logical_id(stage)
            )),
            "the functions get {} from the template",
            queue_env(stage)
        );
        assert!(
            TEMPLATE.contains(&format!("Binary: {}", stage.name())),
            "{stage:?} function builds its binary"
        );
    }
    assert!(functions.contains("ApiFunction"));
    assert_eq!(functions.len(), 7, "seven functions");
    assert!(TEMPLATE.contains(&format!("{ENV_TABLE}: !Ref {TABLE_LOGICAL_ID}")));
    assert!(TEMPLATE.contains(&format!("{ENV_BUCKET}: !Ref {BUCKET_LOGICAL_ID}")));
    assert!(TEMPLATE.contains(&format!("maxReceiveCount: {MAX_RECEIVE_COUNT}")));
    assert_eq!(
        TEMPLATE
            .matches("FunctionResponseTypes: [ReportBatchItemFailures]")
            .count(),
        12,
        "every SQS event source (queue and dead-letter queue of 6 stages) reports partial failures"
    );
}

/// The lines of one top-level resource's block.
fn resource_block(id: &str) -> String {
    let start = format!("  {id}:");
    TEMPLATE
        .lines()
        .skip_while(|l| *l != start)
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_dead_letter_queue_and_function_has_an_alarm_to_the_optional_topic() {
    let resources = template_resources();
    let alarms = of_type(&resources, "AWS::CloudWatch::Alarm");
    let mut watched = Vec::new();
    for stage in Stage::ALL {
        let dlq = dead_letter_logical_id(stage);
        watched.push((format!("{dlq}Alarm"), format!("!GetAtt {dlq}.QueueName")));
    }
    let functions = of_type(&resources, "AWS::Serverless::Function");
    for function in &functions {
        watched.push((format!("{function}ErrorsAlarm"), format!("!Ref {function}")));
    }
    assert_eq!(watched.len(), 13);
    for (alarm, target) in &watched {
        assert!(alarms.contains(alarm), "{alarm} declared");
        let block = resource_block(alarm);
        assert!(
            block.contains(&format!("Value: {target}")),
            "{alarm} watches {target}"
        );
        for action in ["AlarmActions", "OKActions"] {
            assert!(
                block.contains(&format!(
                    "{action}: !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]"
                )),
                "{alarm} notifies the topic when one is given"
            );
        }
    }
    assert_eq!(alarms.len(), watched.len(), "no other alarms: {alarms:?}");
    assert!(TEMPLATE.contains("HasAlarmTopic: !Not [!Equals [!Ref AlarmTopicArn, '']]"));
}

#[tokio::test]
async fn harness_creates_everything_the_template_declares() {
    let Some(env) = common::env("harness_creates_everything_the_template_declares").await else {
        return;
    };
    let resources = template_resources();
    let created = env.harness.created().await.unwrap();

    let template_queues = of_type(&resources, "AWS::SQS::Queue");
    let expected: HashSet<String> = Stage::ALL
        .into_iter()
        .flat_map(|s| [queue_logical_id(s), dead_letter_logical_id(s)])
        .collect();
    assert_eq!(template_queues, expected, "template queues are the code's");
    assert_eq!(
        created.queues, template_queues,
        "harness queues are the template's"
    );

    assert_eq!(of_type(&resources, "AWS::DynamoDB::Table"), created.tables);
    let template_buckets: HashSet<String> = of_type(&resources, "AWS::S3::Bucket")
        .into_iter()
        .map(|b| b.to_ascii_lowercase())
        .collect();
    assert_eq!(template_buckets, created.buckets);

    // Each stage queue redrives to its own dead-letter queue after MAX_RECEIVE_COUNT tries.
    let h = &env.harness;
    for stage in Stage::ALL {
        let attrs = h
            .sqs
            .get_queue_attributes()
            .queue_url(&h.settings.queue_urls[&stage])
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        let policy = &attrs[&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy];
        assert!(policy.contains(&dead_letter_logical_id(stage)), "{policy}");
    }
}
