//! What a flow costs on AWS per record (a bench binary, not a timed test):
//!   cargo bench -p sluice-aws --bench cost
//! COST_RECORDS (default 1000) records of about 1 KB run through the moto harness (the real
//! handlers, over SQS, DynamoDB and S3) to an http import on a connection with
//! `concurrencyLevel` (8) and `rateLimit` (COST_RATE requests/s, default 100) set and the
//! ledger on, pages of COST_PAGE_SIZE (50).
//! Every AWS request goes through a counting proxy in front of moto, which tallies them by
//! kind the way AWS bills them:
//! - DynamoDB in capacity units: a write is one unit per KB of the larger of the item before
//!   and after (at least one; a failed condition costs the same), doubled in a transaction; a
//!   read one unit per 4 KB read (half for an eventually consistent read), doubled in a
//!   transaction. Item sizes follow DynamoDB's rules (names plus values); the size an update
//!   leaves is read back from moto after the answer went out, so the handler does not wait.
//! - SQS in requests, each 64 KB of payload counting as one; receives that found nothing are
//!   shown apart and left out of the price: a poller makes them by the clock, not by record.
//! - S3 PUT/POST/COPY/LIST and GET/HEAD requests.
//! - Lambda: invocations and the handlers' measured time at the template's 256 MB (arm64).
//!
//! Prices (on-demand, us-east-1): DynamoDB $0.625 per million write units and $0.125 per
//! million read units; SQS $0.40 per million requests; S3 PUT $0.005 and GET $0.0004 per
//! 1,000; Lambda arm64 $0.0000133334 per GB-s and $0.20 per million invocations. Compared
//! with EventBridge Pipes plus an API destination, one request per record: $0.60 per million.
//!
//! moto answers in a millisecond or two where AWS takes several, and this machine is not a
//! Lambda: the Lambda figure is indicative; the request counts are what the code does. They
//! do not depend on the build, so `cargo bench --profile dev -p sluice-aws --bench cost`
//! gives the same counts without a release build (only its Lambda time is slower).
//!
//! Where the units go per record (1000 records, pages of 50), before and after the ledger
//! chunks and the limits' blocks: the ledger was a Put, an Update and a consistent job read
//! per record (2 WCU, 1 RCU), now one item per 25 records (a Put, a job read, an Update of
//! ~3 KB); rate-limit compare-and-sets were one per ~2 requests (blocks sized by the waiters
//! alone), now one per ~9; shared slots were taken and given back at every page (idle after
//! 100 ms), now kept across pages. Then (issue 14's second round, from $0.664 to $0.513 per
//! million, dev profile): extract runs in deliver's invocation (a queue hop less per page);
//! messages over 8 KiB go deflated (pages of fifty 1 KB records: one billed SQS request
//! each instead of two, receives alike); a process alone on the rate keeps its token
//! blocks large (a compare-and-set per 26 requests, was per 5.5); slots kept 2 s idle (at
//! 500 ms a loaded machine gave them back between pages: three times the slot writes);
//! evaluate renews the run lock once per quarter lease, not per page. Every line of the
//! report is one kind of request and the kinds of item it touches (`dynamodb PutItem
//! slots`), so the next cut is read off it: the definitions read per page and stage
//! (`GetItem def`), the page outcome's transaction, the ledger's settle (~3 KB per chunk).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use sluice_aws::harness::Harness;
use sluice_core::ports::Kind;
use sluice_core::runs::start_run;
use sluice_model::{RunKind, RunRequest};
use sluice_testkit::moto::Moto;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LAMBDA_GB: f64 = 0.25;

/// Requests of one kind (`dynamodb PutItem`, `sqs SendMessage`, `s3 PUT`, ...).
#[derive(Default, Clone, Copy)]
struct Tally {
    requests: u64,
    /// DynamoDB write and read capacity units.
    wcu: f64,
    rcu: f64,
    /// SQS billed requests (64 KB chunks).
    sqs: u64,
}

