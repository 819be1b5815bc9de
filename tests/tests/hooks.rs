//! JavaScript hooks, each hook point end to end through the local runtime (the embedded
//! engine) against a real HTTP server on loopback: what each hook is given, what its answer
//! does, what a wrong answer or an exception does, and the sandbox.

use serde_json::{json, Value};
use sluice_e2e::*;
use sluice_model::JobStatus;
use std::time::Duration;

/// The bundle with a script `s` holding `content`.
fn with_script(mut bundle: Value, content: &str) -> Value {
    bundle["scripts"] = json!([{"_id": "s", "name": "hooks", "content": content}]);
    bundle
}

/// `http_bundle` with `import` merged into its import, and script `s` holding `content`.
fn hooked(server: &TestServer, import: Value, content: &str) -> Value {
    with_script(http_bundle(&server.base_url, import, json!({})), content)
}

fn hook(function: &str) -> Value {
    json!({"_scriptId": "s", "function": function})
}

fn accepting() -> impl Fn(usize, &Received) -> Answer + Send + Sync + 'static {
    |n, _| Answer::json(201, json!({"id": format!("ord-{n}")}))
}

/// The flow's import `imp` (its processor entry merged with `entry`) maps the reply's `id`
/// into `orderId`, then a second import POSTs each record to `/second`.
fn then_second_import(mut bundle: Value, entry: Value) -> Value {
    bundle["imports"].as_array_mut().unwrap().push(json!({
        "_id": "second", "name": "second", "_connectionId": "conn", "type": "http",
        "http": {"method": "POST", "relativeURI": "/second"}}));
    let mut first = json!({"type": "import", "_importId": "imp",
        "responseMapping": {"fields": [{"extract": "id", "generate": "orderId"}]}});
    merge(&mut first, entry);
    bundle["flows"][0]["pageProcessors"] =
        json!([first, {"type": "import", "_importId": "second"}]);
    bundle
}

/// What `/second` was sent, in arrival order.
fn sent_to_second(server: &TestServer) -> Vec<Value> {
    (server.received().iter())
        .filter(|r| r.path == "/second")
        .map(|r| r.json())
        .collect()
}

