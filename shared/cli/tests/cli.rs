//! The `sluice` binary as a user runs it.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn validate_accepts_the_example_bundle() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/orders/bundle.json"
    );
    let out = sluice().args(["validate", example]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok: 2 connections, 1 exports, 2 imports, 1 flows"
    );
}

#[test]
fn validate_names_each_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.json",
        &json!({
            "connections": [{"_id": "c", "name": "c", "type": "http", "http": {"baseURI": "ftp://x", "requestTimeoutMs": 600000}}],
            "exports": [{"_id": "e", "name": "e", "type": "webhook", "pageSize": 0}],
            "imports": [{"_id": "i", "name": "i", "_connectionId": "c", "type": "http", "http": {"relativeURI": "/x/{{#if}}"}, "evaluator": "response.status ==="}],
            "flows": [{"_id": "f", "name": "f", "schedule": "61 * * * *", "timezone": "Mars/Base", "pageGenerators": [{"_exportId": "exp123"}], "pageProcessors": [{"type": "import", "_importId": "i"}]}]
        }),
    );
    let out = sluice().arg("validate").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "connections[0].http.baseURI: scheme must be http or https",
        "connections[0].http.requestTimeoutMs: must be between 1 and 100000",
        "exports[0].pageSize: must be between 1 and",
        "imports[0].http.relativeURI: Invalid template",
        "imports[0].evaluator: Invalid condition",
        "flows[0].schedule: Invalid cron expression",
        "flows[0].timezone: Unknown time zone 'Mars/Base'",
        "flows[0].pageGenerators[0]._exportId: Export not found: exp123",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[test]
fn validate_knows_the_helpers_and_names_bad_mappings_transforms_and_filter_rules() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/shaped-orders/bundle.json"
    );
    let out = sluice().args(["validate", example]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.json",
        &json!({
            "connections": [{"_id": "c", "name": "c", "type": "http", "http": {"baseURI": "https://x.example"}}],
            "imports": [{"_id": "i", "name": "i", "_connectionId": "c", "type": "http",
                "http": {"relativeURI": "/x/{{hash \"sha256\" \"hex\" record.id}}",
                         "body": "{\"d\": \"{{dateFormat \"YYYY\" record.at}}\", \"n\": {{toFixed record.n 2}}}"}}]
        }),
    );
    let out = sluice().arg("validate").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let bad = write(
        dir.path(),
        "bad.json",
        &json!({
            "connections": [{"_id": "c", "name": "c", "type": "http", "http": {"baseURI": "https://x.example"}}],
            "exports": [{"_id": "e", "name": "e", "type": "webhook",
                "transform": {"type": "expression", "expression": {"rules": [[{"extract": "a[", "generate": "b"}]]}},
                "filter": {"type": "expression", "expression": {"rules": ["and", ["equals", ["extract", "a"]]]}}}],
            "imports": [{"_id": "i", "name": "i", "_connectionId": "c", "type": "http",
                "http": {"relativeURI": "/x"},
                "mapping": {"fields": [
                    {"extract": "at", "generate": "at", "dataType": "date", "extractDateFormat": "LL"},
                    {"extract": "{{frobnicate record.x}}", "generate": "x"}]}}]
        }),
    );
    let out = sluice().arg("validate").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "exports[0].transform.expression.rules[0][0].extract: Invalid path",
        "exports[0].filter.expression.rules[1]: 'equals' takes 2 operand(s), got 1",
        "imports[0].mapping.fields[0].extractDateFormat: 'LL' in 'LL': localized formats",
        "imports[0].mapping.fields[1].extract: ",
        "Unknown helper 'frobnicate'",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[test]
fn syntax_errors_and_unknown_fields_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.json");
    std::fs::write(&p, "{\n  \"flows\": [\n    {\"_id\": \"f\",}\n  ]\n}").unwrap();
    let out = sluice().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let typo = write(
        dir.path(),
        "typo.json",
        &json!({"flows": [{"_id": "f", "name": "f", "shedule": "* * * * *", "pageGenerators": []}]}),
    );
    let out = sluice().arg("validate").arg(&typo).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flows[0]") && err.contains("unknown field `shedule`"),
        "{err}"
    );
}