#[derive(Default)]
struct Counts {
    by_kind: BTreeMap<String, Tally>,
    /// Last known size of each DynamoDB item, by (pk, sk).
    sizes: HashMap<(String, String), usize>,
    empty_receives: u64,
}

#[derive(Clone)]
struct Proxy {
    moto: String,
    client: reqwest::Client,
    counts: Arc<Mutex<Counts>>,
}

/// DynamoDB's size of an attribute value (DynamoDB JSON).
fn value_size(v: &Value) -> usize {
    let Some((ty, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match ty.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner.as_str().map_or(1, |n| n.len().div_ceil(2) + 1),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |a| {
            a.iter().filter_map(Value::as_str).map(str::len).sum()
        }),
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |a| a.iter().map(|e| 1 + value_size(e)).sum())
        }
        "M" => {
            3 + inner.as_object().map_or(0, |m| {
                m.iter().map(|(k, e)| 1 + k.len() + value_size(e)).sum()
            })
        }
        _ => 0,
    }
}

fn item_size(item: &Value) -> usize {
    item.as_object()
        .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

fn item_key(item: &Value) -> Option<(String, String)> {
    let s = |name: &str| item[name]["S"].as_str().map(str::to_string);
    Some((s("pk")?, s("sk")?))
}

fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

fn read_units(bytes: usize, consistent: bool) -> f64 {
    let units = bytes.div_ceil(4096).max(1) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

/// One DynamoDB write within a request: the key, the size the request gives (a put's item),
/// and whether the size it leaves must be read back (an update).
struct Write {
    key: (String, String),
    put: Option<usize>,
    update: bool,
}

fn writes_of(op: &str, body: &Value) -> Vec<Write> {
    let one = |w: &Value, kind: &str| -> Option<Write> {
        match kind {
            "Put" | "PutRequest" => Some(Write {
                key: item_key(&w["Item"])?,
                put: Some(item_size(&w["Item"])),
                update: false,
            }),
            "Update" => Some(Write {
                key: item_key(&w["Key"])?,
                put: None,
                update: true,
            }),
            "Delete" | "DeleteRequest" | "ConditionCheck" => Some(Write {
                key: item_key(&w["Key"])?,
                put: None,
                update: false,
            }),
            _ => None,
        }
    };
    match op {
        "PutItem" => one(body, "Put").into_iter().collect(),
        "UpdateItem" => one(body, "Update").into_iter().collect(),
        "DeleteItem" => one(body, "Delete").into_iter().collect(),
        "TransactWriteItems" => body["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let (kind, w) = t.as_object()?.iter().next()?;
                one(w, kind)
            })
            .collect(),
        "BatchWriteItem" => body["RequestItems"]
            .as_object()
            .into_iter()
            .flat_map(|tables| tables.values())
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|r| {
                let (kind, w) = r.as_object()?.iter().next()?;
                one(w, kind)
            })
            .collect(),
        _ => vec![],
    }
}

/// What a request is about: the kinds of item (the part of `pk` before `#`: ledger, job,
/// slots, state, ...) it reads or writes.
fn items_of(op: &str, request: &Value, writes: &[Write]) -> String {
    let kind = |pk: &str| pk.split('#').next().unwrap_or_default().to_string();
    let mut kinds: Vec<String> = match op {
        "GetItem" => request["Key"]["pk"]["S"]
            .as_str()
            .map(kind)
            .into_iter()
            .collect(),
        "Query" => request["ExpressionAttributeValues"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|v| v["S"].as_str())
            .take(1)
            .map(kind)
            .collect(),
        _ => writes.iter().map(|w| kind(&w.key.0)).collect(),
    };
    kinds.sort();
    kinds.dedup();
    kinds.join("+")
}

