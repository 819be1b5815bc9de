//! Helpers for the end-to-end tests: a local runtime over the embedded adapters, bundles
//! loaded into its store, runs started and awaited.

use serde_json::{json, Value};
use sluice_core::ports::{MapSecrets, SystemClock};
use sluice_core::runs::start_run;
use sluice_core::{Settings, Sluice};
pub use sluice_embedded::local_settings;
use sluice_embedded::{FsBlobs, LocalRuntime, SqliteStore};
use sluice_model::{Bundle, Job, JobError, Page, PageRecord};
use sluice_model::{RunKind, RunRequest};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use sluice_testkit::http::{Answer, Received, TestServer};
pub use sluice_testkit::sshd::SshServer;

pub struct Harness {
    pub runtime: LocalRuntime,
    /// Keeps an in-memory harness's blob directory alive.
    _blob_dir: Option<tempfile::TempDir>,
}

impl Harness {
    pub fn new() -> Harness {
        Self::with_secrets(&[])
    }

    /// An in-memory harness with these settings (a short lock lease, say; start from
    /// [`local_settings`] to reach the test servers on loopback).
    pub fn with_settings(settings: Settings) -> Harness {
        Self::in_memory(settings, &[])
    }

    pub fn with_secrets(secrets: &[(&str, &str)]) -> Harness {
        Self::in_memory(local_settings(), secrets)
    }

    fn in_memory(settings: Settings, secrets: &[(&str, &str)]) -> Harness {
        let blob_dir = tempfile::tempdir().unwrap();
        let secrets = secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let runtime = LocalRuntime::build(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            Arc::new(FsBlobs::new(blob_dir.path())),
            Arc::new(MapSecrets(secrets)),
            Arc::new(SystemClock),
            settings,
        );
        Harness {
            runtime,
            _blob_dir: Some(blob_dir),
        }
    }

    /// A runtime over the database file in `data_dir`, as `sluice run` opens it. Two harnesses
    /// on one directory are two processes sharing a store and its queue database (each with
    /// its own queue runner and caches).
    pub fn on_disk(data_dir: &Path) -> Harness {
        Harness {
            runtime: LocalRuntime::open(data_dir, local_settings()).unwrap(),
            _blob_dir: None,
        }
    }

    pub fn sluice(&self) -> Arc<Sluice> {
        self.runtime.sluice()
    }

    /// Validates the bundle and stores its definitions.
    pub async fn load(&self, bundle: Value) {
        let bundle: Bundle = serde_json::from_value(bundle).expect("bundle parses");
        bundle.validate().expect("bundle is valid");
        self.sluice().store_bundle(&bundle).await.unwrap();
    }

    /// Runs `flow` with `records` (a webhook export) and waits for the job.
    pub async fn run(&self, flow: &str, records: Vec<Value>) -> Job {
        let request = RunRequest {
            records: Some(records),
            ..Default::default()
        };
        self.run_with(flow, request).await
    }

    pub async fn run_with(&self, flow: &str, request: RunRequest) -> Job {
        let started = start_run(&self.sluice(), flow, request, RunKind::Manual)
            .await
            .expect("run starts")
            .expect("not queued");
        self.wait(&started.job_id).await
    }

    /// Waits for the job, then for the runtime to go idle (late counters and after-run work
    /// included), and returns the job as stored then.
    pub async fn wait(&self, job_id: &str) -> Job {
        self.runtime
            .wait_for_job(job_id, Duration::from_secs(60), |_| {})
            .await
            .expect("job finishes");
        self.runtime
            .wait_idle(Duration::from_secs(30))
            .await
            .expect("runtime goes idle");
        self.sluice()
            .store
            .get_job(job_id)
            .await
            .unwrap()
            .expect("the job is stored")
    }

    pub async fn errors(&self, job_id: &str) -> Vec<JobError> {
        self.sluice().store.list_errors(job_id).await.unwrap()
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Job `job_id` of flow `f`, running, its one page cut: as the trigger leaves a job whose
/// page a test then hands to a stage itself.
pub async fn open_job(sluice: &Sluice, job_id: &str) {
    let mut job = Job::new(
        job_id.into(),
        "f".into(),
        RunKind::Manual,
        chrono::Utc::now(),
    );
    job.paging_done = true;
    job.num_pages = 1;
    sluice.store.create_job(&job).await.unwrap();
}

/// The first page (`g0-p000000`) of `job_id` at processor 0, holding `records`.
pub fn first_page(job_id: &str, records: Vec<PageRecord>) -> Page {
    Page {
        job_id: job_id.into(),
        flow_id: "f".into(),
        page_id: "g0-p000000".into(),
        page_index: 0,
        processor_index: 0,
        records,
        batches: Vec::new(),
        file: None,
        records_ref: None,
        trace_id: String::new(),
    }
}

/// The counting invariant: every record ends as a success, an error or an ignore.
pub fn assert_counts(job: &Job, records_in: u64) {
    assert_eq!(
        job.num_success + job.num_error + job.num_ignore,
        records_in,
        "records in = success + error + ignore, job: {job:?}"
    );
}

/// An http connection to `base`, an http import POSTing to `/orders`, a webhook export, and a
/// flow `f` linking them. `import` fields are merged over the import's defaults.
pub fn http_bundle(base: &str, import: Value, connection: Value) -> Value {
    let mut imp = json!({"_id": "imp", "name": "imp", "_connectionId": "conn", "type": "http", "http": {"method": "POST", "relativeURI": "/orders", "body": "{\"name\": {{json record.name}}, \"qty\": {{json record.qty}}}"}});
    merge(&mut imp, import);
    let mut conn = json!({"_id": "conn", "name": "conn", "type": "http", "http": {"baseURI": base, "retry": {"maxAttempts": 3, "baseDelayMs": 10, "maxDelayMs": 2000}}});
    merge(&mut conn, connection);
    json!({
        "connections": [conn],
        "exports": [{"_id": "exp", "name": "exp", "type": "webhook", "pageSize": 10}],
        "imports": [imp],
        "flows": [{"_id": "f", "name": "orders", "pageGenerators": [{"_exportId": "exp"}], "pageProcessors": [{"type": "import", "_importId": "imp"}]}]
    })
}

/// Deep-merges `patch` into `target` (objects merge, everything else replaces).
pub fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

/// The schedule's tick as if flow `flow_id` had come due at the start of the current minute
/// (a time an every-minute schedule fires): the runs it started.
pub async fn tick_due_this_minute(sluice: &Sluice, flow_id: &str) -> Vec<sluice_model::RunStarted> {
    use chrono::{DurationRound, TimeDelta, Utc};
    let minute = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    sluice
        .store
        .set_next_run(flow_id, Some(minute))
        .await
        .unwrap();
    sluice_core::stages::trigger::schedule::tick(sluice)
        .await
        .unwrap()
}

/// `n` order records.
pub fn orders(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"name": format!("order {i}"), "qty": i}))
        .collect()
}
