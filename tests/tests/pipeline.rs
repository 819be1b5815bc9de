//! Whole flows through the local runtime against a real HTTP server on loopback.

use serde_json::json;
use sluice_e2e::*;
use sluice_model::FailureCode;
use sluice_model::{JobStatus, RunKind, RunRequest};
use std::time::Duration;

#[tokio::test]
async fn records_are_rendered_posted_mapped_and_judged() {
    let server =
        TestServer::start(|n, _| Answer::json(201, json!({"id": format!("ord-{n}")}))).await;
    let h = Harness::new();
    h.load(http_bundle(
        &server.base_url,
        json!({"responseMapping": {"fields": [{"extract": "id", "generate": "orderId"}]}}),
        json!({}),
    ))
    .await;
    let job = h.run("f", orders(25)).await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    assert_eq!(
        (
            job.num_success,
            job.num_error,
            job.num_ignore,
            job.num_pages
        ),
        (25, 0, 0, 3)
    );
    assert_counts(&job, 25);
    let got = server.received();
    assert_eq!(got.len(), 25, "each record posted exactly once");
    let mut names: Vec<String> = got
        .iter()
        .map(|r| r.json()["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert!(names.contains(&"order 7".to_string()));
    assert!(got.iter().all(|r| r.method == "POST"
        && r.path == "/orders"
        && r.headers["content-type"] == "application/json"));
}

#[tokio::test]
async fn failures_become_readable_errors_and_counts_hold() {
    // Every third record is refused with 422 (not retried); the rest succeed.
    let server = TestServer::start(|_, r| {
        let qty = r.json()["qty"].as_u64().unwrap_or(0);
        if qty % 3 == 0 {
            Answer::json(422, json!({"error": "bad qty"}))
        } else {
            Answer::json(200, json!({"ok": true}))
        }
    })
    .await;
    let h = Harness::new();
    h.load(http_bundle(
        &server.base_url,
        json!({"filter": {"expression": "record.qty < 20"}}),
        json!({}),
    ))
    .await;
    let job = h.run("f", orders(30)).await;
    assert_eq!(job.status, JobStatus::CompletedWithErrors);
    // qty 0..19 sent (20), of which 0,3,..,18 (7) fail; 10 filtered out
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (13, 7, 10)
    );
    assert_counts(&job, 30);
    assert_eq!(
        server.received().len(),
        20,
        "filtered records are never sent"
    );
    let errors = h.errors(&job.id).await;
    assert_eq!(errors.len(), 7);
    let e = &errors[0];
    assert_eq!(e.code, FailureCode::Evaluator);
    assert!(
        e.message.contains("status 422") && e.message.contains("bad qty"),
        "{}",
        e.message
    );
    assert_eq!(e.response.as_ref().unwrap()["status"], 422);
    assert!(e.request.as_ref().unwrap()["body"]
        .as_str()
        .unwrap()
        .contains("order"));
}

#[tokio::test]
async fn retries_5xx_and_honours_retry_after_on_429() {
    // Request 0: 500; request 1: 429 Retry-After 1; then 201.
    let server = TestServer::start(|n, _| match n {
        0 => Answer::json(500, json!({"e": "boom"})),
        1 => Answer::json(429, json!({"e": "slow down"})).with_header("retry-after", "1"),
        _ => Answer::json(201, json!({"id": "x"})),
    })
    .await;
    let h = Harness::new();
    h.load(http_bundle(
        &server.base_url,
        json!({}),
        json!({"concurrencyLevel": 1}),
    ))
    .await;
    let job = h.run("f", orders(1)).await;
    assert_eq!((job.num_success, job.num_error), (1, 0), "{job:?}");
    let got = server.received();
    assert_eq!(got.len(), 3, "500 and 429 were retried");
    let waited = got[2].at.duration_since(got[1].at);
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {waited:?}"
    );
}

#[tokio::test]
async fn exhausted_retries_and_timeouts_are_errors_not_losses() {
    let server = TestServer::start(|_, r| {
        if r.json()["qty"] == 0 {
            Answer::json(503, json!({"e": "down"}))
        } else {
            Answer::Slow {
                delay: Duration::from_secs(3),
                then: Box::new(Answer::json(200, json!({}))),
            }
        }
    })
    .await;
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({"http": {"requestTimeoutMs": 300, "retry": {"maxAttempts": 2, "baseDelayMs": 10, "maxDelayMs": 50}}}))).await;
    let job = h.run("f", orders(2)).await;
    assert_eq!((job.num_success, job.num_error), (0, 2));
    let errors = h.errors(&job.id).await;
    let by_code: Vec<FailureCode> = errors.iter().map(|e| e.code).collect();
    assert!(
        by_code.contains(&FailureCode::Evaluator),
        "503 after retries is judged by the evaluator: {by_code:?}"
    );
    let timeout = errors
        .iter()
        .find(|e| e.code == FailureCode::Network)
        .expect("a network error");
    assert!(
        timeout.message.contains("timed out after 300 ms")
            && timeout.message.contains("2 attempts"),
        "{}",
        timeout.message
    );
    assert_eq!(server.received().len(), 4, "each record tried twice");
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let server = TestServer::start(|n, _| {
        if n == 0 {
            Answer::Drop
        } else {
            Answer::json(200, json!({}))
        }
    })
    .await;
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({})))
        .await;
    let job = h.run("f", orders(1)).await;
    assert_eq!(
        (job.num_success, job.num_error),
        (1, 0),
        "{:?}",
        h.errors(&job.id).await
    );
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn auth_kinds_reach_the_server() {
    let server = TestServer::always(200, json!({})).await;
    let cases = [
        (
            json!({"type": "basic", "basic": {"username": "u", "password": "secret:pw"}}),
            "authorization",
            "Basic dTpwLXc=",
        ),
        (
            json!({"type": "token", "token": {"token": "secret:tok"}}),
            "authorization",
            "Bearer t0k",
        ),
        (
            json!({"type": "apikey", "apikey": {"in": "header", "name": "X-Api-Key", "value": "k1"}}),
            "x-api-key",
            "k1",
        ),
    ];
    for (auth, header, expected) in cases {
        let h = Harness::with_secrets(&[("pw", "p-w"), ("tok", "t0k")]);
        h.load(http_bundle(
            &server.base_url,
            json!({}),
            json!({"http": {"auth": auth}}),
        ))
        .await;
        let before = server.received().len();
        let job = h.run("f", orders(1)).await;
        assert_eq!(job.num_success, 1, "{:?}", h.errors(&job.id).await);
        let got = &server.received()[before];
        assert_eq!(got.headers.get(header).map(String::as_str), Some(expected));
    }
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({"http": {"auth": {"type": "apikey", "apikey": {"in": "query", "name": "key", "value": "q1"}}}}))).await;
    let before = server.received().len();
    h.run("f", orders(1)).await;
    assert_eq!(server.received()[before].query, "key=q1");
}