fn names(server: &TestServer, path: &str) -> Vec<String> {
    let mut names: Vec<String> = (server.received().iter())
        .filter(|r| r.path == path)
        .map(|r| r.json()["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_process_whose_flows_run_no_script_never_starts_the_engine() {
    let server = TestServer::start(accepting()).await;
    let h = Harness::new();
    h.load(http_bundle(&server.base_url, json!({}), json!({})))
        .await;
    let job = h.run("f", orders(5)).await;
    assert_eq!(job.num_success, 5, "{job:?}");
    assert!(
        !h.sluice().script_engine_started(),
        "no script ran: no engine"
    );
    let script = "function preMap(o) { return o.data.map(d => ({data: d})); }";
    h.load(hooked(
        &server,
        json!({"hooks": {"preMap": hook("preMap")}}),
        script,
    ))
    .await;
    h.run("f", orders(1)).await;
    assert!(h.sluice().script_engine_started());
}

#[tokio::test]
async fn pre_map_changes_what_is_sent_and_its_answers_fail_or_ignore_records() {
    let server = TestServer::start(accepting()).await;
    let h = Harness::new();
    let script = r#"
function preMap(options) {
  return options.data.map(d => {
    if (d.qty % 5 === 0) return {errors: [{code: 'qty', message: 'qty ' + d.qty + ' is not sold'}]};
    if (d.qty % 5 === 1) return {};
    return {data: Object.assign({}, d, {name: d.name.toUpperCase()})};
  });
}"#;
    h.load(hooked(
        &server,
        json!({"hooks": {"preMap": hook("preMap")}}),
        script,
    ))
    .await;
    let job = h.run("f", orders(25)).await;
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (15, 5, 5),
        "{job:?}"
    );
    assert_counts(&job, 25);
    let sent = names(&server, "/orders");
    assert_eq!(sent.len(), 15);
    assert!(sent.iter().all(|n| n.starts_with("ORDER ")), "{sent:?}");
    let errors = h.errors(&job.id).await;
    let e = errors.iter().find(|e| e.record["qty"] == 10).unwrap();
    assert_eq!(e.code, "script");
    assert!(
        e.message
            .contains("preMap hook (script s, function preMap)")
            && e.message.contains("qty: qty 10 is not sold"),
        "{}",
        e.message
    );
    assert_eq!(
        e.record["name"], "order 10",
        "an error keeps the record as it came, for a retry"
    );
}

#[tokio::test]
async fn post_map_gets_pre_and_post_map_data_and_shapes_the_body() {
    let server = TestServer::start(accepting()).await;
    let h = Harness::new();
    let script = r#"
function postMap(options) {
  return options.postMapData.map((d, i) => ({data: {title: d.title, was: options.preMapData[i].name, n: i}}));
}"#;
    let import = json!({
        "http": {"body": null},
        "mapping": {"fields": [{"extract": "name", "generate": "title"}]},
        "hooks": {"postMap": hook("postMap")}
    });
    h.load(hooked(&server, import, script)).await;
    let job = h.run("f", orders(3)).await;
    assert_eq!(job.num_success, 3, "{job:?}");
    let mut bodies: Vec<Value> = server.received().iter().map(|r| r.json()).collect();
    bodies.sort_by_key(|b| b["n"].as_u64());
    assert_eq!(
        bodies[1],
        json!({"title": "order 1", "was": "order 1", "n": 1}),
        "postMap saw the mapping's output and the record it mapped"
    );
}

#[tokio::test]
async fn post_submit_can_forgive_a_failure_and_ignore_a_success() {
    let server = TestServer::start(|_, r| {
        if r.json()["qty"].as_u64().unwrap_or(0) % 2 == 1 {
            Answer::json(422, json!({"error": "odd"}))
        } else {
            Answer::json(201, json!({"id": "x"}))
        }
    })
    .await;
    let h = Harness::new();
    let script = r#"
function postSubmit(options) {
  return options.responseData.map((r, i) => {
    const qty = options.preMapData[i].qty;
    if (r.statusCode === 422 && qty < 6) return Object.assign({}, r, {errors: []});
    if (r.statusCode === 201 && qty % 4 === 0) return Object.assign({}, r, {ignored: true});
    if (r.statusCode === 422) return Object.assign({}, r, {errors: [{code: 'odd', message: 'refused: ' + r._json.error + ', sent ' + options.postMapData[i].name}]});
    return r;
  });
}"#;
    h.load(hooked(
        &server,
        json!({"hooks": {"postSubmit": hook("postSubmit")}}),
        script,
    ))
    .await;
    let job = h.run("f", orders(10)).await;
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (5, 2, 3),
        "{job:?}"
    );
    let errors = h.errors(&job.id).await;
    assert_eq!(errors.len(), 2);
    assert!(
        errors[0].message.contains("odd: refused: odd, sent order"),
        "{}",
        errors[0].message
    );
}

#[tokio::test]
async fn post_response_map_shapes_what_the_next_processor_gets_and_import_hooks_stay_local() {
    let server = TestServer::start(accepting()).await;
    let h = Harness::new();
    let script = r#"
function preMap(options) { return options.data.map(d => ({data: Object.assign({}, d, {onlyForFirst: true})})); }
function postResponseMap(options) {
  return options.postResponseMapData.map((d, i) => Object.assign({}, d, {status: options.responseData[i].statusCode}));
}"#;
    let bundle = then_second_import(
        http_bundle(
            &server.base_url,
            json!({"http": {"body": null}, "hooks": {"preMap": hook("preMap")}}),
            json!({}),
        ),
        json!({"hooks": {"postResponseMap": hook("postResponseMap")}}),
    );
    h.load(with_script(bundle, script)).await;
    let job = h.run("f", orders(4)).await;
    assert_eq!(job.num_success, 4, "{job:?}");
    let got = server.received();
    let first: Vec<Value> = got
        .iter()
        .filter(|r| r.path == "/orders")
        .map(|r| r.json())
        .collect();
    assert!(first.iter().all(|b| b["onlyForFirst"] == true), "{first:?}");
    let second = sent_to_second(&server);
    assert_eq!(second.len(), 4);
    for b in &second {
        assert_eq!(b["status"], 201, "{b}");
        assert!(b["orderId"].as_str().unwrap().starts_with("ord-"), "{b}");
        assert!(
            b.get("onlyForFirst").is_none(),
            "preMap's data is the first import's only: {b}"
        );
    }
}

