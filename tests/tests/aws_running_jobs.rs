//! The flows API on the AWS adapters (moto): while a job runs through SQS, DynamoDB and the
//! real handlers, deleting its flow (or what it uses) is refused naming the job, and canceling it stops every
//! further send; its counts still cover every record. Webhook listeners served by the same
//! router keep verified deliveries (a big one in the system bucket) and refuse the rest.

use serde_json::{json, Value};
use sluice_api::{router, ApiConfig};
use sluice_aws::harness::Harness;
use sluice_core::ports::Kind;
use sluice_testkit::http::{Answer, TestServer};
use sluice_testkit::moto::Moto;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn call(method: reqwest::Method, url: String) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, url)
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The api function's router over the harness's Sluice (key `k`), on a loopback port.
async fn serve(h: &Harness) -> String {
    let app = router(
        h.sluice.clone(),
        ApiConfig {
            api_keys: vec![("ops".into(), "k".into())],
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The event source mappings: every queue polled until `stop` is set.
fn pump(h: &Arc<Harness>) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let pumping = {
        let (h, stop) = (h.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if h.pump().await.unwrap() == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };
    (stop, pumping)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_a_running_flow_is_not_deleted_and_a_canceled_job_sends_nothing_more() {
    let Some(moto) = Moto::start_or_skip("on_aws_a_running_flow_is_not_deleted") else {
        return;
    };
    let h = Arc::new(Harness::create(&moto.endpoint_url()).await.unwrap());
    let sink = TestServer::start(|_, _| Answer::Slow {
        delay: Duration::from_millis(300),
        then: Box::new(Answer::json(201, json!({}))),
    })
    .await;
    let defs = [
        (
            Kind::Connection,
            "c",
            json!({"_id": "c", "type": "http", "http": {"baseURI": sink.base_url}, "concurrencyLevel": 1}),
        ),
        (
            Kind::Export,
            "e",
            json!({"_id": "e", "type": "webhook", "pageSize": 2}),
        ),
        (
            Kind::Import,
            "i",
            json!({"_id": "i", "_connectionId": "c", "type": "http", "http": {"relativeURI": "/orders"}}),
        ),
        (
            Kind::Flow,
            "f",
            json!({"_id": "f", "pageGenerators": [{"_exportId": "e"}], "pageProcessors": [{"type": "import", "_importId": "i"}]}),
        ),
    ];
    h.define(defs).await;
    let base = serve(&h).await;
    let (stop, pumping) = pump(&h);

    let records: Vec<Value> = (0..10).map(|n| json!({"n": n})).collect();
    let started = reqwest::Client::new()
        .post(format!("{base}/flows/f/run"))
        .bearer_auth("k")
        .json(&json!({ "records": records }))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    let job: Value = started.json().await.unwrap();
    let job_id = job["_jobId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.received().len() < 2 {
        assert!(Instant::now() < deadline, "the job never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, body) = call(reqwest::Method::DELETE, format!("{base}/flows/f")).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("Flow is currently running: job {job_id}")),
        "{body}"
    );

    // What the job uses, recorded in its DynamoDB item when it started, is held too.
    for path in ["imports/i", "exports/e", "connections/c"] {
        let (status, body) = call(reqwest::Method::DELETE, format!("{base}/{path}")).await;
        assert_eq!(status, 409, "{path}: {body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("used by running job {job_id}")),
            "{path}: {body}"
        );
    }

    let (status, body) = call(
        reqwest::Method::POST,
        format!("{base}/jobs/{job_id}/cancel"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = sink.received().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sink.received().len(), sent, "nothing sent after the cancel");
    stop.store(true, Ordering::SeqCst);
    pumping.await.unwrap();
    while h.pump().await.unwrap() > 0 {}

    let job = h.sluice.store.get_job(&job_id).await.unwrap().unwrap();
    assert_eq!(job.status, sluice_model::JobStatus::Canceled);
    assert_eq!(job.num_success as usize, sent, "{job:?}");
    assert_eq!(
        job.num_success + job.num_error + job.num_ignore,
        10,
        "every record counted: {job:?}"
    );
    let (status, _) = call(reqwest::Method::DELETE, format!("{base}/flows/f")).await;
    assert_eq!(status, 204, "the flow is free once its job ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_webhook_listeners_keep_verified_deliveries_and_refuse_the_rest() {
    use sluice_testkit::webhooks;
    let Some(moto) = Moto::start_or_skip("on_aws_webhook_listeners") else {
        return;
    };
    // The HMAC key's secret, read by the harness's Sluice from the environment.
    std::env::set_var(webhooks::KEY_VAR, webhooks::KEY);
    let h = Arc::new(Harness::create(&moto.endpoint_url()).await.unwrap());
    let sink = TestServer::always(201, json!({})).await;
    let bundle = serde_json::from_value(webhooks::bundle(&sink.base_url)).unwrap();
    h.sluice.store_bundle(&bundle).await.unwrap();
    let base = serve(&h).await;

    webhooks::deliver_every_case(&base).await;
    // Over the store item's limit: its records wait in the system bucket, then run.
    let mut big = webhooks::cases()[0].good.clone();
    let pad = "x".repeat(150 * 1024);
    big.body = serde_json::to_vec(&json!([{"via": "wh-token", "n": 3, "pad": pad},
        {"via": "wh-token", "n": 4, "pad": pad}]))
    .unwrap();
    assert_eq!(big.send(&base).await.0, 204);
    // No queue polled yet: the token flow's first job holds it, so the big delivery was
    // answered once kept as a waiting run, its records in the system bucket.
    let waiting = h.sluice.store.queued_runs("f-wh-token", 10).await.unwrap();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(
        matches!(&waiting[0].request.source, Some(sluice_model::RunSource::StoredRecords { key, .. }) if key.starts_with("waiting/")),
        "{:?}",
        waiting[0].request.source
    );
    let (stop, pumping) = pump(&h);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !webhooks::all_arrived(&sink.received(), 1) {
        assert!(Instant::now() < deadline, "not every kept record arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    pumping.await.unwrap();
    for case in webhooks::cases() {
        let jobs = h
            .sluice
            .store
            .list_jobs(&format!("f-{}", case.export), 10)
            .await
            .unwrap();
        let kept = if case.export == "wh-token" { 2 } else { 1 };
        assert_eq!(
            jobs.len(),
            kept,
            "{}: one job per kept delivery: {jobs:?}",
            case.export
        );
        assert!(jobs
            .iter()
            .all(|j| j.trigger == sluice_model::RunKind::Webhook));
    }
}
