//! The delta watermark (`lastExportDateTime`) moves only when a run read its export over the
//! delta window and completed, never backwards, and per export.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::json;
use sluice_core::ports::Kind;
use sluice_core::runs::{retry_errors, watermark};
use sluice_e2e::*;
use sluice_model::{JobStatus, RunRequest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Flow `f` reads two http exports of the source (`e1` from `/one`, `e2` from `/two`, each
/// asking `?since={{lastExportDateTime}}`) and posts every record to the sink, which refuses
/// record `bad` while `refuse` is set.
async fn setup(refuse: Arc<AtomicBool>) -> (Harness, TestServer, TestServer) {
    let source = TestServer::start(|_, r| {
        let items = match r.path.as_str() {
            "/one" => json!([{"id": "one-1"}, {"id": "bad"}]),
            _ => json!([{"id": "two-1"}]),
        };
        Answer::json(200, json!({ "items": items }))
    })
    .await;
    let sink = TestServer::start(move |_, r| {
        if r.json()["id"] == "bad" && refuse.load(Ordering::SeqCst) {
            Answer::json(400, json!({"error": "no"}))
        } else {
            Answer::json(200, json!({}))
        }
    })
    .await;
    let h = Harness::new();
    let mut bundle = http_bundle(
        &sink.base_url,
        json!({"http": {"body": "{{json record}}"}}),
        json!({}),
    );
    bundle["connections"].as_array_mut().unwrap().push(
        json!({"_id": "src", "name": "src", "type": "http", "http": {"baseURI": source.base_url}}),
    );
    let export = |id: &str, path: &str| {
        json!({"_id": id, "name": id, "type": "http", "_connectionId": "src",
               "http": {"relativeURI": format!("{path}?since={{{{urlencode lastExportDateTime}}}}"), "resourcePath": "items"}})
    };
    bundle["exports"] = json!([export("e1", "/one"), export("e2", "/two")]);
    bundle["flows"][0]["pageGenerators"] = json!([{"_exportId": "e1"}, {"_exportId": "e2"}]);
    h.load(bundle).await;
    (h, source, sink)
}

async fn mark(h: &Harness, export: &str) -> Option<DateTime<Utc>> {
    watermark::read(&h.sluice(), "f", export).await.unwrap()
}

/// The `since` each request to `path` asked for, in order.
fn asked_since(source: &TestServer, path: &str) -> Vec<String> {
    source
        .received()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| {
            url::form_urlencoded::parse(r.query.as_bytes())
                .find(|(k, _)| k == "since")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        })
        .collect()
}

fn only(export: &str) -> RunRequest {
    RunRequest {
        export_ids: Some(vec![export.into()]),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_delta_run_moves_only_the_watermark_of_the_export_it_read() {
    let (h, source, _sink) = setup(Arc::new(AtomicBool::new(false))).await;
    let job = h.run_with("f", only("e1")).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(
        mark(&h, "e1").await,
        job.end_date,
        "e1 moved to the run's end"
    );
    assert_eq!(mark(&h, "e2").await, None, "e2 was not read: it stays");

    let second = h.run_with("f", RunRequest::default()).await;
    assert_eq!(
        asked_since(&source, "/one"),
        vec![
            String::new(),
            sluice_model::time::format(&job.end_date.unwrap())
        ],
        "e1's next window starts where its last run ended"
    );
    assert_eq!(
        asked_since(&source, "/two"),
        vec![String::new()],
        "e2, never read before, reads from the beginning"
    );
    assert_eq!(mark(&h, "e1").await, second.end_date);
    assert_eq!(mark(&h, "e2").await, second.end_date);
}

#[tokio::test]
async fn retries_and_runs_fed_with_records_leave_the_watermark() {
    let refuse = Arc::new(AtomicBool::new(true));
    let (h, _source, _sink) = setup(refuse.clone()).await;
    let first = h.run_with("f", only("e1")).await;
    assert_eq!(
        (first.status, first.num_error),
        (JobStatus::CompletedWithErrors, 1)
    );
    let w = mark(&h, "e1").await;
    assert_eq!(w, first.end_date);

    refuse.store(false, Ordering::SeqCst);
    let retry = retry_errors(&h.sluice(), &first.id, None).await.unwrap();
    let retry = h.wait(&retry.job_id).await;
    assert_eq!((retry.status, retry.num_success), (JobStatus::Completed, 1));
    assert_eq!(mark(&h, "e1").await, w, "a retry run leaves it");

    let fed = h
        .run_with(
            "f",
            RunRequest {
                records: Some(vec![json!({"id": "given"})]),
                ..only("e1")
            },
        )
        .await;
    assert_eq!(fed.status, JobStatus::Completed);
    assert_eq!(mark(&h, "e1").await, w, "a run fed with records leaves it");
    assert!(fed.delta_exports.is_empty());
}

#[tokio::test]
async fn a_backfill_leaves_the_watermark_and_it_never_moves_back() {
    let (h, source, _sink) = setup(Arc::new(AtomicBool::new(false))).await;
    let first = h.run_with("f", only("e2")).await;
    let w = mark(&h, "e2").await.unwrap();
    assert_eq!(Some(w), first.end_date);

    // A backfill of last week: reads that window, leaves the watermark.
    let start = Utc::now() - ChronoDuration::days(14);
    let end = Utc::now() - ChronoDuration::days(7);
    let backfill = h
        .run_with(
            "f",
            RunRequest {
                start_date: Some(start),
                end_date: Some(end),
                ..only("e2")
            },
        )
        .await;
    assert_eq!(backfill.status, JobStatus::Completed);
    assert_eq!(
        asked_since(&source, "/two")[1],
        sluice_model::time::format(&start)
    );
    assert_eq!(mark(&h, "e2").await, Some(w), "a backfill leaves it");

    // A watermark ahead of this run's end (set by a clock ahead) is not moved back.
    let ahead = Utc::now() + ChronoDuration::days(1);
    h.sluice()
        .store
        .put_state(&watermark::key("f", "e2"), &json!(ahead.to_rfc3339()))
        .await
        .unwrap();
    let rerun = h
        .run_with(
            "f",
            RunRequest {
                start_date: Some(start),
                ..only("e2")
            },
        )
        .await;
    assert_eq!(rerun.status, JobStatus::Completed);
    assert!(rerun.end_date.unwrap() < ahead);
    assert_eq!(mark(&h, "e2").await, Some(ahead), "never backwards");
}

#[tokio::test]
async fn a_window_that_ends_before_it_starts_is_refused() {
    let (h, _source, _sink) = setup(Arc::new(AtomicBool::new(false))).await;
    let now = Utc::now();
    let refused = sluice_core::runs::start_run(
        &h.sluice(),
        "f",
        RunRequest {
            start_date: Some(now),
            end_date: Some(now - ChronoDuration::hours(1)),
            ..Default::default()
        },
        sluice_model::RunKind::Manual,
    )
    .await;
    let Err(sluice_core::Error::Validation(errors)) = refused else {
        panic!("expected a validation error: {refused:?}");
    };
    assert_eq!(errors.0[0].field, "endDate", "{errors:?}");
}

/// A run whose export cannot be read fails and leaves the watermark: the next run reads the
/// failed run's window again.
#[tokio::test]
async fn a_failed_run_leaves_the_watermark_and_the_next_run_reads_its_window_again() {
    let (h, source, _sink) = setup(Arc::new(AtomicBool::new(false))).await;
    let first = h.run_with("f", only("e2")).await;
    let w = mark(&h, "e2").await.unwrap();
    assert_eq!(Some(w), first.end_date);

    let down = TestServer::always(500, json!({"error": "down"})).await;
    let store = &h.sluice().store;
    let mut src = store
        .get_definition(Kind::Connection, "src")
        .await
        .unwrap()
        .unwrap();
    let up = src["http"].clone();
    src["http"] = json!({"baseURI": down.base_url, "retry": {"maxAttempts": 1}});
    store
        .put_definition(Kind::Connection, "src", &src)
        .await
        .unwrap();
    let failed = h.run_with("f", only("e2")).await;
    assert_eq!(failed.status, JobStatus::Failed, "{failed:?}");
    assert_eq!(mark(&h, "e2").await, Some(w), "a failed run leaves it");
    let errors = h.errors(&failed.id).await;
    let step = (
        errors[0].processor_index,
        errors[0].export_id.as_deref(),
        errors[0].step_name.as_deref(),
    );
    assert_eq!(
        step,
        (-1, Some("e2"), Some("e2")),
        "the error names its export"
    );

    src["http"] = up;
    store
        .put_definition(Kind::Connection, "src", &src)
        .await
        .unwrap();
    let next = h.run_with("f", only("e2")).await;
    assert_eq!(next.status, JobStatus::Completed);
    assert_eq!(
        asked_since(&source, "/two"),
        vec![String::new(), sluice_model::time::format(&w)],
        "the next run reads from where the last completed run ended"
    );
    assert_eq!(mark(&h, "e2").await, next.end_date);
}

/// `delta.lagOffset` reaches back from the watermark, `delta.dateFormat` writes the window
/// in the export's requests; the watermark itself stays the end of the window read.
#[tokio::test]
async fn a_lag_offset_reaches_back_and_a_date_format_writes_the_window() {
    let (h, source, _sink) = setup(Arc::new(AtomicBool::new(false))).await;
    let store = &h.sluice().store;
    let mut e1 = store
        .get_definition(Kind::Export, "e1")
        .await
        .unwrap()
        .unwrap();
    e1["delta"] = json!({"lagOffset": 90_000, "dateFormat": "YYYY-MM-DD HH:mm:ss"});
    let export: sluice_model::Export = serde_json::from_value(e1.clone()).unwrap();
    export.validate().unwrap();
    store.put_definition(Kind::Export, "e1", &e1).await.unwrap();

    let first = h.run_with("f", only("e1")).await;
    assert_eq!(first.status, JobStatus::Completed);
    let end = first.end_date.unwrap();
    assert_eq!(
        mark(&h, "e1").await,
        Some(end),
        "the watermark is the window's end"
    );

    let second = h.run_with("f", only("e1")).await;
    let lagged = end - ChronoDuration::milliseconds(90_000);
    assert_eq!(
        asked_since(&source, "/one"),
        vec![
            String::new(),
            lagged.format("%Y-%m-%d %H:%M:%S").to_string()
        ],
        "the second window starts 90 s before the first ended, written as the format says"
    );
    assert_eq!(second.delta_exports.get("e1"), Some(&Some(lagged)));
    assert_eq!(
        second.start_date,
        Some(lagged),
        "templates see the lagged start"
    );
    assert_eq!(
        mark(&h, "e1").await,
        second.end_date,
        "the lag does not compound: the watermark moves to the end"
    );

    // A startDate given is the window asked for: no lag.
    let start = end - ChronoDuration::days(1);
    h.run_with(
        "f",
        RunRequest {
            start_date: Some(start),
            ..only("e1")
        },
    )
    .await;
    assert_eq!(
        asked_since(&source, "/one")[2],
        start.format("%Y-%m-%d %H:%M:%S").to_string()
    );
}

#[tokio::test]
async fn delta_options_and_export_schedules_are_validated_naming_the_field() {
    let export: sluice_model::Export = serde_json::from_value(json!({"_id": "e", "name": "e",
        "type": "http", "_connectionId": "c", "http": {"relativeURI": "/x"},
        "delta": {"lagOffset": 40u64 * 24 * 3600 * 1000, "dateFormat": "YYYY-MM-Do"}}))
    .unwrap();
    let errors = export.validate().unwrap_err();
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["delta.lagOffset", "delta.dateFormat"],
        "{errors:?}"
    );
    assert!(errors.0[1].message.contains("ordinals"), "{errors:?}");

    let webhook: sluice_model::Export = serde_json::from_value(
        json!({"_id": "w", "name": "w", "type": "webhook", "delta": {"lagOffset": 5}}),
    )
    .unwrap();
    assert_eq!(webhook.validate().unwrap_err().0[0].field, "delta");

    let flow: sluice_model::Flow = serde_json::from_value(json!({"_id": "f", "name": "f",
        "pageGenerators": [{"_exportId": "a"}, {"_exportId": "b", "schedule": "every minute"}]}))
    .unwrap();
    let errors = flow.validate().unwrap_err();
    assert_eq!(
        errors.0[0].field, "pageGenerators[1].schedule",
        "{errors:?}"
    );
    assert!(errors.0[0].message.contains("Invalid cron expression"));
}

/// A page generator's own `schedule` runs that export on it; the flow's schedule stays the
/// others' (here: once a year, so not now). The tick reads only the export due.
#[tokio::test]
async fn the_tick_runs_only_the_export_whose_own_schedule_is_due() {
    use sluice_core::stages::trigger::schedule::reschedule;
    let (h, source, _sink) = setup(Arc::new(AtomicBool::new(false))).await;
    let s = h.sluice();
    let mut flow = s
        .store
        .get_definition(Kind::Flow, "f")
        .await
        .unwrap()
        .unwrap();
    flow["schedule"] = json!("0 0 1 1 *");
    flow["pageGenerators"][1]["schedule"] = json!("* * * * *");
    s.store
        .put_definition(Kind::Flow, "f", &flow)
        .await
        .unwrap();
    let flow = s.flow("f").await.unwrap();
    reschedule(&s, &flow).await.unwrap();
    let due = s
        .store
        .due_flows(Utc::now() + ChronoDuration::minutes(1))
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "due within the minute, on e2's schedule");

    // Pretend that time came: the minute that began last, when e2's schedule fired.
    let started = tick_due_this_minute(&s, "f").await;
    assert_eq!(started.len(), 1);
    let job = h.wait(&started[0].job_id).await;
    assert_eq!(
        (job.trigger.as_str(), job.status),
        ("schedule", JobStatus::Completed)
    );
    assert_eq!(job.export_id.as_deref(), Some("e2"));
    assert_eq!(
        job.delta_exports.keys().collect::<Vec<_>>(),
        ["e2"],
        "only e2's window is read and moved"
    );
    assert!(asked_since(&source, "/one").is_empty(), "e1 was not read");
    assert_eq!(asked_since(&source, "/two").len(), 1);
    assert_eq!(mark(&h, "e1").await, None);
    assert_eq!(mark(&h, "e2").await, job.end_date);
}
