//! Sources: S3 files (JSON array, NDJSON, CSV), files picked up from a real sshd (SFTP) and a
//! real vsftpd (FTP, FTPS) on loopback, DynamoDB stream changes, HTTP exports with paging and deltas, and the schedule
//! tick.

use bytes::Bytes;
use chrono::{Duration as ChronoDuration, Utc};
use serde_json::json;
use sluice_core::runs::start_run;
use sluice_core::stages::trigger::events::{on_s3_object, on_table_changes, TableChange};
use sluice_core::stages::trigger::schedule::{reschedule, tick};
use sluice_e2e::*;
use sluice_model::FailureCode;
use sluice_model::{Flow, JobStatus};
use sluice_model::{RunKind, RunRequest};
use sluice_testkit::ftpd::{FtpMode, FtpServer};

/// The names the sink received, sorted (pages are sent concurrently).
fn names(server: &TestServer) -> Vec<String> {
    let mut names: Vec<String> = server
        .received()
        .iter()
        .map(|r| r.json()["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The file names in `dir`, sorted.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// A zip archive of these files, as zip tools write one to a file.
fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.add_directory("nested/", zip::write::SimpleFileOptions::default())
        .unwrap();
    for (name, text) in files {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A flow reading an ftp export over an sftp connection to `ssh` into the sink.
fn pickup_flow(base: &str, ssh: &SshServer, ftp: serde_json::Value) -> serde_json::Value {
    let mut b = sink_flow(
        base,
        json!({"_id": "exp", "name": "exp", "type": "ftp", "_connectionId": "sftp", "pageSize": 2, "ftp": ftp}),
    );
    b["connections"].as_array_mut().unwrap().push(
        json!({"_id": "sftp", "name": "sftp", "type": "sftp",
        "sftp": {"host": "127.0.0.1", "port": ssh.port, "username": ssh.user,
                 "privateKey": ssh.private_key_pem(), "hostKey": ssh.host_key_line()}}),
    );
    b
}

fn sink_flow(base: &str, export: serde_json::Value) -> serde_json::Value {
    let mut b = http_bundle(
        base,
        json!({"http": {"body": "{{json record}}"}}),
        json!({}),
    );
    b["exports"] = json!([export]);
    b
}

#[tokio::test]
async fn an_s3_object_starts_matching_flows_and_is_read_as_a_stream() {
    let server = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    h.load(sink_flow(&server.base_url, json!({"_id": "exp", "name": "exp", "type": "s3", "s3": {"bucket": "in", "prefix": "orders/", "suffix": ".csv"}, "pageSize": 2, "filter": {"expression": "record.qty != '9'"}}))).await;
    let csv = "name,qty\na,1\nb,2\nc,9\nd,4\ne,5\n";
    h.sluice()
        .blobs
        .put("in", "orders/today.csv", Bytes::from(csv))
        .await
        .unwrap();
    assert!(
        on_s3_object(&h.sluice(), "in", "other/today.csv", None)
            .await
            .unwrap()
            .is_empty(),
        "prefix must match"
    );
    assert!(
        on_s3_object(&h.sluice(), "in", "orders/today.json", None)
            .await
            .unwrap()
            .is_empty(),
        "suffix must match"
    );
    let started = on_s3_object(&h.sluice(), "in", "orders/today.csv", None)
        .await
        .unwrap();
    assert_eq!(started.len(), 1);
    let job = h.wait(&started[0].job_id).await;
    assert_eq!((job.num_success, job.num_ignore, job.num_pages), (4, 1, 3));
    let names: Vec<String> = server
        .received()
        .iter()
        .map(|r| r.json()["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 4);
    assert!(!names.contains(&"c".to_string()));
}

/// 1,000 records in `format`, line 500 broken.
fn file_with_a_bad_line_500(format: &str) -> String {
    let line = |n: usize| match (format, n) {
        ("csv", 500) => "500,x,extra".to_string(),
        ("csv", _) => format!("{n},x"),
        (_, 500) => "{\"n\": 500, oops}".to_string(),
        _ => format!("{{\"n\": {n}}}"),
    };
    let lines: Vec<String> = (1..=1000).map(line).collect();
    match format {
        "csv" => format!("n,name\n{}\n", lines.join("\n")),
        // The array opens on a line of its own: element n is on line n + 1.
        "json" => format!("[\n{}\n]\n", lines.join(",\n")),
        _ => lines.join("\n") + "\n",
    }
}

#[tokio::test]
async fn a_bad_line_is_an_error_record_and_the_lines_after_it_are_read() {
    for (format, bad_line) in [("ndjson", 500), ("csv", 501), ("json", 501)] {
        let server = TestServer::always(200, json!({})).await;
        let h = Harness::new();
        h.load(sink_flow(
            &server.base_url,
            json!({"_id": "exp", "name": "exp", "type": "s3", "s3": {"bucket": "in"}, "pageSize": 100}),
        ))
        .await;
        let key = format!("orders.{format}");
        h.sluice()
            .blobs
            .put("in", &key, Bytes::from(file_with_a_bad_line_500(format)))
            .await
            .unwrap();
        let started = on_s3_object(&h.sluice(), "in", &key, None).await.unwrap();
        let job = h.wait(&started[0].job_id).await;
        assert_eq!(
            job.status,
            JobStatus::CompletedWithErrors,
            "{format}: {job:?}"
        );
        assert_eq!((job.num_success, job.num_error), (999, 1), "{format}");
        assert_counts(&job, 1000);
        assert_eq!(
            server.received().len(),
            999,
            "{format}: every readable record went out"
        );
        let errors = h.errors(&job.id).await;
        assert_eq!(errors.len(), 1, "{format}");
        assert_eq!(errors[0].code, FailureCode::Unreadable);
        let expected = format!("s3://in/{key} line {bad_line}: ");
        assert!(
            errors[0].message.starts_with(&expected),
            "{format}: {}",
            errors[0].message
        );
        assert!(
            errors[0].record.as_str().unwrap().contains("500"),
            "{format}: the line is kept"
        );
    }
}

#[tokio::test]
async fn a_file_unreadable_as_a_whole_fails_the_job_saying_so() {
    let server = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    h.load(sink_flow(
        &server.base_url,
        json!({"_id": "exp", "name": "exp", "type": "s3", "s3": {"bucket": "in"}, "file": {"type": "ndjson"}}),
    ))
    .await;
    h.sluice()
        .blobs
        .put("in", "x.ndjson", Bytes::from("id,name\n1,a\n2,b\n"))
        .await
        .unwrap();
    let started = on_s3_object(&h.sluice(), "in", "x.ndjson", None)
        .await
        .unwrap();
    let job = h.wait(&started[0].job_id).await;
    assert_eq!(job.status, JobStatus::Failed);
    let message = job.message.as_deref().unwrap();
    assert!(
        message.starts_with(
            "s3://in/x.ndjson cannot be read as NDJSON: none of its 3 parts is a record"
        ) && message.contains("line 1"),
        "{message}"
    );
    assert_eq!(job.num_success + job.num_error, 0);
    assert!(server.received().is_empty());
    let errors = h.errors(&job.id).await;
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.code == FailureCode::Export)
            .count(),
        1
    );
    // The lock was released: the flow can run again.
    assert!(
        start_run(&h.sluice(), "f", RunRequest::default(), RunKind::Manual)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn an_s3_event_queued_behind_a_running_job_runs_as_an_s3_run_of_its_object() {
    let server = TestServer::start(|_, _| Answer::Slow {
        delay: std::time::Duration::from_millis(200),
        then: Box::new(Answer::json(200, json!({}))),
    })
    .await;
    let h = Harness::new();
    h.load(sink_flow(
        &server.base_url,
        json!({"_id": "exp", "name": "exp", "type": "s3", "s3": {"bucket": "in"}, "file": {"type": "ndjson"}}),
    ))
    .await;
    let s = h.sluice();
    s.blobs
        .put("in", "late.ndjson", Bytes::from("{\"n\":1}\n{\"n\":2}\n"))
        .await
        .unwrap();
    let first = start_run(
        &s,
        "f",
        RunRequest {
            records: Some(orders(2)),
            ..Default::default()
        },
        RunKind::Manual,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        on_s3_object(&s, "in", "late.ndjson", None)
            .await
            .unwrap()
            .is_empty(),
        "the flow is busy: the object's run waits"
    );
    h.wait(&first.job_id).await;
    h.runtime
        .wait_idle(std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let jobs = s.store.list_jobs("f", 10).await.unwrap();
    let queued = jobs
        .iter()
        .find(|j| j.id != first.job_id)
        .expect("the queued run ran");
    assert_eq!(
        (queued.trigger, queued.status, queued.num_success),
        (RunKind::S3, JobStatus::Completed, 2),
        "it started as the s3 run it was queued as, and read its object"
    );
}

#[tokio::test]
async fn dynamodb_changes_run_flows_with_plain_records() {
    let server = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    h.load(sink_flow(&server.base_url, json!({"_id": "exp", "name": "exp", "type": "dynamodb", "dynamodb": {"tableName": "orders", "eventTypes": ["INSERT"]}}))).await;
    let image = |id: &str| {
        sluice_core::stages::trigger::events::from_attribute_values(
            &json!({"id": {"S": id}, "qty": {"N": "3"}}),
        )
    };
    let changes = vec![
        TableChange {
            table_name: "orders".into(),
            event_name: "INSERT".into(),
            new_image: Some(image("a")),
            event_id: None,
        },
        TableChange {
            table_name: "orders".into(),
            event_name: "MODIFY".into(),
            new_image: Some(image("b")),
            event_id: None,
        },
        TableChange {
            table_name: "other".into(),
            event_name: "INSERT".into(),
            new_image: Some(image("c")),
            event_id: None,
        },
    ];
    let started = on_table_changes(&h.sluice(), changes).await.unwrap();
    let job = h.wait(&started[0].job_id).await;
    assert_eq!(job.num_success, 1);
    assert_eq!(server.received()[0].json(), json!({"id": "a", "qty": 3}));
}

#[tokio::test]
async fn http_exports_page_and_use_the_delta_window() {
    // The source API: 3 pages by page number, 2 records each, then an empty page.
    let source = TestServer::start(|_, r| {
        let page: u64 = r
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("page="))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let items: Vec<_> = if page <= 3 {
            (0..2)
                .map(|i| json!({"id": format!("{page}-{i}")}))
                .collect()
        } else {
            vec![]
        };
        Answer::json(200, json!({"data": {"items": items}}))
    })
    .await;
    let sink = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    let mut bundle = sink_flow(
        &sink.base_url,
        json!({
            "_id": "exp", "name": "exp", "type": "http", "_connectionId": "src",
            "http": {"relativeURI": "/items?page={{export.http.paging.page}}&since={{urlencode lastExportDateTime}}", "resourcePath": "data.items", "paging": {"method": "page"}}
        }),
    );
    bundle["connections"].as_array_mut().unwrap().push(
        json!({"_id": "src", "name": "src", "type": "http", "http": {"baseURI": source.base_url}}),
    );
    h.load(bundle).await;
    let start = Utc::now() - ChronoDuration::days(1);
    let job = h
        .run_with(
            "f",
            RunRequest {
                start_date: Some(start),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(job.num_success, 6, "{:?}", h.errors(&job.id).await);
    let asked = source.received();
    assert_eq!(asked.len(), 4, "pages 1..3 and the empty page 4");
    let since = url::form_urlencoded::parse(asked[0].query.as_bytes())
        .find(|(k, _)| k == "since")
        .unwrap()
        .1
        .to_string();
    assert_eq!(since, sluice_model::time::format(&start), "RFC 3339 UTC ms");
    // The watermark moved to the run's end: the next run starts there.
    let wm = h
        .sluice()
        .store
        .get_state(&sluice_core::runs::watermark::key("f", "exp"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        wm.as_str().unwrap(),
        sluice_model::time::format(&job.end_date.unwrap())
    );
}

#[tokio::test]
async fn a_wrong_resource_path_fails_instead_of_finding_nothing() {
    let source = TestServer::always(200, json!({"results": [{"id": 1}]})).await;
    let sink = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    let mut bundle = sink_flow(
        &sink.base_url,
        json!({"_id": "exp", "name": "exp", "type": "http", "_connectionId": "src", "http": {"relativeURI": "/items", "resourcePath": "data.items"}}),
    );
    bundle["connections"].as_array_mut().unwrap().push(
        json!({"_id": "src", "name": "src", "type": "http", "http": {"baseURI": source.base_url}}),
    );
    h.load(bundle).await;
    let job = h.run_with("f", RunRequest::default()).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(
        job.message.as_deref().unwrap().contains("selects nothing")
            && job.message.as_deref().unwrap().contains("results"),
        "{job:?}"
    );
    assert!(
        h.sluice()
            .store
            .get_state(&sluice_core::runs::watermark::key("f", "exp"))
            .await
            .unwrap()
            .is_none(),
        "no watermark after a failed run"
    );
}

#[tokio::test]
async fn the_tick_starts_due_flows_only() {
    let sink = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    let mut bundle = http_bundle(&sink.base_url, json!({}), json!({}));
    bundle["flows"][0]["schedule"] = json!("* * * * *");
    h.load(bundle).await;
    let s = h.sluice();
    let flow: Flow = s.flow("f").await.unwrap();
    reschedule(&s, &flow).await.unwrap();
    assert!(
        tick(&s).await.unwrap().is_empty(),
        "not due before the next minute"
    );
    // Pretend the due time has come.
    let started = tick_due_this_minute(&s, "f").await;
    assert_eq!(started.len(), 1);
    let job = h.wait(&started[0].job_id).await;
    assert_eq!(
        (job.trigger.as_str(), job.status),
        ("schedule", JobStatus::Completed)
    );
    let next = s
        .store
        .due_flows(Utc::now() + ChronoDuration::minutes(2))
        .await
        .unwrap();
    assert_eq!(next.len(), 1, "rescheduled for the next minute");
    assert!(next[0].1 > Utc::now());
}

#[tokio::test]
async fn a_disabled_flow_runs_on_no_event_and_no_chain_but_by_hand() {
    let sink = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    let mut bundle = http_bundle(&sink.base_url, json!({}), json!({}));
    bundle["exports"].as_array_mut().unwrap().extend([
        json!({"_id": "objects", "name": "objects", "type": "s3", "s3": {"bucket": "in"}}),
        json!({"_id": "rows", "name": "rows", "type": "dynamodb", "dynamodb": {"tableName": "orders"}}),
    ]);
    let off = |id: &str, export: &str| {
        json!({"_id": id, "name": id, "disabled": true, "pageGenerators": [{"_exportId": export}],
               "pageProcessors": [{"type": "import", "_importId": "imp"}]})
    };
    let flows = bundle["flows"].as_array_mut().unwrap();
    flows[0]["_runNextFlowIds"] = json!(["chained"]);
    flows.extend([
        off("on-s3", "objects"),
        off("on-rows", "rows"),
        off("chained", "exp"),
    ]);
    h.load(bundle).await;
    let s = h.sluice();
    s.blobs
        .put("in", "a.ndjson", Bytes::from("{\"n\": 1}\n"))
        .await
        .unwrap();
    assert!(on_s3_object(&s, "in", "a.ndjson", None)
        .await
        .unwrap()
        .is_empty());
    let change = TableChange {
        table_name: "orders".into(),
        event_name: "INSERT".into(),
        new_image: Some(json!({"id": "a"})),
        event_id: None,
    };
    assert!(on_table_changes(&s, vec![change]).await.unwrap().is_empty());
    let job = h.run("f", orders(1)).await;
    assert_eq!(job.num_success, 1);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for flow in ["on-s3", "on-rows", "chained"] {
        let jobs = s.store.list_jobs(flow, 5).await.unwrap();
        assert!(jobs.is_empty(), "{flow} ran: {jobs:?}");
    }
    let job = h.run("chained", orders(2)).await;
    assert_eq!(
        (job.trigger, job.num_success),
        (RunKind::Manual, 2),
        "by hand it runs"
    );
}

/// A source API with 5 records served 2 at a time, paged in the style given.
async fn paged_source(style: &'static str) -> TestServer {
    TestServer::start(move |_, r| {
        let all: Vec<_> = (0..5).map(|i| json!({"id": i})).collect();
        let param = |name: &str| url::form_urlencoded::parse(r.query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.parse::<usize>().unwrap_or(0));
        let from = match style {
            "skip" => param("skip").unwrap_or(0),
            _ => param("from").unwrap_or(0),
        };
        let items: Vec<_> = all.iter().skip(from).take(2).cloned().collect();
        let next = from + 2;
        let more = next < all.len();
        match style {
            "token" => Answer::json(200, json!({"items": items, "next": if more { json!(next.to_string()) } else { json!(null) }})),
            "url" => Answer::json(200, json!({"items": items, "nextUrl": if more { json!(format!("/items?from={next}")) } else { json!(null) }})),
            "link" => {
                let a = Answer::json(200, json!({"items": items}));
                if more { a.with_header("link", &format!("</items?from={next}>; rel=\"next\"")) } else { a }
            }
            _ => Answer::json(200, json!({"items": items})),
        }
    })
    .await
}

#[tokio::test]
async fn every_paging_method_reads_every_record_once() {
    let cases = [
        (
            "skip",
            json!({"relativeURI": "/items?skip={{export.http.paging.skip}}", "paging": {"method": "skip"}}),
        ),
        (
            "token",
            json!({"relativeURI": "/items", "paging": {"method": "token", "path": "next", "relativeURI": "/items?from={{export.http.paging.token}}"}}),
        ),
        (
            "url",
            json!({"relativeURI": "/items", "paging": {"method": "url", "path": "$.nextUrl"}}),
        ),
        (
            "link",
            json!({"relativeURI": "/items", "paging": {"method": "linkheader"}}),
        ),
    ];
    for (style, http) in cases {
        let source = paged_source(style).await;
        let sink = TestServer::always(200, json!({})).await;
        let h = Harness::new();
        let mut http = http;
        http["resourcePath"] = json!("items");
        let mut bundle = sink_flow(
            &sink.base_url,
            json!({"_id": "exp", "name": "exp", "type": "http", "_connectionId": "src", "http": http}),
        );
        bundle["connections"]
            .as_array_mut()
            .unwrap()
            .push(json!({"_id": "src", "name": "src", "type": "http", "http": {"baseURI": source.base_url}}));
        h.load(bundle).await;
        let job = h.run_with("f", RunRequest::default()).await;
        assert_eq!(job.num_success, 5, "{style}: {:?}", h.errors(&job.id).await);
        let mut ids: Vec<i64> = sink
            .received()
            .iter()
            .map(|r| r.json()["id"].as_i64().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 3, 4], "{style}");
    }
}

#[tokio::test]
async fn an_s3_export_run_reads_only_objects_no_completed_run_of_it_read() {
    let server = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    h.load(sink_flow(
        &server.base_url,
        json!({"_id": "exp", "name": "exp", "type": "s3", "s3": {"bucket": "in", "prefix": "orders/"}, "file": {"type": "ndjson"}}),
    ))
    .await;
    let put = |key: &'static str, body: &'static str| {
        let sluice = h.sluice();
        async move {
            sluice
                .blobs
                .put("in", key, Bytes::from(body))
                .await
                .unwrap()
        }
    };
    let run = || async {
        let started = start_run(&h.sluice(), "f", RunRequest::default(), RunKind::Manual)
            .await
            .unwrap()
            .unwrap();
        h.wait(&started.job_id).await
    };
    put(
        "orders/a.ndjson",
        "{\"name\": \"a1\"}\n{\"name\": \"a2\"}\n",
    )
    .await;
    put("orders/b.ndjson", "{\"name\": \"b1\"}\n").await;
    assert_eq!(run().await.num_success, 3);
    put("orders/c.ndjson", "{\"name\": \"c1\"}\n").await;
    let second = run().await;
    assert_eq!(
        (second.status, second.num_success),
        (JobStatus::Completed, 1),
        "{second:?}"
    );
    // An object an event ran is remembered too: the next run of the prefix skips it.
    put("orders/d.ndjson", "{\"name\": \"d1\"}\n").await;
    let started = on_s3_object(&h.sluice(), "in", "orders/d.ndjson", None)
        .await
        .unwrap();
    assert_eq!(h.wait(&started[0].job_id).await.num_success, 1);
    assert_eq!(run().await.num_success, 0);
    let names: Vec<String> = server
        .received()
        .iter()
        .map(|r| r.json()["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a1", "a2", "b1", "c1", "d1"], "each record once");
}

#[tokio::test]
async fn files_picked_up_over_sftp_are_read_decompressed_once_then_moved_to_the_backup_directory() {
    let ssh = SshServer::start().expect("sshd starts");
    let server = TestServer::always(200, json!({})).await;
    let inbox = ssh.root().join("inbox");
    std::fs::create_dir_all(inbox.join("orders-folder")).unwrap();
    std::fs::write(inbox.join("orders-1.csv"), "name,qty\na,1\nb,2\nc,3\n").unwrap();
    std::fs::write(
        inbox.join("orders-2.ndjson.gz"),
        gzip("{\"name\": \"d\"}\n{\"name\": \"e\"}\n"),
    )
    .unwrap();
    std::fs::write(
        inbox.join("orders-3.csv.zip"),
        zip_of(&[("f.csv", "name\nf\n"), ("nested/g.csv", "name\ng1\ng2\n")]),
    )
    .unwrap();
    std::fs::write(inbox.join("notes.txt"), "not an order").unwrap();
    let done = inbox.join("done");
    let h = Harness::new();
    h.load(pickup_flow(
        &server.base_url,
        &ssh,
        json!({"directoryPath": inbox.to_str().unwrap(), "fileNameStartsWith": "orders-",
               "backupDirectoryPath": done.to_str().unwrap()}),
    ))
    .await;
    let job = h.run_with("f", RunRequest::default()).await;
    assert_eq!(
        (job.status, job.num_success, job.num_pages),
        (JobStatus::Completed, 8, 4),
        "{:?}",
        h.errors(&job.id).await
    );
    assert_eq!(names(&server), ["a", "b", "c", "d", "e", "f", "g1", "g2"]);
    // Read whole and judged: moved out of the directory read; what the filters left stays.
    assert_eq!(listing(&inbox), ["done", "notes.txt", "orders-folder"]);
    assert_eq!(
        listing(&done),
        ["orders-1.csv", "orders-2.ndjson.gz", "orders-3.csv.zip"]
    );

    // A new file, and one of an old name again: both read; the backup keeps both versions.
    std::fs::write(inbox.join("orders-1.csv"), "name\nh\n").unwrap();
    std::fs::write(inbox.join("orders-4.csv"), "name\ni\n").unwrap();
    let second = h.run_with("f", RunRequest::default()).await;
    assert_eq!(second.num_success, 2, "{:?}", h.errors(&second.id).await);
    assert_eq!(
        names(&server),
        ["a", "b", "c", "d", "e", "f", "g1", "g2", "h", "i"]
    );
    assert_eq!(
        listing(&done),
        [
            "orders-1.csv".to_string(),
            format!("orders-1.csv.{}", second.id),
            "orders-2.ndjson.gz".into(),
            "orders-3.csv.zip".into(),
            "orders-4.csv".into()
        ]
    );
    assert_eq!(
        std::fs::read_to_string(done.join("orders-1.csv")).unwrap(),
        "name,qty\na,1\nb,2\nc,3\n",
        "the first version's backup is not replaced"
    );
}

#[tokio::test]
async fn a_failed_pickup_leaves_its_files_and_kept_files_are_read_again_only_when_changed() {
    let ssh = SshServer::start().expect("sshd starts");
    let server = TestServer::always(200, json!({})).await;
    let inbox = ssh.root().join("in");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("a.ndjson"), "{\"name\": \"a\"}\n").unwrap();
    std::fs::write(inbox.join("b.json"), "not json at all").unwrap();
    let h = Harness::new();
    let mut bundle = pickup_flow(
        &server.base_url,
        &ssh,
        json!({"directoryPath": inbox.to_str().unwrap(), "fileNameEndsWith": "json"}),
    );
    h.load(bundle.clone()).await;
    let failed = h.run_with("f", RunRequest::default()).await;
    assert_eq!(failed.status, JobStatus::Failed, "{failed:?}");
    let why = &h.errors(&failed.id).await[0];
    assert_eq!(why.code, FailureCode::Export);
    assert!(
        why.message
            .contains("/in/b.json: not a JSON array of records nor one JSON object")
            && why.message.starts_with("sftp://127.0.0.1:"),
        "{}",
        why.message
    );
    // Not every record was judged: nothing is deleted, nor remembered.
    assert_eq!(listing(&inbox), ["a.ndjson", "b.json"]);

    std::fs::remove_file(inbox.join("b.json")).unwrap();
    bundle["exports"][0]["file"] = json!({"type": "ndjson", "skipDelete": true});
    h.load(bundle.clone()).await;
    let read = h.run_with("f", RunRequest::default()).await;
    assert_eq!((read.status, read.num_success), (JobStatus::Completed, 1));
    assert_eq!(listing(&inbox), ["a.ndjson"], "skipDelete leaves the file");
    let again = h.run_with("f", RunRequest::default()).await;
    assert_eq!(
        again.num_success, 0,
        "a file read by a completed run is not read again"
    );
    std::fs::write(
        inbox.join("a.ndjson"),
        "{\"name\": \"a\"}\n{\"name\": \"a2\"}\n",
    )
    .unwrap();
    let changed = h.run_with("f", RunRequest::default()).await;
    assert_eq!(
        changed.num_success, 2,
        "written again: another version, read again"
    );

    // By default a file read is deleted; one a completed run read before is not touched.
    bundle["exports"][0]["file"] = json!({"type": "ndjson"});
    h.load(bundle).await;
    std::fs::write(inbox.join("c.ndjson"), "{\"name\": \"c\"}\n").unwrap();
    let deleting = h.run_with("f", RunRequest::default()).await;
    assert_eq!(deleting.num_success, 1);
    assert_eq!(listing(&inbox), ["a.ndjson"]);
    assert_eq!(names(&server), ["a", "a", "a", "a2", "c"]);
}

/// A flow reading an ftp export over an ftp connection to `ftp` (`settings` added to the
/// connection's `ftp`) into the sink.
fn ftp_pickup_flow(
    base: &str,
    ftp: &FtpServer,
    settings: serde_json::Value,
    export: serde_json::Value,
) -> serde_json::Value {
    let mut b = sink_flow(
        base,
        json!({"_id": "exp", "name": "exp", "type": "ftp", "_connectionId": "ftp", "pageSize": 2, "ftp": export}),
    );
    let mut connection = json!({"hostURI": "127.0.0.1", "port": ftp.port, "username": ftp.user,
                                "password": "secret:FTP_PASSWORD"});
    merge(&mut connection, settings);
    b["connections"]
        .as_array_mut()
        .unwrap()
        .push(json!({"_id": "ftp", "name": "ftp", "type": "ftp", "ftp": connection}));
    b
}

#[tokio::test]
async fn files_picked_up_over_ftp_and_ftps_explicit_and_implicit_are_read_then_deleted_or_moved() {
    for (mode, settings) in [
        (FtpMode::Plain, json!({"usePassiveMode": false})),
        (FtpMode::Explicit, json!({"type": "ftps"})),
        (
            FtpMode::Implicit,
            json!({"type": "ftps", "useImplicitFtps": true}),
        ),
    ] {
        let ftp = FtpServer::start(mode).expect("vsftpd starts");
        let mut settings = settings;
        if let Some(ca) = ftp.ca_pem() {
            settings["trustedCertificates"] = json!(ca);
        }
        let server = TestServer::always(200, json!({})).await;
        let inbox = ftp.writable_dir("inbox");
        std::fs::write(inbox.join("order-a.csv"), "name\na1\na2\na3\n").unwrap();
        std::fs::write(
            inbox.join("order-b.ndjson.gz"),
            gzip("{\"name\": \"b1\"}\n"),
        )
        .unwrap();
        std::fs::write(inbox.join("notes.txt"), "not an order").unwrap();
        let mut export = json!({"directoryPath": "inbox", "fileNameStartsWith": "order-"});
        let backup = mode == FtpMode::Explicit;
        if backup {
            export["backupDirectoryPath"] = json!("archive/2026");
        }
        let h = Harness::with_secrets(&[("FTP_PASSWORD", ftp.password.as_str())]);
        h.load(ftp_pickup_flow(&server.base_url, &ftp, settings, export))
            .await;
        let job = h.run_with("f", RunRequest::default()).await;
        assert_eq!(
            (job.status, job.num_success),
            (JobStatus::Completed, 4),
            "{mode:?}: {:?}",
            h.errors(&job.id).await
        );
        assert_eq!(names(&server), ["a1", "a2", "a3", "b1"], "{mode:?}");
        assert_eq!(listing(&inbox), ["notes.txt"], "{mode:?}");
        if backup {
            assert_eq!(
                listing(&ftp.root().join("archive/2026")),
                ["order-a.csv", "order-b.ndjson.gz"]
            );
        }
        let again = h.run_with("f", RunRequest::default()).await;
        assert_eq!(again.num_success, 0, "{mode:?}");
    }
}

#[tokio::test]
async fn an_ftp_pickup_that_cannot_log_in_or_trust_the_server_fails_saying_why() {
    let ftp = FtpServer::start(FtpMode::Explicit).expect("vsftpd starts");
    let server = TestServer::always(200, json!({})).await;
    std::fs::write(ftp.writable_dir("in").join("a.csv"), "name\na\n").unwrap();
    let export = json!({"directoryPath": "in"});
    let cases = [
        // No trusted certificate: the throwaway CA is nobody's root.
        (
            json!({"type": "ftps"}),
            ftp.password.as_str(),
            "certificate",
        ),
        (
            json!({"type": "ftps", "trustedCertificates": ftp.ca_pem().unwrap()}),
            "wrong",
            "login as sluice",
        ),
        // The server refuses logins without TLS.
        (json!({}), ftp.password.as_str(), "login as sluice"),
    ];
    for (settings, password, why) in cases {
        let h = Harness::with_secrets(&[("FTP_PASSWORD", password)]);
        h.load(ftp_pickup_flow(
            &server.base_url,
            &ftp,
            settings.clone(),
            export.clone(),
        ))
        .await;
        let job = h.run_with("f", RunRequest::default()).await;
        assert_eq!(job.status, JobStatus::Failed, "{settings}");
        let error = &h.errors(&job.id).await[0];
        assert!(
            error
                .message
                .starts_with(&format!("ftp 127.0.0.1:{}", ftp.port))
                && error.message.contains(why),
            "{settings}: {}",
            error.message
        );
    }
    assert_eq!(listing(&ftp.root().join("in")), ["a.csv"]);
    assert!(names(&server).is_empty());
}
