//! Shaping records end to end through the local runtime against a real HTTP server on
//! loopback: an export's `transform` and output filter in rule form (trigger), an import's
//! rule filter, mapping and strict templates (translate), and the example bundle in
//! examples/shaped-orders. Every test checks that records in = success + error + ignore.

use serde_json::{json, Value};
use sluice_e2e::*;
use sluice_model::JobStatus;

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
    assert_eq!(errors[0].code, "mapping");
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
    assert_eq!(errors[0].code, "transform");
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
    assert_eq!(errors[0].code, "output_filter");
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
    assert_eq!(errors[0].code, "template");
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
    assert_eq!(errors[0].code, "mapping");
    assert!(
        errors[0].message.contains("(lines.quantity)") || errors[0].message.contains("(quantity)"),
        "{}",
        errors[0].message
    );
}