#[test]
fn run_prints_a_summary_and_exits_by_status() {
    // A flow without page processors: records are read and counted; the filter ignores some.
    let dir = tempfile::tempdir().unwrap();
    let bundle = write(
        dir.path(),
        "b.json",
        &json!({
            "exports": [{"_id": "e", "name": "e", "type": "webhook", "pageSize": 3, "filter": {"expression": "record.keep == 'yes'"}}],
            "flows": [{"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "e"}]}]
        }),
    );
    let records = dir.path().join("r.csv");
    std::fs::write(&records, "id,keep\n1,yes\n2,no\n3,yes\n4,yes\n").unwrap();
    let out = sluice()
        .arg("run")
        .arg(&bundle)
        .arg("--records")
        .arg(&records)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("status completed"), "{stdout}");
    assert!(
        stdout.contains("records 4: success 3, error 0, ignored 1"),
        "{stdout}"
    );
    assert!(stdout.contains("pages 2"), "{stdout}");

    let out = sluice()
        .arg("run")
        .arg(&bundle)
        .arg("--flow")
        .arg("nope")
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no flow 'nope'"));
}

#[test]
fn run_reads_past_a_bad_line_names_the_file_as_given_and_takes_a_format() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "b.json",
        &json!({
            "exports": [{"_id": "e", "name": "e", "type": "webhook", "pageSize": 2}],
            "flows": [{"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "e"}]}]
        }),
    );
    // A name that says nothing of the format, a byte order mark, and a broken line 3.
    let text = "\u{feff}{\"n\": 1}\n{\"n\": 2}\n{\"n\": 3,}\n{\"n\": 4}\n{\"n\": 5}\n";
    std::fs::write(dir.path().join("orders.txt"), text).unwrap();
    let run = |extra: &[&str]| {
        sluice()
            .current_dir(dir.path())
            .args(["run", "b.json", "--records", "orders.txt", "--data", "data"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--format", "ndjson"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("records 5: success 4, error 1, ignored 0"),
        "every line is counted: {stdout}"
    );
    assert!(
        stdout.contains("error unreadable at g0-p000001-r00000: orders.txt line 3: invalid JSON"),
        "{stdout}"
    );
    // Without --format the name says JSON, which the file is not: the job fails, saying so.
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("failed: orders.txt: not a JSON array of records nor one JSON object"),
        "{stdout}"
    );
    let out = run(&["--format", "xml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("'xml' is not a records format"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_out_of_time_is_canceled_and_the_flow_can_run_again_at_once() {
    // Cheap to check, since the sink is the flow's callback target too: a canceled job still
    // gets its after-process call, from the stopped runtime itself.
    let slow =
        SlowRun::with_flow(|base| json!({"afterProcess": [{"url": format!("{base}/done")}]})).await;
    for attempt in 0..2 {
        let sent_before = slow.sent("/orders").len();
        let mut cmd = slow.command();
        cmd.args(["--timeout", "2"]);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The second run starts: the first one's cancel released the flow's lock.
        assert_eq!(
            out.status.code(),
            Some(1),
            "run {attempt}: {stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("status canceled"),
            "run {attempt}: {stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("canceled: job") && stdout.contains("did not finish within 2s"),
            "run {attempt}: {stdout}"
        );
        // Nor is it held up by the connection slot the canceled run's request was holding.
        assert!(
            slow.sent("/orders").len() > sent_before,
            "run {attempt} sent nothing: {stdout}\n{stderr}"
        );
    }
    let done = slow.sent("/done");
    assert_eq!(done.len(), 2, "one after-process call per canceled run");
    assert!(done.iter().all(|d| d.json()["status"] == "canceled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_and_sigterm_cancel_the_run() {
    for (sig, name) in [("INT", "Ctrl-C"), ("TERM", "SIGTERM")] {
        let slow = SlowRun::new().await;
        let sink = &slow.sink;
        let child = slow
            .command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Once the first request reaches the sink the run is under way: interrupt it.
        until("the run sends", || !sink.received().is_empty()).await;
        signal(&child, sig);
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{sig}: {stdout}");
        assert!(stdout.contains("status canceled"), "{sig}: {stdout}");
        assert!(
            stdout.contains(&format!("canceled: stopped by {name}")),
            "{sig}: {stdout}"
        );
        assert!(
            sink.received().len() < 8,
            "{sig}: the run stopped before sending everything"
        );
        // Canceled, not interrupted: the next run starts afresh.
        let out = slow.command().args(["--timeout", "1"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("running flow f: job"), "{sig}: {stderr}");
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn validate_catches_unknown_helpers_and_duplicate_ids_and_warns_on_unset_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = write(
        dir.path(),
        "b.json",
        &json!({
            "connections": [
                {"_id": "c", "name": "c", "type": "http", "http": {"baseURI": "http://h", "auth": {"type": "token", "token": {"token": "secret:partner-token"}}}},
                {"_id": "c", "name": "c", "type": "http", "http": {"baseURI": "http://other"}}
            ],
            "exports": [{"_id": "e", "name": "e", "type": "webhook"}],
            "imports": [{"_id": "i", "name": "i", "_connectionId": "c", "type": "http", "http": {"relativeURI": "/x/{{formatDate record.at}}", "body": "{{#each records}}{{upper name}}{{/each}}"}}],
            "flows": [{"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "e"}], "pageProcessors": [{"type": "import", "_importId": "i"}]}]
        }),
    );
    let out = sluice()
        .arg("validate")
        .arg(&bundle)
        .env_remove("SLUICE_SECRET_PARTNER_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "imports[0].http.relativeURI: Unknown helper 'formatDate'",
        "imports[0].http.body: Unknown helper 'upper'",
        "connections[1]._id: 'c' is already the _id of connections[0]",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(
        stderr_of(&out).contains("warning: connections[0].http.auth.token.token: secret:partner-token is not set here (SLUICE_SECRET_PARTNER_TOKEN"),
        "{}",
        stderr_of(&out)
    );
    // Set, the warning goes; a valid bundle with an unset secret still validates (exit 0).
    let fine = write(
        dir.path(),
        "fine.json",
        &json!({"connections": [{"_id": "c", "name": "c", "type": "http", "http": {"baseURI": "http://h", "headers": [{"name": "X-Api-Key", "value": "secret:k"}]}}]}),
    );
    let out = sluice()
        .arg("validate")
        .arg(&fine)
        .env_remove("SLUICE_SECRET_K")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("connections[0].http.headers[0].value: secret:k is not set"));
    let out = sluice()
        .arg("validate")
        .arg(&fine)
        .env("SLUICE_SECRET_K", "x")
        .output()
        .unwrap();
    assert!(!stderr_of(&out).contains("warning"), "{}", stderr_of(&out));
}

#[test]
fn wrong_shapes_name_the_field_and_say_what_was_expected_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            json!({"exports": [{"_id": "e", "name": "e", "type": "webhook", "pageSize": "10"}]}),
            "exports[0].pageSize: invalid type: string \"10\", expected a whole number ≥ 1",
        ),
        (
            json!({"connections": [{"_id": "c", "name": "c", "type": "http", "http": {"baseURI": "http://h"}, "rateLimit": {"requestsPerSecond": "5"}}]}),
            "connections[0].rateLimit.requestsPerSecond: invalid type: string \"5\", expected a number",
        ),
        (json!([]), "a bundle must be a JSON object, not a list"),
        (
            json!({"flows": {"_id": "f", "name": "f"}}),
            "flows: invalid type: an object, expected a list",
        ),
    ];
    for (i, (doc, expected)) in cases.into_iter().enumerate() {
        let p = write(dir.path(), &format!("b{i}.json"), &doc);
        let out = sluice().arg("validate").arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr_of(&out);
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
        for rust in ["usize", "u32", "f64", "struct", "sequence"] {
            assert!(!err.contains(rust), "`{rust}` in:\n{err}");
        }
    }
}

#[test]
fn a_bundle_with_a_utf8_byte_order_mark_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bom.json");
    std::fs::write(
        &p,
        "\u{feff}{\"exports\": [{\"_id\": \"e\", \"name\": \"e\", \"type\": \"webhook\"}]}",
    )
    .unwrap();
    let out = sluice().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 exports"));
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec![
            "dev".to_string(),
            "sink".into(),
            "--port".into(),
            port.to_string(),
        ],
        vec![
            "dev".to_string(),
            "--port".into(),
            port.to_string(),
            "--api-key".into(),
            "k".into(),
            "--data".into(),
            dir.path().join("d").display().to_string(),
        ],
    ] {
        let out = sluice().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("--port"),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_plain_text_when_not_on_a_terminal() {
    let sink = TestServer::always(200, json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = write(
        dir.path(),
        "b.json",
        &json!({
            "connections": [{"_id": "c", "name": "c", "type": "http", "http": {"baseURI": sink.base_url}}],
            "exports": [{"_id": "e", "name": "e", "type": "webhook"}],
            "imports": [{"_id": "i", "name": "i", "_connectionId": "c", "type": "http", "http": {"relativeURI": "/orders"}}],
            "flows": [{"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "e"}], "pageProcessors": [{"type": "import", "_importId": "i"}]}]
        }),
    );
    std::fs::write(dir.path().join("r.ndjson"), "{\"n\": 1}\n").unwrap();
    let out = tokio::task::spawn_blocking(move || {
        sluice()
            .arg("run")
            .arg(&bundle)
            .arg("--records")
            .arg(dir.path().join("r.ndjson"))
            .arg("--data")
            .arg(dir.path().join("data"))
            .env("SLUICE_LOG", "debug")
            .env_remove("NO_COLOR")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("DEBUG"), "debug logs were written: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in piped logs:\n{err}"
    );
    assert_eq!(sink.received().len(), 1, "loopback is allowed locally");
}

#[test]
fn help_says_where_local_connections_may_go() {
    for command in ["run", "dev"] {
        let out = sluice().args([command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("loopback") && help.contains("--allow-private-addresses"),
            "{command}: {help}"
        );
    }
}

/// `sluice dev` over `data` with the slow run's bundle loaded through its API.
async fn start_dev_with(slow: &SlowRun, data: &std::path::Path) -> (std::process::Child, String) {
    let (dev, base) = start_dev(data).await;
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(slow.dir.path().join("slow.json")).unwrap()).unwrap();
    let loaded = reqwest::Client::new()
        .post(format!("{base}/flows/import-template"))
        .bearer_auth("k")
        .json(&bundle)
        .send()
        .await
        .unwrap();
    assert_eq!(loaded.status(), 201, "{}", loaded.text().await.unwrap());
    (dev, base)
}

/// The job as `GET /jobs/{id}` of the API at `base` shows it.
async fn get_job(base: &str, id: &str) -> serde_json::Value {
    api_get(base, &format!("/jobs/{id}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_cancel_stops_a_job_that_sluice_dev_runs_locally_or_through_its_api() {
    let slow =
        SlowRun::with_flow(|base| json!({"afterProcess": [{"url": format!("{base}/done")}]})).await;
    let data = slow.dir.path().join("dev-data");
    let http = reqwest::Client::new();
    let (dev, base) = start_dev_with(&slow, &data).await;
    for how in ["local", "api"] {
        let records: Vec<_> = (0..8).map(|n| json!({"n": n})).collect();
        let started: serde_json::Value = http
            .post(format!("{base}/flows/f/run"))
            .bearer_auth("k")
            .json(&json!({ "records": records }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let job_id = started["_jobId"].as_str().unwrap().to_string();
        let before = slow.sent("/orders").len();
        for _ in 0..200 {
            if slow.sent("/orders").len() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let mut cancel = sluice();
        cancel.args(["cancel", &job_id]);
        match how {
            "local" => cancel.arg("--data").arg(&data),
            _ => cancel.args(["--api", &base, "--api-key", "k"]),
        };
        let out = tokio::task::spawn_blocking(move || cancel.output().unwrap())
            .await
            .unwrap();
        assert!(out.status.success(), "{how}: {}", stderr_of(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("job {job_id} canceled")),
            "{how}"
        );
        let sent = slow.sent("/orders").len();
        // Three more turns of the slow sink: nothing of the canceled job goes out.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            slow.sent("/orders").len(),
            sent,
            "{how}: sent after the cancel"
        );
        let after = get_job(&base, &job_id).await;
        assert_eq!(after["status"], "canceled", "{how}: {after}");
        let counted = ["numSuccess", "numError", "numIgnore"]
            .iter()
            .map(|k| after[k].as_u64().unwrap())
            .sum::<u64>();
        assert_eq!(counted, 8, "{how}: every record counted: {after}");
        assert_eq!(
            after["numSuccess"].as_u64().unwrap() as usize,
            sent - before,
            "{how}: {after}"
        );

        let mut again = sluice();
        again.args(["cancel", &job_id, "--data"]).arg(&data);
        let out = tokio::task::spawn_blocking(move || again.output().unwrap())
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr_of(&out).contains("already finished"),
            "{}",
            stderr_of(&out)
        );
        // Canceled by `sluice cancel` itself (local) or by the API of `sluice dev`: either
        // way the flow's after-process callback gets the canceled job, once.
        let done = slow.sent("/done");
        let calls: Vec<_> = done.iter().filter(|d| d.json()["_id"] == job_id).collect();
        assert_eq!(calls.len(), 1, "{how}: after-process calls {done:?}");
        assert_eq!(calls[0].json()["status"], "canceled", "{how}");
    }
    stop(dev, "INT").await;
}

/// `sluice jobs`, `sluice errors JOB` and `sluice retry JOB` over a run whose target failed
/// its first two requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_errors_and_retry_from_the_command_line() {
    let sink = TestServer::start(|n, _| {
        if n < 2 {
            Answer::json(500, json!({"error": "down"}))
        } else {
            Answer::json(201, json!({"id": n}))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = write(
        dir.path(),
        "b.json",
        &json!({
            "connections": [{"_id": "c", "name": "sink", "type": "http",
                "http": {"baseURI": sink.base_url, "retry": {"maxAttempts": 1}}}],
            "exports": [{"_id": "e", "name": "incoming", "type": "webhook"}],
            "imports": [{"_id": "i", "name": "post orders", "_connectionId": "c", "type": "http",
                "http": {"relativeURI": "/orders"}}],
            "flows": [{"_id": "f", "name": "orders", "pageGenerators": [{"_exportId": "e"}],
                "pageProcessors": [{"type": "import", "_importId": "i"}]}]
        }),
    );
    std::fs::write(dir.path().join("r.ndjson"), "{\"n\": 1}\n{\"n\": 2}\n").unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = sluice()
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let bundle = bundle.to_str().unwrap();
    let records = dir.path().join("r.ndjson");
    let (code, out, err) = run(&["run", bundle, "--records", records.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}{err}");

    let (code, out, _) = run(&["jobs", "--json"]);
    assert_eq!(code, Some(0));
    let jobs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(jobs[0]["status"], "completed_with_errors");
    let job = jobs[0]["_id"].as_str().unwrap().to_string();
    let (_, out, _) = run(&["jobs", "--status", "completed"]);
    assert!(out.contains("no jobs"), "{out}");
    let (code, _, err) = run(&["jobs", "--status", "asleep"]);
    assert_eq!(code, Some(2), "clap refuses: {err}");
    assert!(err.contains("'asleep' is not"), "{err}");

    let (code, out, _) = run(&["errors", &job]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("step 0 (post orders)  evaluator: status 500"),
        "{out}"
    );
    let (_, out, _) = run(&["errors", &job, "--csv"]);
    assert!(out.starts_with("_id,processorIndex,_importId"), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    let (_, out, _) = run(&["errors", &job, "--code", "template"]);
    assert!(out.contains("no errors that match"), "{out}");

    let (code, out, err) = run(&["retry", &job]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("records 2: success 2, error 0"), "{out}");
    assert_eq!(sink.received().len(), 4);
    let (_, out, _) = run(&["jobs", "--json"]);
    let jobs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(jobs[0]["trigger"], "retry");
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    let (_, out, _) = run(&["errors", &job, "--resolved", "false"]);
    assert!(
        out.contains("no errors that match"),
        "a retry resolves what it retried: {out}"
    );

    // Cleaning: the default retention (30 days) keeps today's jobs; --older-than-days 0
    // takes every finished one, and --dry-run only says so.
    let (code, out, _) = run(&["clean"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("deleted 0 job(s)"), "{out}");
    let (_, out, _) = run(&["clean", "--dry-run", "--older-than-days", "0"]);
    assert!(
        out.starts_with("dry run: would delete 2 job(s) with 2 error(s)") && out.contains(&job),
        "{out}"
    );
    let (_, out, _) = run(&["jobs", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (_, out, _) = run(&["clean", "--older-than-days", "0"]);
    assert!(out.starts_with("deleted 2 job(s), 2 error(s)"), "{out}");
    let (_, out, _) = run(&["jobs"]);
    assert!(out.contains("no jobs"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_shows_the_routed_example_step_by_step_and_sends_nothing() {
    let target = TestServer::always(201, json!({"id": "never"})).await;
    let dir = tempfile::tempdir().unwrap();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/routed-orders");
    let mut bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{examples}/bundle.json")).unwrap())
            .unwrap();
    bundle["connections"][0]["http"]["baseURI"] = json!(target.base_url);
    bundle["connections"][0]["http"]["auth"] =
        json!({"type": "token", "token": {"token": "secret:ORDERS_TOKEN"}});
    let bundle = write(dir.path(), "bundle.json", &bundle);
    let reply = write(
        dir.path(),
        "reply.json",
        &json!({"status": 201, "body": {"id": "o-1"}}),
    );
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            sluice()
                .current_dir(&dir)
                .arg("preview")
                .arg(&bundle)
                .arg("--records")
                .arg(format!("{examples}/orders.ndjson"))
                .args(["--limit", "2", "--reply"])
                .arg(&reply)
                .env("SLUICE_SECRET_ORDERS_TOKEN", "tok-very-secret")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("tok-very-secret"), "{stdout}");
    let preview: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let records = preview["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "--limit 2: {stdout}");
    let steps = &records[0]["steps"];
    assert_eq!(steps[0]["step"], "export");
    assert_eq!(steps[1]["step"], "routers[0]");
    assert_eq!(steps[1]["branches"], json!(["By region: Europe"]));
    let import = &steps[2];
    assert_eq!(import["step"], "routers[0].branches[0].pageProcessors[0]");
    assert_eq!(import["mapped"]["orderedAt"], "27.03.2026 00:15");
    let request = &import["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["url"], format!("{}/eu/orders", target.base_url));
    assert!(
        request["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["Authorization", "********"])),
        "{request}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(request["body"].as_str().unwrap()).unwrap(),
        import["mapped"]
    );
    assert_eq!(import["reply"]["status"], 201);
    assert_eq!(import["outcome"]["outcome"], "succeeds");
    assert_eq!(
        records[1]["steps"][1]["branches"],
        json!(["By region: Everyone else"])
    );
    assert!(target.received().is_empty(), "nothing is sent");
    assert!(!dir.path().join(".sluice").exists(), "nothing is stored");
}

/// A load test through the demo sink: it keeps the last 1000 orders (and counts them all), so
/// its memory does not grow with what it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_sink_keeps_the_most_recent_orders_only() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["dev", "sink", "--port", "0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let client = reqwest::Client::new();
    for n in 0..1005 {
        let r = client
            .post(format!("{base}/orders"))
            .json(&json!({"n": n}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = client.get(format!("{base}/orders")).send().await.unwrap();
    assert_eq!(r.headers()["x-orders-received"], "1005");
    let kept: Vec<serde_json::Value> = r.json().await.unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(kept.len(), 1000);
    assert_eq!(kept[0]["order"]["n"], 5, "the oldest five went");
    assert_eq!(kept[999]["id"], "ord-1005");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_dev_serves_webhook_listeners_that_keep_verified_deliveries_and_refuse_the_rest() {
    use sluice_testkit::webhooks::{self, arrived, cases};
    // The HMAC key's secret, inherited by `sluice dev`.
    std::env::set_var(webhooks::KEY_VAR, webhooks::KEY);
    // A slow target: the first delivery's job still runs when the second comes.
    let sink = sluice_testkit::http::TestServer::start(|_, _| sluice_testkit::http::Answer::Slow {
        delay: Duration::from_millis(150),
        then: Box::new(sluice_testkit::http::Answer::json(201, json!({}))),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (dev, base) = start_dev(&dir.path().join("data")).await;
    let loaded = reqwest::Client::new()
        .post(format!("{base}/flows/import-template"))
        .bearer_auth("k")
        .json(&webhooks::bundle(&sink.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(loaded.status(), 201, "{}", loaded.text().await.unwrap());

    // The token flow's first job takes 300 ms at least, so the token case's good delivery
    // comes while it runs: it waits for it, and is not lost.
    let token = &cases()[0];
    assert_eq!(token.good.send(&base).await.0, 204);
    webhooks::deliver_every_case(&base).await;
    // Past the limit: refused, whatever the check would say.
    let mut big = token.good.clone();
    big.body = vec![b' '; sluice_core::stages::trigger::listener::MAX_BODY_BYTES + 1];
    let (status, body) = big.send(&base).await;
    assert_eq!(status, 413, "{body}");

    until("every kept record reached the target", || {
        webhooks::all_arrived(&sink.received(), 1)
    })
    .await;
    // One job per kept delivery, none for a refused one; the token flow's second job
    // started after its first ended.
    for case in cases() {
        let kept = if case.export == "wh-token" { 2 } else { 1 };
        let jobs = finished_jobs(&base, &format!("f-{}", case.export), kept).await;
        assert_eq!(jobs.len(), kept, "{}: {jobs:?}", case.export);
        for job in &jobs {
            assert_eq!(job["trigger"], "webhook", "{job}");
            assert_eq!(job["status"], "completed", "{job}");
            assert_eq!(job["numSuccess"], 2, "{job}");
        }
        if kept == 2 {
            // Newest first.
            let (second, first) = (&jobs[0], &jobs[1]);
            assert!(
                second["startedAt"].as_str() >= first["endedAt"].as_str(),
                "{jobs:?}"
            );
        }
    }
    assert_eq!(arrived(&sink.received(), "wh-hmac-changed"), 0);
    stop(dev, "TERM").await;
}
