//! Shaping records end to end through the local runtime against a real HTTP server on
//! loopback: an export's `transform` and output filter in rule form (trigger), an import's
//! rule filter, mapping and strict templates (translate), routers and branches (evaluate),
//! and the example bundles in examples/shaped-orders and examples/routed-orders. Every test
//! checks that records in = success + error + ignore.

use serde_json::{json, Value};
use sluice_e2e::*;
use sluice_model::FailureCode;
use sluice_model::JobStatus;
use std::sync::atomic::Ordering;

fn created() -> impl Fn(usize, &Received) -> Answer + Send + Sync + 'static {
    |n, _| Answer::json(201, json!({"id": format!("ord-{n}")}))
}

/// A server answering 201 and a harness loaded with `bundle` of the server's base URL.
async fn start(bundle: impl FnOnce(&str) -> Value) -> (TestServer, Harness) {
    let server = TestServer::start(created()).await;
    let h = Harness::new();
    h.load(bundle(&server.base_url)).await;
    (server, h)
}

/// [`http_bundle`] with these import fields.
fn importing(import: Value) -> impl FnOnce(&str) -> Value {
    move |base| http_bundle(base, import, json!({}))
}

/// The bodies the server received, by the value of `key` in them.
fn bodies_by(server: &TestServer, key: &str) -> std::collections::BTreeMap<String, Value> {
    server
        .received()
        .iter()
        .map(|r| {
            let body = r.json();
            (body[key].to_string(), body)
        })
        .collect()
}

fn order(id: u64, total: Value) -> Value {
    json!({"id": id, "customer": {"email": format!("c{id}@example.com")}, "total": total,
           "placed": "03/26/2025 21:30", "source": "shop",
           "lines": [{"sku": format!("A-{id}"), "qty": "2"}, {"sku": "B", "qty": 1}]})
}

#[tokio::test]
async fn a_mapping_is_the_json_body_while_the_uri_and_headers_see_the_record() {
    let (server, h) = start(importing(
        json!({"http": {"relativeURI": "/orders/{{record.id}}", "body": null,
                        "headers": [{"name": "X-Source", "value": "{{record.source}}"}]},
               "mapping": {
                 "fields": [
                   {"extract": "id", "generate": "externalId", "dataType": "string"},
                   {"extract": "customer.email", "generate": "customer.email"},
                   {"extract": "total", "generate": "amount", "dataType": "number"},
                   {"extract": "placed", "generate": "orderDate", "dataType": "date",
                    "extractDateFormat": "MM/DD/YYYY HH:mm", "extractDateTimezone": "America/New_York",
                    "generateDateFormat": "YYYY-MM-DD", "generateDateTimezone": "Europe/Berlin"},
                   {"extract": "{{dateFormat \"DD.MM.YYYY\" record.placed \"MM/DD/YYYY HH:mm\"}}", "generate": "printed"},
                   {"hardCodedValue": "web", "generate": "channel"},
                   {"extract": "memo", "generate": "memo", "default": "none"},
                   {"extract": "coupon", "generate": "coupon", "discardIfEmpty": true}],
                 "lists": [{"generate": "items", "fields": [
                   {"extract": "lines[*].sku", "generate": "item"},
                   {"extract": "lines[*].qty", "generate": "quantity", "dataType": "number"}]}]}}),
    ))
    .await;
    let records = vec![
        order(1, json!("10.50")),
        order(2, json!(7)),
        order(3, json!("n/a")),
    ];
    let job = h.run("f", records).await;
    assert_eq!(job.status, JobStatus::CompletedWithErrors, "{job:?}");
    assert_eq!((job.num_success, job.num_error, job.num_ignore), (2, 1, 0));
    assert_counts(&job, 3);

    let got = server.received();
    assert_eq!(got.len(), 2, "the record whose mapping failed is not sent");
    let first = got
        .iter()
        .find(|r| r.path == "/orders/1")
        .expect("URI from the record");
    assert_eq!(
        first.headers["x-source"], "shop",
        "headers see the record before mapping"
    );
    assert_eq!(first.headers["content-type"], "application/json");
    assert_eq!(
        first.json(),
        // 21:30 in New York on 26 March is 02:30 on the 27th in Berlin.
        json!({"externalId": "1", "customer": {"email": "c1@example.com"}, "amount": 10.5,
               "orderDate": "2025-03-27", "printed": "26.03.2025", "channel": "web", "memo": "none",
               "items": [{"item": "A-1", "quantity": 2}, {"item": "B", "quantity": 1}]})
    );
    let errors = h.errors(&job.id).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code, FailureCode::Mapping);
    assert_eq!(
        errors[0].message,
        "mapping.fields[2] (amount): 'n/a' is not a number"
    );
    assert_eq!(
        errors[0].record["id"], 3,
        "the error keeps the record as received"
    );
}