#[tokio::test]
async fn oauth2_token_is_fetched_once_and_cached() {
    let server = TestServer::start(|_, r| {
        if r.path == "/token" {
            assert_eq!(r.headers["authorization"], "Basic Y2lkOmNzZWNyZXQ=");
            assert!(r.body.contains("grant_type=client_credentials"));
            Answer::json(200, json!({"access_token": "tok-1", "expires_in": 3600}))
        } else {
            Answer::json(200, json!({}))
        }
    })
    .await;
    let h = Harness::new();
    let token_uri = format!("{}/token", server.base_url);
    h.load(http_bundle(&server.base_url, json!({}), json!({"http": {"auth": {"type": "oauth2", "oauth2": {"tokenURI": token_uri, "clientId": "cid", "clientSecret": "csecret"}}}}))).await;
    let job = h.run("f", orders(12)).await;
    assert_eq!(job.num_success, 12);
    let got = server.received();
    assert_eq!(
        got.iter().filter(|r| r.path == "/token").count(),
        1,
        "one token for all requests"
    );
    assert!(got
        .iter()
        .filter(|r| r.path == "/orders")
        .all(|r| r.headers["authorization"] == "Bearer tok-1"));
}

#[tokio::test]
async fn concurrency_level_is_honoured() {
    let server = TestServer::start(|_, _| Answer::Slow {
        delay: Duration::from_millis(100),
        then: Box::new(Answer::json(200, json!({}))),
    })
    .await;
    let h = Harness::new();
    h.load(http_bundle(
        &server.base_url,
        json!({}),
        json!({"concurrencyLevel": 2}),
    ))
    .await;
    let job = h.run("f", orders(12)).await;
    assert_eq!(job.num_success, 12);
    assert!(
        server.max_in_flight() <= 2,
        "max in flight {}",
        server.max_in_flight()
    );
    assert!(server.max_in_flight() >= 1);
}

#[tokio::test]
async fn a_second_manual_run_gets_conflict_while_the_first_runs() {
    let server = TestServer::start(|_, _| Answer::Slow {
        delay: Duration::from_millis(300),
        then: Box::new(Answer::json(200, json!({}))),
    })
    .await;
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({})))
        .await;
    let s = h.sluice();
    use sluice_core::runs::start_run;
    use sluice_model::{RunKind, RunRequest};
    let first = start_run(
        &s,
        "f",
        RunRequest {
            records: Some(orders(3)),
            ..Default::default()
        },
        RunKind::Manual,
    )
    .await
    .unwrap()
    .unwrap();
    let second = start_run(&s, "f", RunRequest::default(), RunKind::Manual).await;
    let Err(sluice_core::Error::Conflict(refused)) = second else {
        panic!("{second:?}")
    };
    // It names the running job and when its lease ends.
    let lease = s.store.lock_holder("f").await.unwrap().unwrap().lease_until;
    let expected = format!("Flow is currently running: job {}, started ", first.job_id);
    assert!(refused.starts_with(&expected), "{refused}");
    assert!(
        refused.contains(&format!(
            "; its run lock's lease ends at {} (renewed while the job makes progress)",
            lease.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        "{refused}"
    );
    assert!(
        refused.ends_with(&format!(
            "cancel it (POST /jobs/{0}/cancel, `sluice cancel {0}`)",
            first.job_id
        )),
        "says how to end it: {refused}"
    );
    let queued = start_run(&s, "f", RunRequest::default(), RunKind::Schedule)
        .await
        .unwrap();
    assert!(queued.is_none(), "a scheduled run queues instead");
    let job = h.wait(&first.job_id).await;
    assert_eq!(job.num_success, 3);
    // The queued run starts when the first finishes, and then the lock is free again.
    h.runtime.wait_idle(Duration::from_secs(30)).await.unwrap();
    let jobs = s.store.list_jobs("f", 10).await.unwrap();
    assert_eq!(jobs.len(), 2, "the queued scheduled run ran");
    assert!(jobs.iter().all(|j| j.status.is_finished()));
    assert!(start_run(&s, "f", RunRequest::default(), RunKind::Manual)
        .await
        .unwrap()
        .is_some());
}

/// A process killed after closing its job but before the after-run work (a `sluice run`
/// killed there, a Lambda timed out there) leaves the flow's run lock held by a finished job,
/// and a redelivered evaluate finds the job closed and does nothing. The next run takes the
/// lock over at once, first moving the closed job's watermark (so its window is not read
/// again), instead of being refused until the lease runs out.
#[tokio::test]
async fn a_run_lock_left_by_a_closed_job_is_taken_over_at_once() {
    use chrono::TimeZone;
    use sluice_core::runs::{start_run, watermark};
    let server = TestServer::start(|_, _| Answer::json(201, json!({}))).await;
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({})))
        .await;
    let s = h.sluice();
    let now = chrono::Utc::now();
    let window_end = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut closed = sluice_model::Job::new("closed".into(), "f".into(), RunKind::Schedule, now);
    closed.end_date = Some(window_end);
    closed.delta_exports.insert("exp".into(), None);
    let lease = s.settings.lock_lease;
    assert!(s
        .store
        .acquire_lock("f", "closed", now, lease)
        .await
        .unwrap());
    assert!(s.store.create_job(&closed).await.unwrap());
    assert!(s
        .store
        .close_job("closed", JobStatus::Completed, now, None)
        .await
        .unwrap());
    // Its process stops here: the lock is still held, the watermark not moved.

    let request = RunRequest {
        records: Some(orders(2)),
        ..Default::default()
    };
    let started = start_run(&s, "f", request, RunKind::Manual)
        .await
        .expect("the lock of a closed job does not refuse a run")
        .unwrap();
    assert_eq!(
        watermark::read(&s, "f", "exp").await.unwrap(),
        Some(window_end),
        "the closed job's watermark moved before the next run read it"
    );
    assert_eq!(
        s.store.lock_holder("f").await.unwrap().map(|l| l.owner),
        Some(started.job_id.clone())
    );
    let job = h.wait(&started.job_id).await;
    assert_eq!(job.num_success, 2);
}

