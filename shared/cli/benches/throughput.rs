//! Throughput figures (a bench binary, not a timed test):
//!   cargo bench -p sluice-cli --bench throughput
//! BENCH_RECORDS (default 20000) records go through the local runtime — trigger, translate,
//! deliver to a loopback HTTP sink, extract, evaluate — with a temp SQLite store; the counting
//! invariant is checked. Also template renders/s with the compile-once cache.

use axum::routing::post;
use serde_json::json;
use sluice_core::ports::Kind;
use sluice_core::runs::start_run;
use sluice_embedded::LocalRuntime;
use sluice_model::{RunKind, RunRequest};
use std::time::{Duration, Instant};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn bench_templates() {
    let cache = sluice_core::stages::translate::TemplateCache::default();
    let source = r#"{"customer": {{json record.customer}}, "sku": {{json record.sku}}, "qty": {{json record.qty}}, "ref": {{json record.ref}}}"#;
    let ctx = handlebars_context(
        json!({"record": {"customer": "Ada \"the great\" Lovelace", "sku": "SKU-001", "qty": 3, "ref": "PO-1"}}),
    );
    let n = 200_000;
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += cache.render(source, &ctx).unwrap().len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "templates: {n} renders in {secs:.2}s = {:.0} renders/s ({bytes} bytes)",
        n as f64 / secs
    );
}