#[tokio::test]
async fn a_body_template_renders_the_mapped_record_and_page_mode_the_mapped_list() {
    let mapping = json!({"fields": [{"extract": "id", "generate": "ref", "dataType": "string"},
                                    {"extract": "lines[*].sku", "generate": "skus"}]});
    let (server, h) = start(importing(
        json!({"http": {"body": "{\"ref\": {{json record.ref}}, \"first\": {{json record.skus.[0]}}, \"raw\": {{json record.id}}}"},
               "mapping": mapping}),
    ))
    .await;
    let job = h
        .run("f", vec![order(1, json!(1)), order(2, json!(2))])
        .await;
    assert_counts(&job, 2);
    assert_eq!(job.num_success, 2, "{job:?}");
    let bodies = bodies_by(&server, "ref");
    assert_eq!(
        bodies["\"1\""],
        json!({"ref": "1", "first": "A-1", "raw": null}),
        "the body sees only the mapped record"
    );

    let (server, h) = start(importing(
        json!({"http": {"requestMode": "page", "body": null}, "mapping": mapping}),
    ))
    .await;
    let job = h
        .run("f", vec![order(1, json!(1)), order(2, json!(2))])
        .await;
    assert_counts(&job, 2);
    assert_eq!(job.num_success, 2, "{job:?}");
    let got = server.received();
    assert_eq!(got.len(), 1, "one request for the page");
    assert_eq!(
        got[0].json(),
        json!([{"ref": "1", "skus": ["A-1", "B"]}, {"ref": "2", "skus": ["A-2", "B"]}])
    );

    // Without a mapping or a body template a page's records are the body (they were `null`).
    let (server, h) = start(importing(
        json!({"http": {"requestMode": "page", "body": null}}),
    ))
    .await;
    let job = h.run("f", orders(2)).await;
    assert_counts(&job, 2);
    assert_eq!(server.received()[0].json(), json!(orders(2)));
}

/// A webhook export that transforms, then filters the transformed record in rule form.
fn shaped_bundle(base: &str, transform_total: &str) -> Value {
    let mut bundle = http_bundle(
        base,
        json!({"http": {"body": "{\"order\": {{json record.orderId}}, \"email\": {{json record.email}}, \"total\": {{json record.total}}}"},
               "filter": {"type": "expression", "expression": {"version": "1",
                 "rules": ["endswith", ["extract", "email"], "@example.com"]}}}),
        json!({}),
    );
    merge(
        &mut bundle["exports"][0],
        json!({
            "transform": {"type": "expression", "expression": {"version": "1", "rules": [[
                {"extract": "id", "generate": "orderId"},
                {"extract": "{{lowercase record.customer.email}}", "generate": "email"},
                {"extract": "status", "generate": "status"},
                {"extract": transform_total, "generate": "total"}]]}},
            "filter": {"type": "expression", "expression": {"version": "1", "rules":
                ["and", ["notequals", ["extract", "status"], "cancelled"],
                        ["greaterthan", ["number", ["extract", "total"]], 0]]}}}),
    );
    bundle
}

