//! Watermarks on moto: kept per export in the table, moved only by a completed delta run of
//! that export, through the real handlers.

mod common;

use serde_json::json;
use sluice_core::ports::Kind;
use sluice_core::runs::{start_run, watermark};
use sluice_model::{JobStatus, RunKind, RunRequest};
use sluice_testkit::http::{Answer, TestServer};
use std::time::Duration;

#[tokio::test]
async fn a_delta_run_moves_its_exports_watermark_and_a_run_fed_with_records_does_not() {
    let Some(env) = common::env("a_delta_run_moves_its_exports_watermark").await else {
        return;
    };
    let h = &env.harness;
    let source = TestServer::start(|_, _| Answer::json(200, json!({"items": [{"id": 1}]}))).await;
    let sink = TestServer::always(200, json!({})).await;
    let export = |id: &str| {
        json!({"_id": id, "name": id, "type": "http", "_connectionId": "src",
               "http": {"relativeURI": format!("/{id}?since={{{{urlencode lastExportDateTime}}}}"), "resourcePath": "items"}})
    };
    let defs = [
        (
            Kind::Connection,
            "src",
            json!({"_id": "src", "name": "src", "type": "http", "http": {"baseURI": source.base_url}}),
        ),
        (
            Kind::Connection,
            "c",
            json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url}}),
        ),
        (Kind::Export, "e1", export("e1")),
        (Kind::Export, "e2", export("e2")),
        (
            Kind::Import,
            "i",
            json!({"_id": "i", "name": "i", "_connectionId": "c", "type": "http", "http": {"relativeURI": "/orders"}}),
        ),
        (
            Kind::Flow,
            "f",
            json!({"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "e1"}, {"_exportId": "e2"}], "pageProcessors": [{"type": "import", "_importId": "i"}]}),
        ),
    ];
    h.define(defs).await;
    let run = |request: RunRequest| async {
        let started = start_run(&h.sluice, "f", request, RunKind::Manual)
            .await
            .unwrap()
            .unwrap();
        h.wait_for_job(&started.job_id, Duration::from_secs(60))
            .await
            .unwrap()
    };
    let only_e1 = || RunRequest {
        export_ids: Some(vec!["e1".into()]),
        ..Default::default()
    };
    let job = run(only_e1()).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    let e1 = watermark::read(&h.sluice, "f", "e1").await.unwrap();
    assert_eq!(e1, job.end_date, "e1's watermark is the run's end");
    assert_eq!(watermark::read(&h.sluice, "f", "e2").await.unwrap(), None);

    let fed = run(RunRequest {
        records: Some(vec![json!({"id": "given"})]),
        ..only_e1()
    })
    .await;
    assert_eq!(fed.status, JobStatus::Completed);
    assert_eq!(
        watermark::read(&h.sluice, "f", "e1").await.unwrap(),
        e1,
        "a run fed with records leaves it"
    );
}