impl Proxy {
    async fn forward(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let url = format!(
            "{}{}",
            self.moto,
            uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut request = self.client.request(method.clone(), url).body(body);
        for (name, value) in headers {
            if name != "host" && name != "content-length" {
                request = request.header(name, value);
            }
        }
        let reply = request.send().await?;
        let status = StatusCode::from_u16(reply.status().as_u16())?;
        let mut out = HeaderMap::new();
        for (name, value) in reply.headers() {
            if name != "content-length" && name != "transfer-encoding" {
                out.insert(name.clone(), value.clone());
            }
        }
        Ok((status, out, reply.bytes().await?))
    }

    fn tally(&self, kind: String, f: impl FnOnce(&mut Tally, &mut Counts)) {
        let mut counts = self.counts.lock().unwrap();
        let mut t = counts.by_kind.get(&kind).copied().unwrap_or_default();
        t.requests += 1;
        f(&mut t, &mut counts);
        counts.by_kind.insert(kind, t);
    }

    /// Reads an item's size as it is now (not counted: the proxy's own bookkeeping).
    async fn size_now(&self, table: &str, key: &(String, String)) -> usize {
        let body = json!({"TableName": table, "ConsistentRead": true,
            "Key": {"pk": {"S": key.0}, "sk": {"S": key.1}}});
        let reply = self
            .client
            .post(&self.moto)
            .header("x-amz-target", "DynamoDB_20120810.GetItem")
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x",
            )
            .body(body.to_string())
            .send()
            .await;
        match reply {
            Ok(r) => r.json::<Value>().await.map_or(0, |v| item_size(&v["Item"])),
            Err(_) => 0,
        }
    }

    fn dynamodb(&self, op: &str, request: &Value, answer: &Value) {
        let transactional = op.starts_with("Transact");
        let factor = if transactional { 2.0 } else { 1.0 };
        let writes = writes_of(op, request);
        let kind = format!("dynamodb {op} {}", items_of(op, request, &writes));
        let mut updates = Vec::new();
        self.tally(kind.clone(), |t, counts| {
            for w in &writes {
                let before = counts.sizes.get(&w.key).copied().unwrap_or(0);
                let after = w.put.unwrap_or(before);
                t.wcu += factor * write_units(before.max(after));
                match (w.put, w.update) {
                    (Some(size), _) => {
                        counts.sizes.insert(w.key.clone(), size);
                    }
                    (None, true) => updates.push((w.key.clone(), before)),
                    (None, false) if op.contains("Delete") => {
                        counts.sizes.remove(&w.key);
                    }
                    _ => {}
                }
            }
            let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
            match op {
                "GetItem" => t.rcu += read_units(item_size(&answer["Item"]), consistent),
                "Query" | "Scan" => {
                    let bytes = answer["Items"]
                        .as_array()
                        .map_or(0, |items| items.iter().map(item_size).sum());
                    t.rcu += read_units(bytes, consistent);
                }
                "BatchGetItem" => {
                    for items in answer["Responses"]
                        .as_object()
                        .into_iter()
                        .flat_map(|m| m.values())
                    {
                        for item in items.as_array().into_iter().flatten() {
                            t.rcu += read_units(item_size(item), consistent);
                        }
                    }
                }
                _ => {}
            }
        });
        // What an update leaves is known only after it: read back, and the difference over
        // the size before charged to the same kind.
        if updates.is_empty() {
            return;
        }
        let (proxy, table) = (
            self.clone(),
            request["TableName"]
                .as_str()
                .or_else(|| {
                    request["TransactItems"][0].as_object()?.values().next()?["TableName"].as_str()
                })
                .unwrap_or_default()
                .to_string(),
        );
        tokio::spawn(async move {
            for (key, before) in updates {
                let after = proxy.size_now(&table, &key).await;
                let mut counts = proxy.counts.lock().unwrap();
                let extra = factor * (write_units(before.max(after)) - write_units(before));
                if let Some(t) = counts.by_kind.get_mut(&kind) {
                    t.wcu += extra;
                }
                counts.sizes.insert(key, after);
            }
        });
    }

