//! Throughput figures (a bench binary, not a timed test):
//!   cargo bench -p sluice-cli --bench throughput
//!   BENCH_RECORDS=100000 cargo bench -p sluice-cli --bench throughput
//! BENCH_RECORDS (default 20000) records go through the local runtime — trigger (an NDJSON
//! file), translate, deliver to a loopback HTTP sink, extract, evaluate — with a temp SQLite
//! store, the connection's concurrencyLevel and rateLimit set and the ledger on; the counting
//! invariant is checked. Beside it, in the same run, a bare loop does the same per-record work
//! against the same sink with as many requests in flight; the ratio of the two is printed, and
//! each side's peak RSS (each side runs in a process of its own; the sink stays in the
//! first). Other knobs: BENCH_CONCURRENCY (`8,32`), BENCH_RATE (requests/s), BENCH_ROUNDS (3,
//! medians), BENCH_SKIP_MICRO (skip the template and shaping figures).
//! Also template renders/s with the compile-once cache.

use axum::routing::post;
use serde_json::json;
use sluice_core::ports::Kind;
use sluice_core::runs::start_run;
use sluice_embedded::LocalRuntime;
use sluice_model::{FileType, RunKind, RunRequest, RunSource};
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

/// The bench's settings, from the environment.
struct Setup {
    /// `BENCH_RECORDS` (default 20000).
    records: usize,
    /// `BENCH_CONCURRENCY`: the connection's concurrencyLevel, one pipeline run per value
    /// (default `8,32`), each beside a bare loop with as many requests in flight.
    levels: Vec<u32>,
    /// `BENCH_RATE`: the connection's rateLimit in requests/s (default 100000: set, so its
    /// store writes are paid, but far above what either side reaches).
    rate: f64,
    /// `BENCH_ROUNDS` (default 3): figures are the medians of this many rounds.
    rounds: usize,
}

impl Setup {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        Setup {
            records: var("BENCH_RECORDS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(20_000),
            levels: var("BENCH_CONCURRENCY")
                .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
                .unwrap_or_else(|| vec![8, 32]),
            rate: var("BENCH_RATE")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100_000.0),
            rounds: var("BENCH_ROUNDS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(3)
                .max(1),
        }
    }
}

const BODY: &str = r#"{"n": {{json record.n}}, "name": {{json record.name}}}"#;

/// The sink both sides post to, on a thread and a tokio runtime of its own (so its work
/// shares the machine with either side the same way): 201 with a small JSON body.
fn start_sink() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route(
                "/orders",
                post(|| async {
                    (
                        axum::http::StatusCode::CREATED,
                        axum::Json(json!({"id": "x"})),
                    )
                }),
            );
            axum::serve(listener, app).await.unwrap()
        })
    });
    base
}

fn input(n: usize) -> serde_json::Value {
    json!({"n": n, "name": format!("record {n}")})
}

/// The same per-record work by hand: the body rendered by handlebars compiled once, a
/// reqwest POST, the reply parsed, its id extracted, 2xx judged; `in_flight` at once.
async fn bare_loop(base: &str, records: usize, in_flight: usize) -> (f64, usize) {
    use futures::StreamExt;
    let mut hb = handlebars::Handlebars::new();
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper(
        "json",
        Box::new(
            |h: &handlebars::Helper,
             _: &handlebars::Handlebars,
             _: &handlebars::Context,
             _: &mut handlebars::RenderContext,
             out: &mut dyn handlebars::Output|
             -> handlebars::HelperResult {
                let v = h
                    .param(0)
                    .map(|p| p.value().to_string())
                    .unwrap_or_default();
                out.write(&v)?;
                Ok(())
            },
        ),
    );
    hb.register_template_string("body", BODY).unwrap();
    let client = reqwest::Client::new();
    let url = format!("{base}/orders");
    let start = Instant::now();
    let ok = futures::stream::iter(0..records)
        .map(|n| {
            let (hb, client, url) = (&hb, &client, &url);
            async move {
                let body = hb.render("body", &json!({ "record": input(n) })).unwrap();
                let reply = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = reply.status();
                let parsed: serde_json::Value =
                    serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
                status.is_success() && parsed.get("id").is_some()
            }
        })
        .buffer_unordered(in_flight)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    (records as f64 / start.elapsed().as_secs_f64(), ok)
}

