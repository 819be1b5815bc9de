//! What a hook costs per record (a bench binary that prints figures, not a timed test):
//!   cargo bench -p sluice-core --bench hooks
//! A trivial preMap (`options.data.map(d => ({data: d}))`) over pages of 200 records of
//! ten fields, through the engine as a stage calls it: the options serialized, the call on
//! the engine thread, the answer parsed back. The first call (engine start and compile) is
//! timed apart: a Lambda that never runs a script never pays it.

use serde_json::{json, Value};
use sluice_core::hooks::{ScriptLimits, Scripts};
use sluice_model::Script;
use std::sync::Arc;
use std::time::Instant;

fn page(n: usize) -> Value {
    let data: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": i, "sku": format!("SKU-{i:05}"), "name": format!("order {i}"),
                   "qty": i % 7, "price": 12.5, "currency": "EUR", "customer": "Ada Lovelace",
                   "email": "ada@example.com", "status": "open", "created": "2026-11-22T10:15:00.041Z"})
        })
        .collect();
    json!({"data": data, "settings": {}})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let scripts = Scripts::new(ScriptLimits::default());
    let script = Arc::new(Script {
        id: "bench".into(),
        name: "bench".into(),
        description: None,
        content: "function preMap(options) { return options.data.map(d => ({data: d})); }".into(),
        integration_id: None,
        created_at: None,
        last_modified: None,
    });
    let records = 200;
    let options = page(records);
    let start = Instant::now();
    let first = scripts.call(script.clone(), "preMap", &options).await;
    assert!(first.result.is_ok(), "{:?}", first.result);
    println!(
        "hooks: first call (engine start + compile + 200 records): {:.2} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let pages = 500;
    let start = Instant::now();
    for _ in 0..pages {
        let out = scripts.call(script.clone(), "preMap", &options).await;
        let answer = out.result.expect("answers");
        assert_eq!(answer.as_array().map(Vec::len), Some(records));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "hooks: trivial preMap, {pages} pages of {records} records: {:.2} µs per record ({:.2} ms per page)",
        secs * 1e6 / (pages * records) as f64,
        secs * 1e3 / pages as f64
    );
}