/// A process killed between taking the run lock and queuing the run order leaves a job that
/// holds the lock with nothing queued: the next local start cancels it (once it is past the
/// moment a live process could still be queuing) instead of refusing the flow for the lease.
#[tokio::test]
async fn a_job_whose_run_order_was_never_queued_does_not_hold_its_flow() {
    use sluice_core::runs::start_run;
    let server = TestServer::start(|_, _| Answer::json(201, json!({}))).await;
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({})))
        .await;
    let s = h.sluice();
    let lease = s.settings.lock_lease;
    let now = chrono::Utc::now();
    let opening = |flow: &str, job: &str, at| {
        let s = s.clone();
        let (flow, job) = (flow.to_string(), job.to_string());
        async move {
            assert!(s.store.acquire_lock(&flow, &job, at, lease).await.unwrap());
            let job = sluice_model::Job::new(job, flow, RunKind::Manual, at);
            assert!(s.store.create_job(&job).await.unwrap());
        }
    };
    // Killed a minute ago, right after opening its job.
    opening("f", "stuck", now - chrono::Duration::seconds(60)).await;
    // Opened just now by a live process that is about to queue its order.
    opening("g", "opening", now).await;
    let run = || RunRequest {
        records: Some(orders(2)),
        ..Default::default()
    };
    let refused = start_run(&s, "f", run(), RunKind::Manual)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("job stuck"),
        "before the start adopts, the stuck job holds the flow: {refused}"
    );

    assert!(h.runtime.adopt(None).await.unwrap().is_empty());
    let stuck = s.store.get_job("stuck").await.unwrap().unwrap();
    assert_eq!(stuck.status, JobStatus::Canceled);
    assert!(
        stuck
            .message
            .as_deref()
            .is_some_and(|m| m.contains("before queuing its run order")),
        "{stuck:?}"
    );
    let opening = s.store.get_job("opening").await.unwrap().unwrap();
    assert!(
        !opening.status.is_finished(),
        "a job being opened is left alone"
    );
    assert_eq!(
        s.store.lock_holder("g").await.unwrap().map(|l| l.owner),
        Some("opening".to_string())
    );

    let started = start_run(&s, "f", run(), RunKind::Manual)
        .await
        .expect("the flow is free")
        .unwrap();
    assert_eq!(h.wait(&started.job_id).await.num_success, 2);
}

#[tokio::test]
async fn lookups_enrich_records_and_processors_run_in_order_then_chain() {
    let server = TestServer::start(|_, r| match r.path.as_str() {
        p if p.starts_with("/customers/") => {
            Answer::json(200, json!({"tier": format!("tier-{}", &p[11..])}))
        }
        _ => Answer::json(201, json!({"id": "o"})),
    })
    .await;
    let h = Harness::new();
    let mut bundle = http_bundle(
        &server.base_url,
        json!({"http": {"body": "{\"name\": {{json record.name}}, \"tier\": {{json record.tier}}}"}}),
        json!({}),
    );
    bundle["exports"].as_array_mut().unwrap().push(json!({"_id": "lookup", "name": "lookup", "type": "http", "_connectionId": "conn", "http": {"relativeURI": "/customers/{{record.qty}}"}}));
    bundle["flows"][0]["pageProcessors"] = json!([
        {"type": "export", "_exportId": "lookup", "responseMapping": {"fields": [{"extract": "tier", "generate": "tier"}]}},
        {"type": "import", "_importId": "imp"}
    ]);
    bundle["flows"][0]["_runNextFlowIds"] = json!(["g"]);
    bundle["flows"].as_array_mut().unwrap().push(json!({"_id": "g", "name": "next", "pageGenerators": [{"_exportId": "exp"}], "pageProcessors": []}));
    h.load(bundle).await;
    let job = h.run("f", orders(4)).await;
    assert_eq!(job.num_success, 4, "{:?}", h.errors(&job.id).await);
    let posts: Vec<_> = server
        .received()
        .into_iter()
        .filter(|r| r.path == "/orders")
        .collect();
    assert_eq!(posts.len(), 4);
    let mut tiers: Vec<String> = posts
        .iter()
        .map(|r| r.json()["tier"].as_str().unwrap().to_string())
        .collect();
    tiers.sort();
    assert_eq!(tiers, vec!["tier-0", "tier-1", "tier-2", "tier-3"]);
    let chained = h.sluice().store.list_jobs("g", 5).await.unwrap();
    assert_eq!(chained.len(), 1, "g ran after f");
    assert_eq!(chained[0].trigger, sluice_model::RunKind::Chain);
}

/// An upsert: a lookup finds which records exist (its responseMapping writes `erpId`, null
/// when the search found nothing), and the import's existence check (`existingExtract`)
/// sends each record the update (PUT to its own URI, its own body) or the create.
#[tokio::test]
async fn upserts_send_each_record_the_update_or_the_create_its_existence_picks() {
    let server = TestServer::start(|_, r| match r.path.as_str() {
        "/customers"
            if r.query.contains("name=order%201") || r.query.contains("name=order%203") =>
        {
            let n = &r.query[r.query.len() - 1..];
            Answer::json(200, json!({"results": [{"id": format!("c-{n}")}]}))
        }
        "/customers" => Answer::json(200, json!({"results": []})),
        _ => Answer::json(200, json!({"ok": true})),
    })
    .await;
    let h = Harness::new();
    let mut bundle = http_bundle(
        &server.base_url,
        json!({"http": {"existingExtract": "erpId",
            "update": {"relativeURI": "/orders/{{record.erpId}}",
                       "body": "{\"qty\": {{json record.qty}}}"}}}),
        json!({}),
    );
    bundle["exports"].as_array_mut().unwrap().push(json!({"_id": "lookup", "name": "lookup", "type": "http", "_connectionId": "conn", "http": {"relativeURI": "/customers?name={{record.name}}"}}));
    bundle["flows"][0]["pageProcessors"] = json!([
        {"type": "export", "_exportId": "lookup", "responseMapping": {"fields": [{"extract": "results[0].id", "generate": "erpId"}]}},
        {"type": "import", "_importId": "imp"}
    ]);
    h.load(bundle).await;
    let job = h.run("f", orders(5)).await;
    assert_eq!(job.num_success, 5, "{:?}", h.errors(&job.id).await);
    let mut sent: Vec<(String, String, String)> = server
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with("/orders"))
        .map(|r| (r.method.clone(), r.path.clone(), r.body.clone()))
        .collect();
    sent.sort();
    let create = |i: usize| {
        (
            "POST".to_string(),
            "/orders".to_string(),
            format!("{{\"name\": \"order {i}\", \"qty\": {i}}}"),
        )
    };
    let update = |i: usize| {
        (
            "PUT".to_string(),
            format!("/orders/c-{i}"),
            format!("{{\"qty\": {i}}}"),
        )
    };
    assert_eq!(
        sent,
        vec![create(0), create(2), create(4), update(1), update(3)]
    );
}