fn shop_order(id: u64, email: &str, status: &str, qty: u64, price: &str) -> Value {
    json!({"id": id, "customer": {"email": email}, "status": status, "qty": qty, "price": price,
           "secret": "not sent"})
}

#[tokio::test]
async fn the_export_transforms_before_its_filter_and_every_record_is_counted() {
    let (server, h) =
        start(|base| shaped_bundle(base, "{{multiply record.qty record.price}}")).await;
    let records = vec![
        shop_order(1, "Ann@Example.com", "open", 2, "9.99"), // sent
        shop_order(2, "bo@example.com", "cancelled", 1, "5"), // export filter: cancelled
        shop_order(3, "cy@example.com", "open", 0, "5"),     // export filter: total 0
        shop_order(4, "di@other.org", "open", 1, "5"),       // import filter: not @example.com
        shop_order(5, "ed@example.com", "open", 1, "abc"),   // transform: not a number
        shop_order(6, "fi@example.com", "open", 3, "1.5"),   // sent
    ];
    let job = h.run("f", records).await;
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (2, 1, 3),
        "{job:?}"
    );
    assert_counts(&job, 6);
    let bodies = bodies_by(&server, "order");
    assert_eq!(bodies.len(), 2);
    // The filter saw `email` lowercased by the transform; `secret` was removed by it.
    assert_eq!(
        bodies["1"],
        json!({"order": 1, "email": "ann@example.com", "total": "19.98"})
    );
    assert_eq!(
        bodies["6"],
        json!({"order": 6, "email": "fi@example.com", "total": "4.5"})
    );
    let errors = h.errors(&job.id).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code, FailureCode::Transform);
    assert!(
        errors[0]
            .message
            .starts_with("transform.expression.rules[0][3] (total): ")
            && errors[0].message.contains("'abc' is not a number"),
        "{}",
        errors[0].message
    );
}

#[tokio::test]
async fn a_record_that_failed_the_export_transform_is_transformed_again_on_retry() {
    let (server, h) =
        start(|base| shaped_bundle(base, "{{multiply record.qty record.price}}")).await;
    let job = h
        .run(
            "f",
            vec![shop_order(7, "gu@example.com", "open", 2, "2,50")],
        )
        .await;
    assert_eq!((job.num_success, job.num_error), (0, 1), "{job:?}");
    assert_counts(&job, 1);
    // The transform is fixed to read the decimal comma; the retry shapes the record again.
    h.load(shaped_bundle(
        &server.base_url,
        "{{multiply record.qty (replace record.price \",\" \".\")}}",
    ))
    .await;
    let retry = sluice_core::runs::retry_errors(&h.sluice(), &job.id, None)
        .await
        .unwrap();
    let again = h.wait(&retry.job_id).await;
    assert_eq!(
        (again.num_success, again.num_error, again.num_ignore),
        (1, 0, 0),
        "{again:?}"
    );
    assert_counts(&again, 1);
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].json(),
        json!({"order": 7, "email": "gu@example.com", "total": "5"})
    );
}

#[tokio::test]
async fn a_filter_that_cannot_decide_is_a_record_error_naming_it() {
    let (_server, h) = start(|base| {
        let mut bundle = http_bundle(base, json!({}), json!({}));
        merge(
            &mut bundle["exports"][0],
            json!({"filter": {"type": "expression", "expression": {"version": "1",
                   "rules": ["greaterthan", ["number", ["extract", "qty"]], 1]}}}),
        );
        bundle
    })
    .await;
    let records = vec![
        json!({"name": "a", "qty": 5}),
        json!({"name": "b", "qty": 1}),
        json!({"name": "c", "qty": "many"}),
    ];
    let job = h.run("f", records).await;
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (1, 1, 1),
        "{job:?}"
    );
    assert_counts(&job, 3);
    let errors = h.errors(&job.id).await;
    assert_eq!(errors[0].code, FailureCode::OutputFilter);
    assert!(
        errors[0].message.contains("'many' is not a number"),
        "{}",
        errors[0].message
    );
}