/// integrator.io runs postSubmit before the response mapping: what the hook makes of a
/// reply (here its `_json.id`) is what the responseMapping reads.
#[tokio::test]
async fn post_submit_changes_reach_the_response_mapping() {
    let server = TestServer::start(accepting()).await;
    let h = Harness::new();
    let script = r#"
function postSubmit(options) {
  return options.responseData.map(r => Object.assign({}, r, {_json: Object.assign({}, r._json, {id: 'fixed-' + r._json.id})}));
}"#;
    let bundle = then_second_import(
        http_bundle(
            &server.base_url,
            json!({"hooks": {"postSubmit": hook("postSubmit")}}),
            json!({}),
        ),
        json!({}),
    );
    h.load(with_script(bundle, script)).await;
    let job = h.run("f", orders(3)).await;
    assert_eq!(job.num_success, 3, "{job:?}");
    let second = sent_to_second(&server);
    assert_eq!(second.len(), 3);
    for b in &second {
        let id = b["orderId"].as_str().unwrap_or_default();
        assert!(id.starts_with("fixed-ord-"), "{b}");
    }
}

#[tokio::test]
async fn pre_save_page_drops_adds_and_aborts_and_every_record_is_counted() {
    let server = TestServer::start(accepting()).await;
    let h = Harness::new();
    let script = r#"
function preSavePage(options) {
  const kept = options.data.filter(d => d.qty % 3 !== 0);
  kept.push({name: 'added on page ' + options.pageIndex, qty: -1, exp: options._exportId, flow: options._flowId});
  return {data: kept, errors: [{code: 'note', message: 'seen page ' + options.pageIndex}], abort: options.pageIndex >= 1};
}"#;
    let mut bundle = http_bundle(&server.base_url, json!({}), json!({}));
    bundle["exports"][0]["hooks"] = json!({"preSavePage": hook("preSavePage")});
    h.load(with_script(bundle, script)).await;
    let job = h.run("f", orders(35)).await;
    // Pages 0 and 1 (10 records each) are cut, then the hook aborts. Records have no
    // identity a hook keeps, so the page's records take the answer's data in order: page 0
    // drops 4 and adds 1 (7 sent, 3 ignored), page 1 drops 3 and adds 1 (8 sent, 2
    // ignored); each adds an error. Every record is counted: 11 + 11.
    assert_eq!(job.num_pages, 2, "{job:?}");
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (15, 2, 5),
        "{job:?}"
    );
    assert_counts(&job, 22);
    assert_eq!(job.status, JobStatus::CompletedWithErrors);
    let sent = names(&server, "/orders");
    assert_eq!(sent.len(), 15);
    assert!(sent.contains(&"added on page 1".to_string()), "{sent:?}");
    assert!(
        !sent.contains(&"order 3".to_string()),
        "dropped records are not sent"
    );
    let errors = h.errors(&job.id).await;
    assert!(
        errors
            .iter()
            .any(|e| e.message == "preSavePage hook: note: seen page 0"),
        "{errors:?}"
    );
}