/// `ignoreExisting` sends only the records that do not exist, `ignoreMissing` only those
/// that do; the others are counted as ignored and never sent.
#[tokio::test]
async fn ignore_existing_and_ignore_missing_skip_records_counted_as_ignored() {
    for (flag, sent_names) in [
        (
            "ignoreExisting",
            ["order 0", "order 2", "order 4"].as_slice(),
        ),
        ("ignoreMissing", ["order 1", "order 3"].as_slice()),
    ] {
        let server = TestServer::start(|_, _| Answer::json(201, json!({"id": "o"}))).await;
        let h = Harness::new();
        let mut import = json!({"http": {"existingExtract": "erp.id"}});
        import[flag] = json!(true);
        h.load(http_bundle(&server.base_url, import, json!({})))
            .await;
        let records: Vec<_> = orders(5)
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                // Odd records exist; an empty id is no id.
                r["erp"] = json!({"id": if i % 2 == 1 { json!(format!("e{i}")) } else if i == 2 { json!("") } else { json!(null) }});
                r
            })
            .collect();
        let job = h.run("f", records).await;
        let sent = sent_names.len() as u64;
        assert_eq!(
            (job.num_success, job.num_error, job.num_ignore),
            (sent, 0, 5 - sent),
            "{flag}"
        );
        assert_counts(&job, 5);
        let mut got: Vec<String> = server
            .received()
            .iter()
            .map(|r| r.json()["name"].as_str().unwrap().to_string())
            .collect();
        got.sort();
        assert_eq!(got, sent_names, "{flag}");
    }
}

/// A batch target: each request's body is a list of records, and the reply lists one result
/// per record (`ref`: its name, `id`), in `order` (reversed when asked); "order 2" is
/// refused with a message of its own.
async fn batch_target(reversed: bool) -> TestServer {
    TestServer::start(move |_, r| {
        if r.path == "/next" {
            return Answer::json(201, json!({}));
        }
        let mut results: Vec<_> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|rec| {
                let name = rec["name"].as_str().unwrap().to_string();
                match name.as_str() {
                    "order 2" => json!({"ref": name, "error": {"message": "qty 2 is not stocked"}}),
                    _ => json!({"ref": name, "id": format!("id-{name}"), "error": null}),
                }
            })
            .collect();
        if reversed {
            results.reverse();
        }
        Answer::json(200, json!({"results": results}))
    })
    .await
}

/// A flow whose import sends batches of `batchSize` 5 and reads each record's result
/// (`response`), then posts each record on to `/next`, where its extracted id shows.
fn batch_flow(base: &str, response: serde_json::Value) -> serde_json::Value {
    let mut bundle = http_bundle(
        base,
        json!({"http": {"requestMode": "page", "batchSize": 5, "body": "{{json records}}",
                        "response": response},
               "responseMapping": {"fields": [{"extract": "id", "generate": "erpId"}]}}),
        json!({}),
    );
    bundle["imports"].as_array_mut().unwrap().push(json!({"_id": "next", "name": "next", "_connectionId": "conn", "type": "http", "http": {"relativeURI": "/next"}}));
    bundle["flows"][0]["pageProcessors"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "import", "_importId": "next"}));
    bundle
}

/// The batch target and a harness loaded with the batch flow over it.
async fn batch_harness(reversed: bool, response: serde_json::Value) -> (TestServer, Harness) {
    let server = batch_target(reversed).await;
    let h = Harness::new();
    h.load(batch_flow(&server.base_url, response)).await;
    (server, h)
}

