//! Shared by the moto tests: one moto per test binary process is too shared (tests run in
//! parallel), so each test starts its own moto; it is ready in under a second.

#![allow(dead_code)] // each test binary uses a part of this

use serde_json::{json, Value};
use sluice_aws::harness::Harness;
use sluice_core::ports::Kind;
use sluice_core::runs::start_run;
use sluice_core::Sluice;
use sluice_model::{RunKind, RunRequest};
use sluice_testkit::moto::Moto;

pub struct Env {
    pub harness: Harness,
    pub moto: Moto,
}

/// moto plus every resource the template declares; `None` when the test must skip.
pub async fn env(test: &str) -> Option<Env> {
    let moto = Moto::start_or_skip(test)?;
    let harness = Harness::create(&moto.endpoint_url())
        .await
        .expect("harness creates the stack on moto");
    Some(Env { harness, moto })
}

/// Stores connection `c` (the given document), export `e` (the given document), import `i`
/// POSTing each record to `/orders` over `c`, and flow `f` from `e` to `i`.
pub async fn define_flow(sluice: &Sluice, connection: Value, export: Value) {
    let defs = [
        (Kind::Connection, "c", connection),
        (Kind::Export, "e", export),
        (
            Kind::Import,
            "i",
            json!({"_id": "i", "name": "i", "_connectionId": "c", "type": "http", "http": {"relativeURI": "/orders"}}),
        ),
        (
            Kind::Flow,
            "f",
            json!({"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "e"}], "pageProcessors": [{"type": "import", "_importId": "i"}]}),
        ),
    ];
    for (kind, id, doc) in defs {
        sluice.store.put_definition(kind, id, &doc).await.unwrap();
    }
}

/// Starts a manual run of `flow` with `records`; returns the job id.
pub async fn start(sluice: &Sluice, flow: &str, records: Vec<Value>) -> String {
    start_as(sluice, flow, records, RunKind::Manual).await
}

/// Starts a run of `kind` of the idle `flow` with `records`; returns the job id.
pub async fn start_as(sluice: &Sluice, flow: &str, records: Vec<Value>, kind: RunKind) -> String {
    let request = RunRequest {
        records: Some(records),
        ..Default::default()
    };
    start_run(sluice, flow, request, kind)
        .await
        .unwrap()
        .expect("not queued")
        .job_id
}

/// Starts a manual run of `flow` reading its export; returns the job id.
pub async fn start_export(sluice: &Sluice, flow: &str) -> String {
    start_run(sluice, flow, RunRequest::default(), RunKind::Manual)
        .await
        .unwrap()
        .expect("not queued")
        .job_id
}

/// Creates `bucket` and has it notify the trigger queue of every object created, as the
/// template's queue policy allows buckets of s3 exports to.
pub async fn notify_trigger_queue(env: &Env, bucket: &str) {
    use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
    use aws_sdk_sqs::types::QueueAttributeName;
    let h = &env.harness;
    h.s3.create_bucket().bucket(bucket).send().await.unwrap();
    let arn = h
        .sqs
        .get_queue_attributes()
        .queue_url(&h.settings.queue_urls[&sluice_core::Stage::Trigger])
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    h.s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(arn)
                        .events(Event::S3ObjectCreated)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Creates `bucket` with `parts` NDJSON objects `in/part-<i>.ndjson` of three records each,
/// `{"n": 0}` to `{"n": 3 * parts - 1}` in key order, each with `extra`'s fields.
pub async fn put_parts(h: &Harness, bucket: &str, parts: usize, extra: Value) {
    h.s3.create_bucket().bucket(bucket).send().await.unwrap();
    for part in 0..parts {
        let body: String = (0..3)
            .map(|i| {
                let mut record = json!({"n": part * 3 + i});
                record
                    .as_object_mut()
                    .unwrap()
                    .extend(extra.as_object().cloned().unwrap_or_default());
                format!("{record}\n")
            })
            .collect();
        h.s3.put_object()
            .bucket(bucket)
            .key(format!("in/part-{part}.ndjson"))
            .body(body.into_bytes().into())
            .send()
            .await
            .unwrap();
    }
}