    fn sqs(&self, op: &str, request: &Value, answer: &Value, payload: usize) {
        if op == "ReceiveMessage" && answer["Messages"].as_array().is_none_or(Vec::is_empty) {
            self.counts.lock().unwrap().empty_receives += 1;
            return;
        }
        let bytes = match op {
            "SendMessage" => request["MessageBody"].as_str().map_or(payload, str::len),
            "SendMessageBatch" => request["Entries"].as_array().map_or(payload, |e| {
                e.iter()
                    .filter_map(|m| m["MessageBody"].as_str())
                    .map(str::len)
                    .sum()
            }),
            "ReceiveMessage" => answer["Messages"].as_array().map_or(0, |m| {
                m.iter()
                    .filter_map(|m| m["Body"].as_str())
                    .map(str::len)
                    .sum()
            }),
            _ => 0,
        };
        self.tally(format!("sqs {op}"), |t, _| {
            t.sqs += bytes.div_ceil(64 * 1024).max(1) as u64;
        });
    }
}

async fn proxy(
    State(p): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let payload = body.len();
    let (status, out, answer) = match p.forward(&method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let parsed = || serde_json::from_slice::<Value>(&answer).unwrap_or(Value::Null);
    match target.as_deref().and_then(|t| t.split_once('.')) {
        Some((service, op)) if service.starts_with("DynamoDB") => {
            p.dynamodb(op, &request, &parsed())
        }
        Some((service, op)) if service.starts_with("AmazonSQS") => {
            p.sqs(op, &request, &parsed(), payload)
        }
        _ => {
            let kind = match method {
                Method::GET | Method::HEAD => "s3 GET/HEAD",
                Method::DELETE => "s3 DELETE (free)",
                _ => "s3 PUT/POST/COPY/LIST",
            };
            p.tally(kind.into(), |_, _| {});
        }
    }
    (status, out, answer).into_response()
}

/// Starts the counting proxy in front of moto; answers its endpoint.
async fn start_proxy(moto: String, counts: Arc<Mutex<Counts>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let state = Proxy {
        moto,
        client: reqwest::Client::new(),
        counts,
    };
    let app = axum::Router::new().fallback(proxy).with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    endpoint
}

/// The target: 201 with the order's id.
async fn start_sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/orders",
        axum::routing::post(|axum::Json(order): axum::Json<Value>| async move {
            (
                StatusCode::CREATED,
                axum::Json(json!({"id": format!("o-{}", order["n"])})),
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let records: usize = env_or("COST_RECORDS", 1000);
    let page_size: usize = env_or("COST_PAGE_SIZE", 50);
    let rate: f64 = env_or("COST_RATE", 100.0);
    let moto = Moto::start().expect("moto runs (infra/setup-moto.sh installs it)");
    let counts = Arc::new(Mutex::new(Counts::default()));
    let endpoint = start_proxy(moto.endpoint_url(), counts.clone()).await;
    let h = Harness::create(&endpoint).await.unwrap();
    let sink = start_sink().await;
    h.define([
        (
            Kind::Connection,
            "c",
            json!({"_id": "c", "name": "c", "type": "http",
            "http": {"baseURI": sink}, "concurrencyLevel": 8,
            "rateLimit": {"requestsPerSecond": rate, "burst": 8}}),
        ),
        (
            Kind::Export,
            "e",
            json!({"_id": "e", "name": "e", "type": "webhook", "pageSize": page_size}),
        ),
        (
            Kind::Import,
            "i",
            json!({"_id": "i", "name": "i", "_connectionId": "c", "type": "http",
            "http": {"relativeURI": "/orders", "body": "{{json record}}"},
            "responseMapping": {"fields": [{"extract": "id", "generate": "orderId"}]}}),
        ),
        (
            Kind::Flow,
            "f",
            json!({"_id": "f", "name": "f", "pageGenerators": [{"_exportId": "e"}],
            "pageProcessors": [{"type": "import", "_importId": "i"}]}),
        ),
    ])
    .await;
    // Pads of random letters and digits, not of one letter: queue messages go deflated, and
    // a pad that compresses a hundredfold would flatter it (these compress to about 2/3;
    // the JSON of real records compresses better).
    let input: Vec<Value> = (0..records)
        .map(|n| json!({"n": n, "customer": format!("customer {n}"), "pad": sluice_testkit::noise(1000, n as u64)}))
        .collect();
    // Setting up the stack is not the flow's cost.
    *counts.lock().unwrap() = Counts::default();
    h.reset_invocations();
    let request = RunRequest {
        records: Some(input),
        ..Default::default()
    };
    let started = start_run(&h.sluice, "f", request, RunKind::Manual)
        .await
        .unwrap()
        .unwrap();
    let job = h
        .wait_for_job(&started.job_id, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        job.num_success, records as u64,
        "every record delivered: {job:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // the last updates' sizes
    report(records, page_size, rate, &counts.lock().unwrap(), &h);
}

fn report(records: usize, page_size: usize, rate: f64, counts: &Counts, h: &Harness) {
    let per_m = 1e6 / records as f64;
    println!(
        "cost: {records} records of ~1 KB, pages of {page_size}, concurrencyLevel 8 + rateLimit {rate}/s, ledger on"
    );
    let (mut wcu, mut rcu, mut sqs, mut s3_put, mut s3_get) = (0.0, 0.0, 0u64, 0u64, 0u64);
    for (kind, t) in &counts.by_kind {
        println!(
            "cost:   {kind:<34} {:>7} requests  {:>8.1} WCU  {:>7.1} RCU  {:>6} SQS billed",
            t.requests, t.wcu, t.rcu, t.sqs
        );
        wcu += t.wcu;
        rcu += t.rcu;
        sqs += t.sqs;
        match kind.as_str() {
            "s3 GET/HEAD" => s3_get += t.requests,
            "s3 PUT/POST/COPY/LIST" => s3_put += t.requests,
            _ => {}
        }
    }
    println!(
        "cost:   (empty receives, by the clock, not priced: {})",
        counts.empty_receives
    );
    let (invocations, seconds) = h.invocations();
    for (stage, (n, d)) in h.invocation_stats() {
        println!(
            "cost:   lambda {:<27} {n:>7} invocations {:>8.3} s",
            stage.name(),
            d.as_secs_f64()
        );
    }
    let n = records as f64;
    println!(
        "cost: per record: {:.3} WCU, {:.3} RCU, {:.3} SQS requests, {:.4} S3 PUT, {:.4} S3 GET, {:.4} invocations, {:.2} ms of handler",
        wcu / n,
        rcu / n,
        sqs as f64 / n,
        s3_put as f64 / n,
        s3_get as f64 / n,
        invocations as f64 / n,
        seconds * 1000.0 / n
    );
    let dynamodb = (wcu * 0.625 + rcu * 0.125) / 1e6 * per_m;
    let sqs_cost = sqs as f64 * 0.40 / 1e6 * per_m;
    let s3 = (s3_put as f64 * 0.005 + s3_get as f64 * 0.0004) / 1000.0 * per_m;
    let lambda = (seconds * LAMBDA_GB * 0.000_013_333_4 + invocations as f64 * 0.20 / 1e6) * per_m;
    let total = dynamodb + sqs_cost + s3 + lambda;
    println!(
        "cost: $ per million records: DynamoDB {dynamodb:.3} + SQS {sqs_cost:.3} + S3 {s3:.3} + Lambda {lambda:.3} = {total:.3} (EventBridge Pipes + API destination: 0.600; ratio {:.2}x)",
        total / 0.60
    );
}
