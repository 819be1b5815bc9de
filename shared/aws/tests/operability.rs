//! What operators watch: a known run through the real handlers on moto, with the Sluice
//! writing CloudWatch embedded-metric-format lines and JSON log lines as a deployed function
//! does; both are parsed back and checked against the run. (One test in this binary: it
//! installs the process-wide log subscriber.)

mod common;

use serde_json::{json, Value};
use sluice_aws::harness::Harness;
use sluice_aws::EmfMetrics;
use sluice_core::Stage;
use sluice_testkit::http::{Answer, TestServer};
use sluice_testkit::moto::Moto;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The lines written so far, shared with the metrics adapter.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Every line as EMF: each must parse and declare the metrics it carries.
    fn json_lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect()
    }

    fn emf_lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("each metrics line is JSON");
                let directive = &v["_aws"]["CloudWatchMetrics"][0];
                assert_eq!(directive["Namespace"], "Sluice/test", "{line}");
                assert!(v["_aws"]["Timestamp"].as_u64().unwrap() > 0, "{line}");
                for dims in directive["Dimensions"].as_array().unwrap() {
                    for d in dims.as_array().unwrap() {
                        assert!(
                            v[d.as_str().unwrap()].is_string(),
                            "dimension {d} set: {line}"
                        );
                    }
                }
                for m in directive["Metrics"].as_array().unwrap() {
                    let name = m["Name"].as_str().unwrap();
                    assert!(v[name].is_number(), "metric {name} has a value: {line}");
                }
                v
            })
            .collect()
    }
}

fn with_metric<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l.get(name).is_some()).collect()
}

/// Five records: one ignored by the export's filter, one refused by the target (400), three
/// delivered. Each deliver invocation (2 s) has less time than a request needs (1 s timeout +
/// 3 s reserve), so it sends only its first request and re-queues the rest: four requests
/// over four invocations, three continuations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_run_emits_its_counts_latencies_and_continuations() {
    let Some(moto) =
        Moto::start_or_skip("a_known_run_emits_its_counts_latencies_and_continuations")
    else {
        return;
    };
    let logs = Captured::default();
    let writer = logs.clone();
    {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("sluice_core=info"))
            .with(sluice_aws::lambda::json_log_layer(move || writer.clone()));
        tracing::subscriber::set_global_default(subscriber).unwrap();
    }
    let captured = Captured::default();
    let metrics = Arc::new(EmfMetrics::new("Sluice/test", Box::new(captured.clone())));
    let mut h = Harness::create_with_metrics(&moto.endpoint_url(), metrics)
        .await
        .unwrap();
    h.invocation_budget = Some(Duration::from_secs(2));
    let sink = TestServer::start(|_, r| match r.json()["n"].as_i64() {
        Some(3) => Answer::json(400, json!({"error": "refused"})),
        _ => Answer::json(200, json!({"ok": true})),
    })
    .await;
    common::define_flow(
        &h.sluice,
        json!({"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url, "requestTimeoutMs": 1000}}),
        json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": 10, "filter": {"expression": "record.n != 4"}}),
    )
    .await;
    let records: Vec<_> = (0..5).map(|n| json!({"n": n})).collect();
    let job_id = common::start(&h.sluice, "f", records).await;
    h.poll(Stage::Trigger).await.unwrap();
    assert_eq!(h.poll(Stage::Translate).await.unwrap(), 1, "one page");
    assert_eq!(
        h.drain(Stage::Deliver).await.unwrap(),
        4,
        "one request per invocation"
    );
    let job = h
        .wait_for_job(&job_id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((job.num_success, job.num_error, job.num_ignore), (3, 1, 1));

    let lines = captured.emf_lines();
    let counted = with_metric(&lines, "RecordsSucceeded");
    assert_eq!(counted.len(), 1, "one page counted once: {lines:?}");
    let c = counted[0];
    assert_eq!(c["Flow"], "f");
    assert_eq!(
        (
            &c["RecordsSucceeded"],
            &c["RecordsFailed"],
            &c["RecordsIgnored"]
        ),
        (&json!(3), &json!(1), &json!(1))
    );

    let latencies = with_metric(&lines, "DeliveryLatency");
    assert_eq!(latencies.len(), 4, "one per request sent: {lines:?}");
    for l in &latencies {
        assert_eq!(l["Flow"], "f");
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        assert!(l["DeliveryLatency"].as_u64().unwrap() < 1000, "{l}");
    }

    let continued = with_metric(&lines, "PagesContinued");
    assert_eq!(continued.len(), 3, "{lines:?}");
    for l in &continued {
        assert_eq!((&l["Stage"], &l["Flow"]), (&json!("deliver"), &json!("f")));
    }
    assert_eq!(lines.len(), 1 + 4 + 3, "nothing else: {lines:?}");

    // Every line the stages logged (three continuations, the job's end) names its context.
    let logged = logs.json_lines();
    assert!(logged.len() >= 4, "{logged:?}");
    for line in &logged {
        assert_eq!(line["flow"], "f", "{line}");
        assert_eq!(line["job"], json!(job_id), "{line}");
        assert!(line["page"].is_string(), "{line}");
        assert!(
            ["deliver", "evaluate"].contains(&line["stage"].as_str().unwrap()),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    assert_eq!(
        logged
            .iter()
            .filter(|l| l["stage"] == "deliver" && l["level"] == "INFO")
            .count(),
        3,
        "the continuations: {logged:?}"
    );
}