/// One run of the flow through the local runtime (a fresh data directory): the records as an
/// NDJSON file, the connection with `concurrencyLevel` and `rateLimit` set, the ledger on.
async fn pipeline(base: &str, setup: &Setup, level: u32, file: &std::path::Path) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut runtime = LocalRuntime::open(dir.path(), sluice_embedded::local_settings()).unwrap();
    let s = runtime.sluice();
    let defs = [
        (
            Kind::Connection,
            "c",
            json!({"_id": "c", "type": "http", "http": {"baseURI": base},
            "concurrencyLevel": level, "rateLimit": {"requestsPerSecond": setup.rate, "burst": level}}),
        ),
        (
            Kind::Export,
            "e",
            json!({"_id": "e", "type": "webhook", "pageSize": 200}),
        ),
        (
            Kind::Import,
            "i",
            json!({"_id": "i", "_connectionId": "c", "type": "http",
            "http": {"relativeURI": "/orders", "body": BODY},
            "responseMapping": {"fields": [{"extract": "id", "generate": "orderId"}]}}),
        ),
        (
            Kind::Flow,
            "f",
            json!({"_id": "f", "pageGenerators": [{"_exportId": "e"}],
            "pageProcessors": [{"type": "import", "_importId": "i"}]}),
        ),
    ];
    for (k, id, doc) in defs {
        s.store.put_definition(k, id, &doc).await.unwrap();
    }
    let start = Instant::now();
    let (bucket, key) = runtime.stage_file(file).await.unwrap();
    let source = RunSource::File {
        bucket,
        key,
        name: "records.ndjson".into(),
        format: Some(FileType::Ndjson),
    };
    let request = RunRequest {
        source: Some(source),
        ..Default::default()
    };
    let started = start_run(&s, "f", request, RunKind::Manual)
        .await
        .unwrap()
        .unwrap();
    let job = runtime
        .wait_for_job(&started.job_id, Duration::from_secs(3600), |_| {})
        .await
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let records = setup.records as u64;
    assert_eq!(
        job.num_success + job.num_error + job.num_ignore,
        records,
        "counting invariant"
    );
    assert_eq!(job.num_success, records, "every record delivered");
    runtime.stop().await;
    records as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The pipeline beside the bare loop, in the same minute, for each concurrency level:
/// records/s of both (medians of the rounds), their ratio, and each side's peak RSS. Each
/// side runs in a process of its own (this bench again, told by `BENCH_SIDE`), so its peak RSS
/// is its own; the sink stays in this one.
fn bench_pipeline(setup: &Setup) {
    let base = start_sink();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.ndjson");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for n in 0..setup.records {
            writeln!(out, "{}", input(n)).unwrap();
        }
    }
    let records = setup.records;
    let mut fastest_level = (0, 0.0);
    for &level in &setup.levels {
        let (mut bare, mut piped, mut bare_rss, mut piped_rss) = (vec![], vec![], 0.0f64, 0.0f64);
        for _ in 0..setup.rounds {
            let (per_sec, rss) = side("bare", level, &base, &file);
            bare.push(per_sec);
            bare_rss = bare_rss.max(rss);
            let (per_sec, rss) = side("pipeline", level, &base, &file);
            piped.push(per_sec);
            piped_rss = piped_rss.max(rss);
        }
        let (bare, piped) = (median(bare), median(piped));
        println!(
            "throughput: {records} records, {level} in flight (concurrencyLevel {level}, rateLimit {}/s, ledger on), median of {}: \
             pipeline {piped:.0} records/s (peak RSS {piped_rss:.0} MiB), bare loop {bare:.0} records/s (peak RSS {bare_rss:.0} MiB), ratio {:.2}x",
            setup.rate,
            setup.rounds,
            piped / bare
        );
        if piped < fastest_level.1 {
            println!(
                "throughput: concurrencyLevel {level} is SLOWER than {} ({piped:.0} < {:.0} records/s)",
                fastest_level.0, fastest_level.1
            );
        } else {
            fastest_level = (level, piped);
        }
    }
}

/// Runs one side in a child process; answers its records/s and peak RSS (MiB).
fn side(which: &str, level: u32, base: &str, file: &std::path::Path) -> (f64, f64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(
            "BENCH_SIDE",
            format!("{which} {level} {base} {}", file.display()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("side: "));
    let Some((per_sec, rss)) = line.and_then(|l| l.split_once(' ')) else {
        panic!(
            "the {which} side failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    (per_sec.parse().unwrap(), rss.parse().unwrap())
}

/// In a child process: runs the side `BENCH_SIDE` names and prints `side: <records/s> <MiB>`.
fn run_side(spec: &str, setup: &Setup) {
    let mut parts = spec.splitn(4, ' ');
    let (which, level, base, file) = (
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u32>().unwrap(),
        parts.next().unwrap(),
        std::path::PathBuf::from(parts.next().unwrap()),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let per_sec = match which {
        "bare" => {
            let (per_sec, ok) = rt.block_on(bare_loop(base, setup.records, level as usize));
            assert_eq!(
                ok, setup.records,
                "the bare loop judged every reply a success"
            );
            per_sec
        }
        _ => rt.block_on(pipeline(base, setup, level, &file)),
    };
    println!("side: {per_sec} {}", peak_rss_mib());
}

fn main() {
    let setup = Setup::from_env();
    if let Ok(spec) = std::env::var("BENCH_SIDE") {
        return run_side(&spec, &setup);
    }
    if std::env::var("BENCH_SKIP_MICRO").is_err() {
        bench_templates();
        bench_shaping();
    }
    bench_pipeline(&setup);
}