/// Per record: a 20-field mapping plus a filter (rule form, then CEL) against the handlebars
/// body that writes the same 20 fields, each compiled once as the stages do.
fn bench_shaping() {
    use sluice_core::conditions::ConditionCache;
    use sluice_core::filters::FilterCache;
    use sluice_core::mapping::{apply, Templates};
    use sluice_core::stages::translate::Escape;
    let record = json!({"id": 1234, "number": "SO-1234", "status": "open", "total": "41.50",
        "tax": "3.12", "created": "03/26/2026 04:15 PM", "currency": "EUR", "note": "",
        "customer": {"first": "Ada", "last": "Lovelace", "email": "ada@example.com",
                     "phone": "+44 20 7946 0000", "tier": "gold"},
        "shipping": {"street": "1 Analytical Way", "city": "London", "zip": "N1 9GU",
                     "country": "GB", "method": "express"},
        "billing": {"city": "London", "country": "GB"}});
    let paths = [
        "id",
        "number",
        "status",
        "currency",
        "customer.first",
        "customer.last",
        "customer.email",
        "customer.phone",
        "customer.tier",
        "shipping.street",
        "shipping.city",
        "shipping.zip",
        "shipping.country",
        "shipping.method",
        "billing.city",
        "billing.country",
    ];
    let mut fields: Vec<serde_json::Value> = paths
        .iter()
        .map(|p| json!({"extract": p, "generate": format!("out.{p}")}))
        .collect();
    fields.push(json!({"extract": "total", "generate": "total", "dataType": "number"}));
    fields.push(json!({"extract": "tax", "generate": "tax", "dataType": "number"}));
    fields.push(
        json!({"extract": "created", "generate": "orderDate", "dataType": "date",
        "extractDateFormat": "MM/DD/YYYY hh:mm A", "extractDateTimezone": "America/Los_Angeles",
        "generateDateFormat": "YYYY-MM-DD"}),
    );
    fields.push(json!({"extract": "note", "generate": "note", "default": "none"}));
    let mapping: sluice_model::Mapping =
        serde_json::from_value(json!({ "fields": fields })).unwrap();
    let compiled = mapping.compile("mapping").unwrap();
    let body = {
        let mut parts: Vec<String> = paths
            .iter()
            .map(|p| format!(r#""{p}": {{{{json record.{p}}}}}"#))
            .collect();
        parts.push(r#""total": {{json record.total}}, "tax": {{json record.tax}}"#.into());
        parts.push(r#""orderDate": "{{dateFormat "YYYY-MM-DD" record.created "MM/DD/YYYY hh:mm A" "America/Los_Angeles"}}""#.into());
        parts.push(r#""note": {{json (default record.note "none")}}"#.into());
        format!("{{{}}}", parts.join(", "))
    };
    let rules: sluice_model::Filter = serde_json::from_value(json!({"type": "expression",
        "expression": {"version": "1", "rules": ["and",
            ["notequals", ["lowercase", ["extract", "status"]], "cancelled"],
            ["greaterthan", ["number", ["extract", "total"]], 0]]}}))
    .unwrap();
    let cel = sluice_model::Filter::Cel(
        "record.status != 'cancelled' && record.customer.tier == 'gold'".into(),
    );
    let cache = sluice_core::stages::translate::TemplateCache::default();
    let (filters, conditions) = (FilterCache::default(), ConditionCache::default());
    let templates = Templates {
        cache: &cache,
        strict: false,
        now: None,
    };
    let context = json!({ "record": record });
    let n = 50_000;
    let per_record = |label: &str, f: &dyn Fn() -> usize| {
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            bytes += f();
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "shaping: {label}: {us:.2} µs/record ({} bytes out)",
            bytes / n
        );
        us
    };
    let hb = per_record(
        "handlebars body of the same 20 fields (context + render)",
        &|| {
            let ctx = handlebars_context(context.clone());
            cache
                .render_escaped(&body, &ctx, Escape::JsonString)
                .unwrap()
                .len()
        },
    );
    let mapped = |filter: &sluice_model::Filter| {
        let compiled_filter = filters.compile(filter).unwrap();
        assert!(compiled_filter.check(&conditions, &record).unwrap());
        apply(&compiled, &record, templates)
            .unwrap()
            .to_string()
            .len()
    };
    let with_rules = per_record("20-field mapping + rule filter + JSON body", &|| {
        mapped(&rules)
    });
    let with_cel = per_record("20-field mapping + CEL filter + JSON body", &|| {
        mapped(&cel)
    });
    println!(
        "shaping: mapping + filter cost {:.2}x (rules) / {:.2}x (CEL) of the handlebars body",
        with_rules / hb,
        with_cel / hb
    );
}

fn handlebars_context(v: serde_json::Value) -> handlebars::Context {
    handlebars::Context::wraps(v).unwrap()
}

fn main() {
    bench_templates();
    bench_shaping();
    let records: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/orders", post(|| async { (axum::http::StatusCode::CREATED, axum::Json(json!({"id": "x"}))) }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let dir = tempfile::tempdir().unwrap();
        let mut runtime = LocalRuntime::open(dir.path(), sluice_embedded::local_settings()).unwrap();
        let s = runtime.sluice();
        let defs = [
            (Kind::Connection, "c", json!({"_id": "c", "type": "http", "http": {"baseURI": base}, "concurrencyLevel": 32})),
            (Kind::Export, "e", json!({"_id": "e", "type": "webhook", "pageSize": 200})),
            (Kind::Import, "i", json!({"_id": "i", "_connectionId": "c", "type": "http", "http": {"relativeURI": "/orders", "body": "{\"n\": {{json record.n}}, \"name\": {{json record.name}}}"}, "responseMapping": {"fields": [{"extract": "id", "generate": "orderId"}]}})),
            (Kind::Flow, "f", json!({"_id": "f", "pageGenerators": [{"_exportId": "e"}], "pageProcessors": [{"type": "import", "_importId": "i"}]})),
        ];
        for (k, id, doc) in defs {
            s.store.put_definition(k, id, &doc).await.unwrap();
        }
        let input: Vec<_> = (0..records).map(|n| json!({"n": n, "name": format!("record {n}")})).collect();
        let start = Instant::now();
        let started = start_run(&s, "f", RunRequest { records: Some(input), ..Default::default() }, RunKind::Manual).await.unwrap().unwrap();
        let job = runtime.wait_for_job(&started.job_id, Duration::from_secs(3600), |_| {}).await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(job.num_success + job.num_error + job.num_ignore, records as u64, "counting invariant");
        println!(
            "pipeline: {records} records in {secs:.2}s = {:.0} records/s (success {}, error {}), peak RSS {:.0} MiB",
            records as f64 / secs,
            job.num_success,
            job.num_error,
            peak_rss_mib()
        );
        runtime.stop().await;
    });
}