/// What reached `/next`: each record's name and the id its batch result gave it.
fn forwarded_ids(server: &TestServer) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = server
        .received()
        .iter()
        .filter(|r| r.path == "/next")
        .map(|r| {
            let j = r.json();
            (
                j["name"].as_str().unwrap().to_string(),
                j["erpId"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    got
}

/// Orders `numbers`, each with the id its own result gives it.
fn own_ids(numbers: &[usize]) -> Vec<(String, String)> {
    numbers
        .iter()
        .map(|i| (format!("order {i}"), format!("id-order {i}")))
        .collect()
}

/// `batchSize` 5 over a page of 7 sends 5 then 2; the reply's results give each record its
/// own outcome: "order 2" fails with the reply's message, the others succeed, each with its
/// own id.
#[tokio::test]
async fn a_batch_reply_gives_each_record_its_own_result() {
    let (server, h) = batch_harness(
        false,
        json!({"resourcePath": "results", "errorPath": "error.message"}),
    )
    .await;
    let job = h.run("f", orders(7)).await;
    assert_eq!(
        (job.num_success, job.num_error),
        (6, 1),
        "{:?}",
        h.errors(&job.id).await
    );
    assert_counts(&job, 7);
    // Batches go out side by side: in any order.
    let mut batches: Vec<usize> = server
        .received()
        .iter()
        .filter(|r| r.path == "/orders")
        .map(|r| r.json().as_array().unwrap().len())
        .collect();
    batches.sort();
    assert_eq!(batches, vec![2, 5], "batches of batchSize, not the page");
    let errors = h.errors(&job.id).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].record["name"], "order 2");
    assert_eq!(errors[0].code, FailureCode::ReplyError);
    assert_eq!(errors[0].message, "qty 2 is not stocked");
    assert_eq!(forwarded_ids(&server), own_ids(&[0, 1, 3, 4, 5, 6]));
}

/// Matched by key, results reordered by the target still reach their own records; matched
/// by position (no `matchBy`), the same reply would give each record another's id.
#[tokio::test]
async fn batch_results_are_matched_by_key_when_the_reply_reorders_them() {
    let (server, h) = batch_harness(
        true,
        json!({"resourcePath": "results", "errorPath": "error.message",
               "matchBy": {"resultPath": "ref", "recordPath": "name"}}),
    )
    .await;
    let job = h.run("f", orders(5)).await;
    assert_eq!((job.num_success, job.num_error), (4, 1));
    let errors = h.errors(&job.id).await;
    assert_eq!(errors[0].record["name"], "order 2");
    assert_eq!(errors[0].message, "qty 2 is not stocked");
    assert_eq!(forwarded_ids(&server), own_ids(&[0, 1, 3, 4]));
}

/// A reply without per-record results (no list at `resourcePath`: an error page) is every
/// record's reply: all share its status.
#[tokio::test]
async fn a_batch_reply_without_results_is_shared_by_its_records() {
    let server = TestServer::always(503, json!({"message": "down"})).await;
    let h = Harness::new();
    let mut bundle = batch_flow(&server.base_url, json!({"resourcePath": "results"}));
    bundle["connections"][0]["http"]["retry"]["maxAttempts"] = json!(1);
    h.load(bundle).await;
    let job = h.run("f", orders(3)).await;
    assert_eq!((job.num_success, job.num_error), (0, 3));
    assert_eq!(server.received().len(), 1, "one request for the three");
    assert!(h
        .errors(&job.id)
        .await
        .iter()
        .all(|e| e.code == FailureCode::Evaluator && e.message.starts_with("status 503")));
}

/// The ledger over batches: a batch whose send a crashed process claimed and never
/// recorded is not sent again (its records are `delivery_unknown`), and a page handed to
/// deliver three times sends its other batch once, settling its records from that reply.
#[tokio::test]
async fn a_batch_is_sent_once_however_often_its_page_is_redelivered() {
    let (server, h) = batch_harness(
        false,
        json!({"resourcePath": "results", "errorPath": "error.message"}),
    )
    .await;
    let s = h.sluice();
    open_job(&s, "j1").await;
    let records: Vec<_> = orders(4)
        .into_iter()
        .enumerate()
        .map(|(i, r)| sluice_model::PageRecord::new(format!("r{i}"), r))
        .collect();
    let mut page = first_page("j1", records);
    for keys in [["r0", "r1"], ["r2", "r3"]] {
        let body: Vec<_> = page
            .records
            .iter()
            .filter(|r| keys.contains(&r.key.as_str()))
            .map(|r| r.data.clone())
            .collect();
        page.batches.push(sluice_model::Batch {
            request: sluice_model::RenderedRequest {
                method: "POST".into(),
                url: format!("{}/orders", server.base_url),
                headers: vec![],
                body: Some(json!(body).to_string()),
            },
            record_keys: keys.iter().map(|k| k.to_string()).collect(),
            replies: None,
        });
    }
    // A process claimed the first batch and died before recording its reply.
    let crashed = page.send_id(sluice_model::Send::Batch("r0"));
    s.store
        .ledger_claim(
            "j1",
            &sluice_core::ports::ledger_key(sluice_core::Stage::Deliver, &crashed),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    // Handed to deliver three times, each after the last went through the flow (copies in
    // flight together would meet each other's claims at the next step).
    for _ in 0..3 {
        s.handle(
            sluice_core::Stage::Deliver,
            sluice_model::StageMessage::Page(page.clone()),
        )
        .await
        .unwrap();
        h.runtime.wait_idle(Duration::from_secs(20)).await.unwrap();
    }
    let sent: Vec<_> = server
        .received()
        .into_iter()
        .filter(|r| r.path == "/orders")
        .collect();
    assert_eq!(sent.len(), 1, "only the second batch, once");
    assert_eq!(sent[0].json()[0]["name"], "order 2");
    let mut errors: Vec<_> = h
        .errors("j1")
        .await
        .into_iter()
        .map(|e| (e.record_key, e.code))
        .collect();
    errors.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        errors,
        vec![
            ("r0".to_string(), FailureCode::DeliveryUnknown),
            ("r1".to_string(), FailureCode::DeliveryUnknown),
            ("r2".to_string(), FailureCode::ReplyError),
        ]
    );
    assert_eq!(forwarded_ids(&server), own_ids(&[3]));
}

/// Each error names the step it happened at: its processor index, the lookup's `_exportId`
/// or the import's `_importId`, and that definition's name.
#[tokio::test]
async fn errors_name_their_step_at_a_lookup_and_at_an_import() {
    let server = TestServer::start(|_, r| match r.path.as_str() {
        "/customers/1" => Answer::json(404, json!({"error": "no such customer"})),
        p if p.starts_with("/customers/") => Answer::json(200, json!({"tier": "gold"})),
        _ if r.json()["name"] == "order 2" => Answer::json(422, json!({"error": "refused"})),
        _ => Answer::json(201, json!({"id": "o"})),
    })
    .await;
    let h = Harness::new();
    let mut bundle = http_bundle(&server.base_url, json!({"name": "post orders"}), json!({}));
    bundle["exports"].as_array_mut().unwrap().push(json!({"_id": "lookup", "name": "customer lookup", "type": "http", "_connectionId": "conn", "http": {"relativeURI": "/customers/{{record.qty}}"}}));
    bundle["flows"][0]["pageProcessors"] = json!([
        {"type": "export", "_exportId": "lookup"},
        {"type": "import", "_importId": "imp"}
    ]);
    h.load(bundle).await;
    let job = h.run("f", orders(3)).await;
    assert_eq!((job.num_success, job.num_error), (1, 2));
    let mut errors = h.errors(&job.id).await;
    errors.sort_by_key(|e| e.processor_index);
    let steps: Vec<_> = errors
        .iter()
        .map(|e| {
            (
                e.processor_index,
                e.export_id.as_deref(),
                e.import_id.as_deref(),
                e.step_name.as_deref(),
                e.record["name"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            (
                0,
                Some("lookup"),
                None,
                Some("customer lookup"),
                Some("order 1")
            ),
            (1, None, Some("imp"), Some("post orders"), Some("order 2")),
        ]
    );
}

#[tokio::test]
async fn a_chain_to_a_running_flow_waits_and_runs_after_it() {
    let server = TestServer::start(|_, r| {
        let ok = Answer::json(200, json!({}));
        if r.json()["name"] == "slow" {
            Answer::Slow {
                delay: std::time::Duration::from_millis(800),
                then: Box::new(ok),
            }
        } else {
            ok
        }
    })
    .await;
    let h = Harness::new();
    let mut bundle = http_bundle(&server.base_url, json!({}), json!({}));
    bundle["flows"][0]["_runNextFlowIds"] = json!(["g"]);
    bundle["flows"].as_array_mut().unwrap().push(json!({"_id": "g", "name": "next", "pageGenerators": [{"_exportId": "exp"}], "pageProcessors": [{"type": "import", "_importId": "imp"}]}));
    h.load(bundle).await;
    let s = h.sluice();
    let busy = sluice_core::runs::start_run(
        &s,
        "g",
        RunRequest {
            records: Some(vec![json!({"name": "slow", "qty": 1})]),
            ..Default::default()
        },
        RunKind::Manual,
    )
    .await
    .unwrap()
    .unwrap();
    let job = h.run("f", orders(2)).await;
    assert_eq!(job.status, JobStatus::Completed);
    h.wait(&busy.job_id).await;
    let jobs = s.store.list_jobs("g", 5).await.unwrap();
    let kinds: Vec<RunKind> = jobs.iter().rev().map(|j| j.trigger).collect();
    assert_eq!(
        kinds,
        vec![RunKind::Manual, RunKind::Chain],
        "the chain waited for g's running job, then ran"
    );
    assert!(jobs.iter().all(|j| j.status == JobStatus::Completed));
}

#[tokio::test]
async fn failed_records_can_be_retried_alone() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let server = TestServer::start(move |_, r| {
        if r.json()["qty"] == 1 && !flag.load(Ordering::SeqCst) {
            Answer::json(400, json!({"e": "no"}))
        } else {
            Answer::json(200, json!({}))
        }
    })
    .await;
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({})))
        .await;
    let job = h.run("f", orders(3)).await;
    assert_eq!((job.num_success, job.num_error), (2, 1));
    healthy.store(true, Ordering::SeqCst);
    let retry = sluice_core::runs::retry_errors(&h.sluice(), &job.id, None)
        .await
        .unwrap();
    let again = h.wait(&retry.job_id).await;
    assert_eq!(
        (again.num_success, again.num_error, again.trigger.as_str()),
        (1, 0, "retry")
    );
    let posted: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.json()["qty"].clone())
        .collect();
    assert_eq!(
        posted.len(),
        4,
        "only the failed record was sent again: {posted:?}"
    );
    assert!(h.errors(&job.id).await.iter().all(|e| e.resolved));
}

