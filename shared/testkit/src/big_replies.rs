//! Big replies, for the tests that check both store adapters keep them bounded: a target
//! that answers each order with a reply of 1 MB or 10 MB, a flow over it that maps values out
//! of the reply and judges a field deep in it, and what must hold afterwards. Plain JSON, so
//! the embedded and the AWS tests share it.

use crate::http::{Answer, TestServer};
use serde_json::{json, Value};

/// The records: how big a reply each gets (MB), and whether the reply says it went through.
pub fn records() -> Vec<Value> {
    vec![
        json!({"n": 1, "mb": 1, "ok": true}),
        json!({"n": 2, "mb": 10, "ok": true}),
        json!({"n": 3, "mb": 10, "ok": false}),
    ]
}

/// `POST /orders` answers 201 with `{"id": "ord-N", "status": {"ok": ..}, "items": [...]}`
/// of the record's size (its last item's sku is "last"); `POST /echo` answers 200 `{}`.
pub async fn target() -> TestServer {
    TestServer::start(|_, r| {
        if r.path == "/echo" {
            return Answer::json(200, json!({}));
        }
        let order = r.json();
        let bytes = (order["mb"].as_u64().unwrap_or(1) as usize) << 20;
        // Items of ~100 bytes up to the size.
        let item = |i: usize| json!({"sku": format!("s{i:08}"), "note": "x".repeat(80)});
        let mut items: Vec<Value> = (0..bytes / 100).map(item).collect();
        items.push(json!({"sku": "last"}));
        let body = json!({
            "id": format!("ord-{}", order["n"]),
            "status": {"ok": order["ok"]},
            "items": items,
        });
        Answer::json(201, body)
    })
    .await
}

/// Connection `c` to the target, webhook export `e`, import `i` posting each record to
/// `/orders` (mapping the reply's `id` and its last item's sku into the record, judging
/// `response.body.status.ok`), then import `echo` posting the record, mapped values included,
/// to `/echo`; flow `f`.
pub fn bundle(base_url: &str) -> Value {
    json!({
        "connections": [{"_id": "c", "name": "Target", "type": "http", "http": {"baseURI": base_url, "requestTimeoutMs": 60000}}],
        "exports": [{"_id": "e", "name": "Orders in", "type": "webhook", "pageSize": 10}],
        "imports": [
            {"_id": "i", "name": "Post orders", "_connectionId": "c", "type": "http",
             "http": {"relativeURI": "/orders", "body": "{{json record}}"},
             "responseMapping": {"fields": [
                 {"extract": "id", "generate": "orderId"},
                 {"extract": "$.body.items[-1].sku", "generate": "lastSku"}
             ]},
             "evaluator": "response.status == 201 && response.body.status.ok == true"},
            {"_id": "echo", "name": "Echo", "_connectionId": "c", "type": "http",
             "http": {"relativeURI": "/echo", "body": "{{json record}}"}}
        ],
        "flows": [{"_id": "f", "name": "Big replies", "pageGenerators": [{"_exportId": "e"}], "pageProcessors": [
            {"type": "import", "_importId": "i"}, {"type": "import", "_importId": "echo"}
        ]}]
    })
}

/// The three records' sends to `/orders`, each with the ledger chunk it is in when the store
/// claims `chunk_size` sends at a time (`Store::ledger_chunk_size`).
pub fn ledger_sends(job_id: &str, chunk_size: usize) -> Vec<(String, String)> {
    (0..3)
        .map(|i| {
            let chunk = format!("deliver:{job_id}:g0-p000000:0:chunk{}", i / chunk_size);
            (chunk, format!("g0-p000000-r{i:05}"))
        })
        .collect()
}

/// Most that anything kept of one record may weigh: far less than any of its replies.
pub const KEPT_AT_MOST: usize = 64 * 1024;

/// What must hold whatever the store: records 1 and 2 (1 MB and 10 MB replies) are
/// successes whose mapped values reached `/echo`, record 3 is an evaluator error (its reply
/// says not ok) stored with a bounded reply, and every ledger outcome is small.
pub fn check(target: &TestServer, job: &Value, errors: &Value, ledger: &[Value]) {
    assert_eq!(
        (job["numSuccess"].as_u64(), job["numError"].as_u64()),
        (Some(2), Some(1)),
        "{job}\n{}",
        short(errors)
    );
    let mut echoed: Vec<Value> = target
        .received()
        .iter()
        .filter(|r| r.path == "/echo")
        .map(|r| r.json())
        .collect();
    echoed.sort_by_key(|r| r["n"].as_u64());
    assert_eq!(echoed.len(), 2);
    for (r, n) in echoed.iter().zip([1, 2]) {
        assert_eq!(r["orderId"], format!("ord-{n}"), "{r}");
        assert_eq!(r["lastSku"], "last", "{r}");
    }
    let errors = errors.as_array().unwrap();
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(e["code"], "evaluator", "{}", short(&errors[0]));
    assert_eq!(e["record"]["n"], 3);
    let stored = serde_json::to_string(e).unwrap().len();
    assert!(
        stored < KEPT_AT_MOST,
        "the stored error weighs {stored} bytes"
    );
    let bounded = &e["response"]["bounded"];
    assert!(
        bounded["bytes"].as_u64().unwrap() > 10 << 20,
        "{}",
        short(e)
    );
    assert!(bounded["excerpt"]
        .as_str()
        .unwrap()
        .starts_with("{\"id\":\"ord-3\""));
    assert_eq!(ledger.len(), 3);
    for outcome in ledger {
        let size = serde_json::to_string(outcome).unwrap().len();
        assert!(size < KEPT_AT_MOST, "a ledger outcome weighs {size} bytes");
        assert_eq!(outcome["reply"]["status"], 201, "{}", short(outcome));
    }
}

/// A value's first 2,000 characters, for messages.
fn short(v: &Value) -> String {
    v.to_string().chars().take(2000).collect()
}