#[tokio::test]
async fn strict_templates_make_a_missing_field_a_record_error() {
    let (server, h) = start(importing(
        json!({"strictTemplates": true,
               "http": {"body": "{\"name\": {{json record.name}}, \"nick\": \"{{trim record.nick}}\"}"}}),
    ))
    .await;
    let job = h
        .run(
            "f",
            vec![json!({"name": "a", "nick": " al "}), json!({"name": "b"})],
        )
        .await;
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (1, 1, 0),
        "{job:?}"
    );
    assert_counts(&job, 2);
    assert_eq!(
        server.received()[0].json(),
        json!({"name": "a", "nick": "al"})
    );
    let errors = h.errors(&job.id).await;
    assert_eq!(errors[0].code, FailureCode::Template);
    assert!(
        errors[0]
            .message
            .contains("record.nick is missing (strict templates)"),
        "{}",
        errors[0].message
    );
}

#[tokio::test]
async fn the_shaped_orders_example_runs_end_to_end() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/shaped-orders");
    let mut bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/bundle.json")).unwrap())
            .unwrap();
    let records: Vec<Value> = std::fs::read_to_string(format!("{dir}/orders.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (server, h) = start(|base| {
        bundle["connections"][0]["http"]["baseURI"] = json!(base);
        bundle
    })
    .await;
    let job = h.run("shaped-orders", records.clone()).await;
    assert_counts(&job, records.len() as u64);
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (3, 1, 1),
        "{job:?}"
    );
    let bodies = bodies_by(&server, "externalId");
    assert_eq!(
        bodies["\"SO-1001\""],
        json!({"externalId": "SO-1001", "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
               "orderDate": "2026-03-26", "orderDay": "Thursday", "total": 41.5, "channel": "web",
               "lines": [{"item": "SKU-7", "quantity": 2, "unitPrice": 12.25},
                         {"item": "SKU-9", "quantity": 1, "unitPrice": 17}]})
    );
    let errors = h.errors(&job.id).await;
    assert_eq!(errors[0].code, FailureCode::Mapping);
    assert!(
        errors[0].message.contains("(lines.quantity)") || errors[0].message.contains("(quantity)"),
        "{}",
        errors[0].message
    );
}

/// Reads an example's bundle and records, pointing its connection at `base`.
fn example(name: &str) -> (Value, Vec<Value>) {
    let dir = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let bundle = std::fs::read_to_string(format!("{dir}/bundle.json")).unwrap();
    let records: Vec<Value> = std::fs::read_to_string(format!("{dir}/orders.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (serde_json::from_str(&bundle).unwrap(), records)
}

#[tokio::test]
async fn the_routed_orders_example_sends_each_order_down_its_regions_branch() {
    let (mut bundle, records) = example("routed-orders");
    let (server, h) = start(|base| {
        bundle["connections"][0]["http"]["baseURI"] = json!(base);
        bundle
    })
    .await;
    let job = h.run("routed-orders", records.clone()).await;
    assert_counts(&job, records.len() as u64);
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (3, 1, 1),
        "SO-2003's quantity is no number; SO-2004 is cancelled: {job:?}"
    );
    let got = server.received();
    let on = |path: &str| -> Vec<Value> {
        got.iter()
            .filter(|r| r.path == path)
            .map(|r| r.json())
            .collect()
    };
    assert_eq!(
        on("/eu/orders"),
        // 23:15 UTC on 26 March is 00:15 on the 27th in Berlin.
        vec![json!({"reference": "SO-2001", "shipTo": {"country": "DE"},
                    "orderedAt": "27.03.2026 00:15", "total": 41.5,
                    "positions": [{"article": "SKU-7", "quantity": 2},
                                  {"article": "SKU-9", "quantity": 1}]})]
    );
    let mut main: Vec<Value> = on("/orders");
    main.sort_by_key(|b| b["externalId"].to_string());
    assert_eq!(
        main,
        vec![
            json!({"externalId": "SO-2002", "country": "US", "orderDate": "03/26/2026 07:15 PM",
                   "amount": 8, "lines": [{"item": "SKU-1", "quantity": 4}]}),
            json!({"externalId": "SO-2005", "country": "CA", "orderDate": "03/27/2026 06:30 AM",
                   "amount": 19.9, "lines": [{"item": "SKU-4", "quantity": 1},
                                             {"item": "SKU-5", "quantity": 3}]}),
        ]
    );
    let errors = h.errors(&job.id).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].code, errors[0].record["number"].as_str()),
        (FailureCode::Mapping, Some("SO-2003"))
    );
    assert_eq!(
        errors[0].import_id.as_deref(),
        Some("create-eu-order"),
        "stored at the branch's step"
    );
}