#[tokio::test]
async fn requests_to_metadata_addresses_are_refused_without_connecting() {
    let h = Harness::new();
    h.load(http_bundle(
        "http://169.254.169.254",
        json!({}),
        json!({"http": {"retry": {"maxAttempts": 1}}}),
    ))
    .await;
    let job = h.run("f", orders(2)).await;
    assert_eq!((job.num_success, job.num_error), (0, 2));
    let e = &h.errors(&job.id).await[0];
    assert_eq!(e.code, FailureCode::AddressRefused);
    assert!(
        e.message.contains("169.254.169.254") && e.message.contains("allowMetadataAddresses"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn secrets_never_appear_in_stored_errors() {
    let server = TestServer::always(500, json!({"e": "no"})).await;
    let h = Harness::with_secrets(&[("tok", "s3cr3t-token")]);
    h.load(http_bundle(&server.base_url, json!({}), json!({"http": {"retry": {"maxAttempts": 1}, "auth": {"type": "token", "token": {"token": "secret:tok"}}, "headers": [{"name": "X-Api-Key", "value": "k-plain-123"}]}}))).await;
    let job = h.run("f", orders(1)).await;
    assert_eq!(job.num_error, 1);
    let errors = serde_json::to_string(&h.errors(&job.id).await).unwrap();
    assert!(
        !errors.contains("s3cr3t-token") && !errors.contains("k-plain-123"),
        "{errors}"
    );
    assert!(
        server.received()[0].headers["authorization"] == "Bearer s3cr3t-token",
        "the target did get the token"
    );
}

#[tokio::test]
async fn secret_references_in_import_headers_and_callbacks_are_resolved_only_when_sent() {
    let server = TestServer::always(500, json!({"e": "no"})).await;
    let hook = TestServer::always(200, json!({})).await;
    let h = Harness::with_secrets(&[("partner", "pk-7781"), ("hook", "hk-5512")]);
    let mut bundle = http_bundle(
        &server.base_url,
        // A record value that looks like a secret reference is sent as written.
        json!({"http": {"headers": [{"name": "X-Api-Key", "value": "secret:partner"}, {"name": "X-Ref", "value": "{{record.name}}"}]}}),
        json!({"http": {"retry": {"maxAttempts": 1}}}),
    );
    bundle["flows"][0]["afterProcess"] = json!([{"url": format!("{}/done", hook.base_url), "headers": [{"name": "Authorization", "value": "secret:hook"}]}]);
    h.load(bundle).await;
    let job = h
        .run("f", vec![json!({"name": "secret:partner", "qty": 1})])
        .await;
    assert_eq!(job.num_error, 1);
    let got = &server.received()[0];
    assert_eq!(got.headers["x-api-key"], "pk-7781");
    assert_eq!(
        got.headers["x-ref"], "secret:partner",
        "records cannot read secrets"
    );
    let errors = serde_json::to_string(&h.errors(&job.id).await).unwrap();
    assert!(!errors.contains("pk-7781"), "{errors}");
    // the after-process callback is posted once the job is closed
    for _ in 0..100 {
        if !hook.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hook.received()[0].headers["authorization"], "hk-5512");
}

#[tokio::test]
async fn a_quoted_value_in_a_json_body_cannot_add_keys_but_a_text_body_is_as_written() {
    let server = TestServer::always(200, json!({})).await;
    let h = Harness::new();
    let sneaky = "x\", \"admin\": \"yes";
    let mut bundle = http_bundle(
        &server.base_url,
        json!({"http": {"body": "{\"name\": \"{{record.name}}\"}"}}),
        json!({}),
    );
    bundle["imports"].as_array_mut().unwrap().push(json!({"_id": "text", "name": "text", "_connectionId": "conn", "type": "http", "http": {"relativeURI": "/notes", "headers": [{"name": "Content-Type", "value": "text/plain"}], "body": "note: {{record.name}}"}}));
    bundle["flows"].as_array_mut().unwrap().push(json!({"_id": "f2", "name": "f2", "pageGenerators": [{"_exportId": "exp"}], "pageProcessors": [{"type": "import", "_importId": "text"}]}));
    h.load(bundle).await;
    let job = h.run("f", vec![json!({"name": sneaky})]).await;
    assert_eq!(job.num_success, 1);
    assert_eq!(server.received()[0].json(), json!({"name": sneaky}));
    let job = h.run("f2", vec![json!({"name": sneaky})]).await;
    assert_eq!(job.num_success, 1);
    assert_eq!(server.received()[1].body, format!("note: {sneaky}"));
}

/// The store of `h` seen from `days` ahead, with the deployment's retention at
/// `retention_days`: how a clean-up that late sees the jobs run now.
fn days_later(h: &Harness, days: i64, retention_days: u32) -> sluice_core::Sluice {
    let s = h.sluice();
    let later = chrono::Utc::now() + chrono::Duration::days(days);
    let mut settings = local_settings();
    settings.retention_days = retention_days;
    sluice_core::Sluice::new(
        s.store.clone(),
        s.queue.clone(),
        s.blobs.clone(),
        s.secrets.clone(),
        std::sync::Arc::new(sluice_core::ports::ManualClock::new(later)),
        settings,
    )
}

/// A sink that refuses every third record (422, not retried), and flow `f` posting to it.
async fn refusing_sink(h: &Harness) -> TestServer {
    let sink = TestServer::start(|n, _| {
        if n % 3 == 0 {
            Answer::json(422, json!({"error": "bad"}))
        } else {
            Answer::json(200, json!({}))
        }
    })
    .await;
    h.load(http_bundle(&sink.base_url, json!({}), json!({})))
        .await;
    sink
}

/// A job older than its flow's retention goes with its errors and delivery ledger; a dry
/// run says so and deletes nothing; without a retention nothing goes.
#[tokio::test]
async fn the_clean_up_purges_jobs_past_their_retention_with_their_errors_and_ledger() {
    use sluice_core::runs::clean::{clean, CleanRequest};
    let h = Harness::new();
    let _sink = refusing_sink(&h).await;
    let job = h.run("f", orders(6)).await;
    assert_eq!((job.num_success, job.num_error), (4, 2));

    let forever = days_later(&h, 400, 0);
    let report = clean(&forever, &CleanRequest::default()).await.unwrap();
    assert!(
        report.purged.is_empty(),
        "no retention anywhere: {report:?}"
    );

    let store = &h.sluice().store;
    let mut flow = store
        .get_definition(sluice_core::ports::Kind::Flow, "f")
        .await
        .unwrap()
        .unwrap();
    flow["retentionDays"] = json!(7);
    store
        .put_definition(sluice_core::ports::Kind::Flow, "f", &flow)
        .await
        .unwrap();
    let soon = days_later(&h, 6, 0);
    assert!(
        clean(&soon, &CleanRequest::default())
            .await
            .unwrap()
            .purged
            .is_empty(),
        "6 days old: kept"
    );

    let later = days_later(&h, 8, 0);
    let dry = CleanRequest {
        dry_run: true,
        ..Default::default()
    };
    let report = clean(&later, &dry).await.unwrap();
    assert_eq!(report.purged.len(), 1);
    assert_eq!(
        (report.purged[0].job_id.as_str(), report.purged[0].errors),
        (job.id.as_str(), 2)
    );
    assert_eq!(
        report.deleted,
        Default::default(),
        "a dry run deletes nothing"
    );
    assert!(store.get_job(&job.id).await.unwrap().is_some());

    let report = clean(&later, &CleanRequest::default()).await.unwrap();
    assert_eq!(
        (
            report.deleted.jobs,
            report.deleted.errors,
            report.deleted.ledger_entries
        ),
        (1, 2, 6),
        "the job, its 2 errors, the ledger entry of each of its 6 sends"
    );
    assert_eq!(store.get_job(&job.id).await.unwrap(), None);
    assert!(h.errors(&job.id).await.is_empty());
    assert!(store.list_jobs("f", 10).await.unwrap().is_empty());
}

/// A job whose retry still runs stays (the retry numbers its pages on from it and resolves
/// its errors), as does the running job; once the retry ends both go. The daily tick runs
/// the clean-up once a day.
#[tokio::test]
async fn the_clean_up_keeps_what_a_running_job_or_its_retry_needs() {
    use sluice_core::runs::clean::{clean, tick, CleanRequest};
    let h = Harness::new();
    let _sink = refusing_sink(&h).await;
    let job = h.run("f", orders(3)).await;
    assert_eq!(job.num_error, 1);
    // A retry of it, running (as a process in the middle of it would leave it).
    let mut retry = sluice_model::Job::new(
        "retry-job".into(),
        "f".into(),
        RunKind::Retry,
        chrono::Utc::now(),
    );
    retry.flow_execution_group_id = job.flow_execution_group_id.clone();
    retry.status = JobStatus::Running;
    let store = &h.sluice().store;
    store.create_job(&retry).await.unwrap();

    let later = days_later(&h, 40, 30);
    let report = clean(&later, &CleanRequest::default()).await.unwrap();
    assert!(report.purged.is_empty(), "{report:?}");
    let why: Vec<(&str, &str)> = report
        .kept
        .iter()
        .map(|k| (k.job_id.as_str(), k.kept_because.as_deref().unwrap()))
        .collect();
    assert_eq!(
        why,
        [
            ("retry-job", "it is running"),
            (
                job.id.as_str(),
                "job retry-job of its flow execution group (a retry) is running"
            )
        ]
    );

    store
        .close_job("retry-job", JobStatus::Completed, chrono::Utc::now(), None)
        .await
        .unwrap();
    let report = tick(&later)
        .await
        .unwrap()
        .expect("the day's clean-up runs");
    assert_eq!(report.deleted.jobs, 2, "{report:?}");
    assert!(tick(&later).await.unwrap().is_none(), "once a day");
}

/// Failure alerts: a job with as many record errors as `minErrors` posts one
/// Slack-compatible alert (its first errors, where to read them, the header's secret
/// resolved); one with fewer posts none, and neither does the next failing job while the
/// quiet period runs; once it has run out, the next failing job alerts again.
#[tokio::test]
async fn a_flow_alerts_on_errors_once_per_quiet_period() {
    let server = TestServer::start(|_, r| {
        if r.json()["name"] == "bad" {
            Answer::json(422, json!({"error": "qty missing"}))
        } else {
            Answer::json(201, json!({}))
        }
    })
    .await;
    let hook = TestServer::always(200, json!({"ok": true})).await;
    let h = Harness::with_secrets(&[("slack", "xoxb-1")]);
    let mut bundle = http_bundle(
        &server.base_url,
        json!({}),
        json!({"http": {"retry": {"maxAttempts": 1}}}),
    );
    bundle["flows"][0]["alerts"] = json!({"minErrors": 2, "quietMinutes": 30,
        "webhook": {"url": format!("{}/alert", hook.base_url),
                    "headers": [{"name": "Authorization", "value": "secret:slack"}]}});
    h.load(bundle).await;
    let records = |bad: usize| {
        let mut r = vec![json!({"name": "ok", "qty": 1})];
        r.extend((0..bad).map(|_| json!({"name": "bad", "qty": 1})));
        r
    };
    // Alerts go out after the job closes: wait for `n` of them (briefly), then count.
    let alerts = |n: usize| {
        let hook = &hook;
        async move {
            for _ in 0..100 {
                if hook.received().len() >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            hook.received()
        }
    };

    let job = h.run("f", records(1)).await;
    assert_eq!(job.num_error, 1);
    assert!(alerts(1).await.is_empty(), "one error is under minErrors");

    let job = h.run("f", records(2)).await;
    let got = alerts(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["authorization"], "xoxb-1");
    let alert = got[0].json();
    assert_eq!(alert["jobId"], job.id.as_str());
    assert_eq!(
        (alert["numError"].as_u64(), alert["numSuccess"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(alert["firstErrors"].as_array().unwrap().len(), 2, "{alert}");
    assert_eq!(alert["firstErrors"][0]["code"], "evaluator");
    assert_eq!(alert["links"]["errors"], format!("/jobs/{}/errors", job.id));
    let text = alert["text"].as_str().unwrap();
    assert!(text.contains("completed with 2 error(s)"), "{text}");

    h.run("f", records(3)).await;
    assert_eq!(alerts(2).await.len(), 1, "the quiet period runs");

    // The last alert as if 31 minutes ago: the period has run out.
    let s = h.sluice();
    let before = chrono::Utc::now() - chrono::Duration::minutes(31);
    let last = format!("{} {}", before.timestamp_millis(), job.id);
    s.store
        .put_state("flow:f:alert", &json!(last))
        .await
        .unwrap();
    let job = h.run("f", records(2)).await;
    let got = alerts(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].json()["jobId"], job.id.as_str());
}

/// `alerts.email` in the local runtime: the alert goes by SMTP to a real server on loopback
/// (aiosmtpd), from the deployment's sender, to every recipient, with the same words as the
/// webhook's `text` and links under the deployment's public URL; a quiet period of 0 mails
/// every such job. A runtime set up with no mail sends none and the job is not affected.
#[tokio::test]
async fn a_flow_alerts_by_mail_through_smtp() {
    use sluice_testkit::smtpd::SmtpServer;
    let smtp = SmtpServer::start().expect("aiosmtpd starts (infra/setup-moto.sh installs it)");
    let server = TestServer::start(|_, r| {
        if r.json()["name"] == "bad" {
            Answer::json(422, json!({"error": "qty missing"}))
        } else {
            Answer::json(201, json!({}))
        }
    })
    .await;
    let mut bundle = http_bundle(
        &server.base_url,
        json!({}),
        json!({"http": {"retry": {"maxAttempts": 1}}}),
    );
    bundle["flows"][0]["alerts"] = json!({"quietMinutes": 0,
        "email": {"to": ["ops@example.com", "On Call <oncall@example.com>"]}});
    let mut settings = local_settings();
    settings.mail = Some(sluice_core::MailSettings {
        from: "Sluice <alerts@sluice.test>".into(),
        smtp_url: Some(smtp.url()),
    });
    settings.public_url = Some("https://sluice.example.com/".into());
    let h = Harness::with_settings(settings);
    h.load(bundle.clone()).await;
    let records = vec![
        json!({"name": "ok"}),
        json!({"name": "bad"}),
        json!({"name": "bad"}),
    ];

    let job = h.run("f", records.clone()).await;
    assert_eq!(job.num_error, 2);
    let mail = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0]["mailFrom"], "alerts@sluice.test");
    assert_eq!(
        mail[0]["rcptTos"],
        json!(["ops@example.com", "oncall@example.com"])
    );
    let subject = mail[0]["subject"].as_str().unwrap();
    assert_eq!(
        subject,
        format!(
            "Sluice: flow \"orders\" job {} completed with 2 error(s)",
            job.id
        )
    );
    let text = mail[0]["text"].as_str().unwrap().replace("\r\n", "\n");
    assert!(text.contains("• evaluator: "), "{text}");
    assert!(
        text.contains(&format!(
            "Errors: GET https://sluice.example.com/jobs/{}/errors",
            job.id
        )),
        "{text}"
    );

    let second = h.run("f", records.clone()).await;
    let mail = smtp.wait_for(2, Duration::from_secs(10));
    assert_eq!(mail.len(), 2, "quietMinutes 0 mails every job");
    assert!(mail[1]["subject"].as_str().unwrap().contains(&second.id));

    // No sender set up: nothing is mailed, the job is counted as always.
    let bare = Harness::new();
    bare.load(bundle).await;
    let job = bare.run("f", records).await;
    assert_eq!((job.num_success, job.num_error), (1, 2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smtp.messages().len(), 2);
}