/// A read picked up again after its preSavePage hook aborted (the run order as the
/// checkpoint after the aborting page leaves it, should the process die before the job
/// closes) reads nothing more of that export.
#[tokio::test]
async fn a_read_picked_up_after_an_abort_cuts_no_more_pages() {
    let server = TestServer::start(accepting()).await;
    let h = Harness::new();
    let mut bundle = http_bundle(&server.base_url, json!({}), json!({}));
    bundle["exports"][0]["hooks"] = json!({"preSavePage": hook("preSavePage")});
    let script = "function preSavePage(o) { return {data: o.data, abort: true}; }";
    h.load(with_script(bundle, script)).await;
    let sluice = h.sluice();
    let lines: String = (0..30)
        .map(|n| format!("{{\"name\": \"order {n}\", \"qty\": {n}}}\n"))
        .collect();
    let (bucket, key) = ("in", "orders.ndjson");
    sluice.blobs.put(bucket, key, lines.into()).await.unwrap();
    let job = sluice_model::Job::new(
        "j".into(),
        "f".into(),
        sluice_model::RunKind::Manual,
        chrono::Utc::now(),
    );
    sluice.store.create_job(&job).await.unwrap();
    let resumed = sluice_model::RunOrder {
        job_id: "j".into(),
        flow_id: "f".into(),
        generator_index: None,
        export_ids: None,
        source: sluice_model::RunSource::File {
            bucket: bucket.into(),
            key: key.into(),
            name: key.into(),
            format: None,
        },
        resume: Some(sluice_model::Resume {
            generator_index: 0,
            pages_cut: 0,
            carried: Vec::new(),
            cursor: Value::Null,
            skip: 10,
            aborted: true,
        }),
    };
    let run = sluice_model::StageMessage::Run(resumed);
    sluice
        .queue
        .send(sluice_core::Stage::Trigger, run)
        .await
        .unwrap();
    let job = h.wait("j").await;
    assert_eq!((job.num_pages, job.num_success), (0, 0), "{job:?}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_throwing_hook_or_a_wrong_answer_fails_the_records_naming_script_function_and_why() {
    let server = TestServer::start(accepting()).await;
    let h = Harness::new();
    let script = "function preMap(options) {\n  if (options.data[0].qty === 0) {\n    throw new Error('cannot map ' + options.data.length);\n  }\n  return [{data: {}}];\n}";
    h.load(hooked(
        &server,
        json!({"hooks": {"preMap": hook("preMap")}}),
        script,
    ))
    .await;
    let job = h.run("f", orders(12)).await;
    assert_eq!((job.num_error, job.num_success), (12, 0), "{job:?}");
    assert!(server.received().is_empty());
    let errors = h.errors(&job.id).await;
    let thrown = errors.iter().find(|e| e.record["qty"] == 0).unwrap();
    assert_eq!(
        thrown.message,
        "preMap hook: script s, function preMap: threw (line 3): cannot map 10"
    );
    let wrong = errors.iter().find(|e| e.record["qty"] == 11).unwrap();
    assert_eq!(
        wrong.message,
        "preMap hook: script s, function preMap: returned 1 elements for 2 records: return one per record, in order"
    );
}

#[tokio::test]
async fn the_sandbox_fails_loops_bombs_and_host_access_as_record_errors_and_the_process_goes_on() {
    let server = TestServer::start(accepting()).await;
    let mut settings = sluice_embedded::local_settings();
    settings.scripts = sluice_core::ScriptLimits {
        timeout: Duration::from_millis(300),
        memory_bytes: 16 * 1024 * 1024,
    };
    let h = Harness::with_settings(settings);
    let script = r#"
function preMap(options) {
  const how = options.data[0].name;
  if (how === 'loop') { while (true) {} }
  if (how === 'bomb') { const a = []; while (true) a.push(new Array(100000).fill(how)); }
  if (how === 'fs') return require('fs').readFileSync('/etc/passwd');
  if (how === 'fetch') return fetch('http://127.0.0.1:9/');
  return options.data.map(d => ({data: d}));
}"#;
    h.load(hooked(
        &server,
        json!({"hooks": {"preMap": hook("preMap")}}),
        script,
    ))
    .await;
    let cases = [
        ("loop", "was stopped after 300 ms"),
        ("bomb", "ran out of memory: the script heap is 16 MiB"),
        ("fs", "require is not defined"),
        ("fetch", "fetch is not defined"),
    ];
    for (how, why) in cases {
        let job = h.run("f", vec![json!({"name": how, "qty": 1})]).await;
        assert_eq!(job.num_error, 1, "{how}: {job:?}");
        let errors = h.errors(&job.id).await;
        assert!(
            errors[0].message.contains(why),
            "{how}: {}",
            errors[0].message
        );
    }
    // The same process, the same script: records that do nothing wrong go through.
    let job = h.run("f", orders(3)).await;
    assert_eq!(job.num_success, 3, "{job:?}");
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn scripts_see_no_secret_unless_the_connection_passes_it() {
    let server = TestServer::start(accepting()).await;
    let h = Harness::with_secrets(&[("TOKEN", "tok-123"), ("OTHER", "other-456")]);
    let script = r#"
function preMap(options) {
  const all = JSON.stringify(options);
  return options.data.map(d => ({data: {
    name: d.name, leaked: all.includes('tok-123') || all.includes('other-456'),
    secrets: options.secrets || null, settings: options.settings}}));
}"#;
    let run = |script_secrets: Value| {
        let bundle = http_bundle(
            &server.base_url,
            json!({"http": {"body": null}, "settings": {"region": "eu"},
                   "hooks": {"preMap": hook("preMap")}}),
            json!({"http": {"auth": {"type": "token", "token": {"token": "secret:TOKEN"}}},
                   "scriptSecrets": script_secrets}),
        );
        with_script(bundle, script)
    };
    h.load(run(json!([]))).await;
    h.run("f", orders(1)).await;
    let body = server.received()[0].json();
    assert_eq!(body["leaked"], false, "{body}");
    assert_eq!(body["secrets"], Value::Null);
    assert_eq!(body["settings"], json!({"region": "eu"}));
    assert_eq!(
        server.received()[0].headers["authorization"],
        "Bearer tok-123"
    );

    h.load(run(json!(["TOKEN"]))).await;
    h.run("f", orders(1)).await;
    let body = server.received()[1].json();
    assert_eq!(
        body["secrets"],
        json!({"TOKEN": "tok-123"}),
        "only the one listed"
    );
}

#[tokio::test]
async fn script_filters_and_transforms_run_per_record_with_integrator_io_contracts() {
    let server = TestServer::start(accepting()).await;
    let h = Harness::new();
    let script = r#"
function transform(options) {
  if (options.record.qty === 7) throw new Error('seven');
  return {name: options.record.name + ' (' + options.settings.tag + ')', qty: options.record.qty};
}
function keepEven(options) { return options.record.qty % 2 === 0; }
function notFour(options) { return options.record.qty !== 4 ? 1 : 0; }
"#;
    let mut bundle = http_bundle(
        &server.base_url,
        json!({"filter": {"type": "script", "script": hook("notFour")}}),
        json!({}),
    );
    bundle["exports"][0]["settings"] = json!({"tag": "t"});
    bundle["exports"][0]["transform"] = json!({"type": "script", "script": hook("transform")});
    bundle["exports"][0]["filter"] = json!({"type": "script", "script": hook("keepEven")});
    h.load(with_script(bundle, script)).await;
    let job = h.run("f", orders(10)).await;
    // qty 7 fails the transform; odd ones are filtered out by the export, 4 by the import.
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (4, 1, 5),
        "{job:?}"
    );
    let sent = names(&server, "/orders");
    assert_eq!(
        sent,
        ["order 0 (t)", "order 2 (t)", "order 6 (t)", "order 8 (t)"]
    );
    let errors = h.errors(&job.id).await;
    assert_eq!(errors[0].code, "transform");
    assert!(
        errors[0]
            .message
            .contains("transform hook: script s, function transform: threw (line 3): seven"),
        "{}",
        errors[0].message
    );
}