/// Imports `/a`, `/b`, ... posting `{name, qty}`, one per id, and a flow `f` fed by `exp`
/// with `flow` merged in.
fn routed_bundle(base: &str, imports: &[&str], flow: Value) -> Value {
    let mut b = http_bundle(base, json!({}), json!({}));
    let template = b["imports"][0].clone();
    b["imports"] = imports
        .iter()
        .map(|id| {
            let mut i = template.clone();
            merge(
                &mut i,
                json!({"_id": id, "name": id, "http": {"relativeURI": format!("/{id}")}}),
            );
            i
        })
        .collect();
    let f = &mut b["flows"][0];
    f.as_object_mut().unwrap().remove("pageProcessors");
    merge(f, flow);
    b
}

fn step(import: &str) -> Value {
    json!({"type": "import", "_importId": import})
}

fn by_path(server: &TestServer) -> std::collections::BTreeMap<String, Vec<Value>> {
    let mut m: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for r in server.received() {
        m.entry(r.path.clone())
            .or_default()
            .push(r.json()["qty"].clone());
    }
    m.values_mut()
        .for_each(|v| v.sort_by_key(|q| q.as_i64().unwrap_or(-1)));
    m
}

#[tokio::test]
async fn all_matching_branches_send_a_record_down_each_and_its_job_counts_it_once() {
    // /b refuses qty 3 once (422 is not retried): that copy fails, its retry goes through.
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = refused.clone();
    let server = TestServer::start(move |n, r: &Received| {
        if r.path == "/b" && r.json()["qty"] == 3 && !once.swap(true, Ordering::SeqCst) {
            return Answer::json(422, json!({"error": "no"}));
        }
        Answer::json(201, json!({"id": n}))
    })
    .await;
    let h = Harness::new();
    h.load(routed_bundle(
        &server.base_url,
        &["a", "b", "c"],
        json!({"routers": [
            {"id": "fan-out", "routeRecordsTo": "all_matching_branches", "nextRouterId": "join",
             "branches": [
                {"name": "big", "inputFilter": {"type": "cel", "expression": "record.qty > 1"},
                 "pageProcessors": [step("a")]},
                {"name": "every", "pageProcessors": [step("b")]}]},
            {"id": "join", "branches": [{"name": "last", "pageProcessors": [step("c")]}]}]}),
    ))
    .await;
    let job = h.run("f", orders(4)).await;
    assert_counts(&job, 4);
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (4, 0, 0),
        "each record is counted by its copy on the first branch it took: {job:?}"
    );
    let got = by_path(&server);
    assert_eq!(got["/a"], [json!(2), json!(3)]);
    assert_eq!(got["/b"], [json!(0), json!(1), json!(2), json!(3)]);
    assert_eq!(
        got["/c"],
        [json!(0), json!(1), json!(2), json!(2), json!(3)],
        "both copies of 2 meet again at the next router; 3's copy on b failed"
    );
    let keys: std::collections::HashSet<String> = (server.received().iter())
        .filter(|r| r.path == "/c")
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(keys.len(), 5, "every copy is its own send: {keys:?}");
    let errors = h.errors(&job.id).await;
    assert_eq!(errors.len(), 1, "the copy's error is stored: {errors:?}");
    let e = &errors[0];
    assert_eq!(
        (e.import_id.as_deref(), e.record["qty"].as_i64()),
        (Some("b"), Some(3))
    );
    assert!(e.record_key.ends_with(".r0b1"), "{}", e.record_key);

    // The retry starts the record at the step where it failed, then goes on to the join.
    let retry = sluice_core::runs::retry_errors(&h.sluice(), &job.id, None)
        .await
        .unwrap();
    let again = h.wait(&retry.job_id).await;
    assert_counts(&again, 1);
    assert_eq!((again.num_success, again.num_error), (1, 0), "{again:?}");
    let got = by_path(&server);
    assert_eq!(got["/a"].len(), 2, "the retry does not go back through a");
    assert_eq!((got["/b"].len(), got["/c"].len()), (5, 6));
}

#[tokio::test]
async fn first_matching_branch_ignores_what_no_branch_takes_and_a_failure_can_proceed() {
    // /check refuses qty 3: with proceedOnFailure it still goes on, and counts as an error.
    let server = TestServer::start(|n, r: &Received| match r.json()["qty"].as_i64() {
        Some(3) if r.path == "/check" => Answer::json(422, json!({"error": "suspicious"})),
        _ => Answer::json(201, json!({"id": n})),
    })
    .await;
    let h = Harness::new();
    h.load(routed_bundle(
        &server.base_url,
        &["check", "big"],
        json!({"pageProcessors": [{"type": "import", "_importId": "check", "proceedOnFailure": true}],
               "routers": [{"id": "size", "name": "By size", "branches": [
                 {"name": "big", "inputFilter": {"type": "cel", "expression": "record.qty >= 2"},
                  "pageProcessors": [step("big")]},
                 {"name": "one", "inputFilter": {"type": "expression", "expression":
                    {"version": "1", "rules": ["equals", ["extract", "qty"], 1]}}},
                 {"name": "nobody", "inputFilter": {"type": "cel", "expression": "record.name == 'nobody'"},
                  "pageProcessors": [step("big")]}]}]}),
    ))
    .await;
    let mut records = orders(5);
    records[4] = json!({"name": "order x", "qty": "lots"});
    let job = h.run("f", records).await;
    assert_counts(&job, 5);
    // 0: no branch takes it; 1: its branch has no steps; 2: big; 3: failed /check, went on
    // to big; "lots": the first branch's filter cannot compare it with 2.
    let got = by_path(&server);
    assert_eq!(got["/check"].len(), 5);
    assert_eq!(got["/big"], [json!(2), json!(3)]);
    assert_eq!(
        (job.num_success, job.num_error, job.num_ignore),
        (1, 2, 2),
        "{job:?}"
    );
    let mut errors = h.errors(&job.id).await;
    errors.sort_by_key(|e| e.processor_index);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        (errors[0].processor_index, errors[0].code),
        (0, FailureCode::Evaluator),
        "the failure at /check is stored though the record went on"
    );
    let router_error = &errors[1];
    assert_eq!(router_error.code, FailureCode::InputFilter);
    assert_eq!(router_error.step_name.as_deref(), Some("router By size"));
    assert!(
        router_error
            .message
            .contains("branch 'big' of router 'By size'"),
        "{}",
        router_error.message
    );
    assert_eq!(
        router_error.processor_index, 3,
        "stored at the router's position (after the 3 steps), so a retry is routed again"
    );
}
