//! What travels between stages: a page of records and the state each stage adds to it.

use crate::FailureCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Up to `pageSize` records of one job at one page processor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub job_id: String,
    pub flow_id: String,
    /// Unique within the job and stable across redeliveries, e.g. `g0-p000003`.
    pub page_id: String,
    /// Position of the page in the job (0-based), for file names and ordering.
    pub page_index: u64,
    pub processor_index: usize,
    pub records: Vec<PageRecord>,
    /// One request for the whole page (`requestMode: page`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Exchange>,
    /// The rendered file of a file import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<RenderedFile>,
    /// When the page was too large for a queue message: where its records are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_ref: Option<String>,
    /// Trace id carried through every stage's logs.
    #[serde(default)]
    pub trace_id: String,
}

impl Page {
    /// The page that carries `records` on from this one to step `processor_index` (under
    /// `page_id`: the same, or a branch's), with nothing of this step's exchanges.
    pub fn onward(
        &self,
        processor_index: usize,
        page_id: String,
        records: Vec<PageRecord>,
    ) -> Page {
        Page {
            job_id: self.job_id.clone(),
            flow_id: self.flow_id.clone(),
            page_id,
            page_index: self.page_index,
            processor_index,
            records,
            batch: None,
            file: None,
            records_ref: None,
            trace_id: self.trace_id.clone(),
        }
    }

    /// Names one send of this page at its processor: `{job}:{page}:{processor}:{record}`
    /// (`batch` for the page's one request). The same on every retry and redelivery: the
    /// delivery ledger's key and the `Idempotency-Key` header are both built from it.
    pub fn send_id(&self, record_key: Option<&str>) -> String {
        format!(
            "{}:{}:{}:{}",
            self.job_id,
            self.page_id,
            self.processor_index,
            record_key.unwrap_or("batch")
        )
    }
}

/// One record and what the stages learned about it at the current processor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageRecord {
    /// Unique within the job and stable across processors, e.g. `g0-p000003-r0007`.
    pub key: String,
    pub data: Value,
    #[serde(default)]
    pub state: RecordState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<Exchange>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extracted: Map<String, Value>,
    /// The record as the flow carries it, kept while this processor's import hooks
    /// (`preMap`, `postMap`) changed `data` into what the import sends. It is what goes on
    /// to the next processor and what an error keeps for a retry (see [`Self::flow_data`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Value>,
    /// How the record's job counts it when it ends.
    #[serde(default, skip_serializing_if = "Counting::is_as_it_ends")]
    pub counting: Counting,
}

/// How a record is counted in its job when it ends. Whatever path it takes, each record read
/// is counted exactly once: numSuccess + numError + numIgnore = records in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Counting {
    /// As it ends: a success, an error or an ignore.
    #[default]
    AsItEnds,
    /// As an error wherever it ends: it failed at a step with `proceedOnFailure` and went
    /// on (its error is stored).
    AsError,
    /// Not at all: a copy going down a further branch of an `all_matching_branches` router.
    /// The record is counted by its copy on the first branch it took; this copy's errors
    /// are stored and retryable like any.
    NotCounted,
}

impl Counting {
    fn is_as_it_ends(&self) -> bool {
        *self == Counting::AsItEnds
    }

    /// After the record failed at a step that lets it go on.
    pub fn after_failure(self) -> Counting {
        match self {
            Counting::NotCounted => Counting::NotCounted,
            _ => Counting::AsError,
        }
    }
}

impl PageRecord {
    pub fn new(key: String, data: Value) -> Self {
        Self {
            key,
            data,
            state: RecordState::Active,
            exchange: None,
            extracted: Map::new(),
            original: None,
            counting: Counting::AsItEnds,
        }
    }
    /// The record as the flow carries it past this processor: what came in (with the
    /// responseMapping's values), not what this import's hooks made of it to send.
    pub fn flow_data(&self) -> &Value {
        self.original.as_ref().unwrap_or(&self.data)
    }
    /// Replaces what this processor works on, keeping the record as it came in.
    pub fn set_data(&mut self, data: Value) {
        if self.original.is_none() {
            self.original = Some(std::mem::replace(&mut self.data, data));
        } else {
            self.data = data;
        }
    }
    pub fn is_active(&self) -> bool {
        matches!(self.state, RecordState::Active)
    }
    pub fn fail(&mut self, code: FailureCode, message: impl Into<String>) {
        self.state = RecordState::Failed {
            code,
            message: message.into(),
        };
    }
}

/// Where a record stands at the current processor. Active records go on; ignored and failed
/// ones are counted by evaluate and go no further.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum RecordState {
    #[default]
    Active,
    Ignored {
        reason: String,
    },
    Failed {
        code: FailureCode,
        message: String,
    },
}

/// A request as rendered by translate and, once deliver ran, the reply to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exchange {
    pub request: RenderedRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenderedRequest {
    pub method: String,
    /// Full URL: the connection's baseURI joined with the rendered relativeURI.
    pub url: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl RenderedRequest {
    /// The request as stored with an error or shown in a preview: the values of credential
    /// headers (`Authorization`, `X-Api-Key`, ...) masked.
    pub fn masked(&self) -> RenderedRequest {
        let mut r = self.clone();
        for (name, value) in r.headers.iter_mut() {
            if crate::is_secret_header(name) {
                *value = crate::MASK.into();
            }
        }
        r
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub status: u16,
    /// Lower-cased header names.
    #[serde(default)]
    pub headers: Map<String, Value>,
    /// Parsed JSON when the body is JSON, else the text. For a bounded reply (see
    /// [`BoundedBody`]) only the parts of it the import's evaluator reads.
    #[serde(default)]
    pub body: Value,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub elapsed_ms: u64,
    /// Set when the body was larger than the deployment's cap (`SLUICE_REPLY_EXCERPT_BYTES`):
    /// what is kept of it instead of the whole, so no page, ledger entry or stored error grows
    /// with the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded: Option<BoundedBody>,
}

/// What is kept of a reply body larger than the cap: its size, an excerpt, and what extract
/// and evaluate need, taken from the whole body when it arrived. With these a big reply is
/// judged exactly as it would be whole: its size never changes a record's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BoundedBody {
    /// The whole body's size, in bytes.
    pub bytes: u64,
    /// The body's first bytes (up to the cap) as text.
    pub excerpt: String,
    /// Each `responseMapping` extract of the import, run over the whole reply: the extract as
    /// written, and its first match (null for none).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub selected: Map<String, Value>,
    /// Where the whole body is kept (`bucket/key` in the blob store), when the deployment
    /// keeps them (`SLUICE_KEEP_FULL_REPLIES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<String>,
}

impl Reply {
    /// The document JSONPath mappings and CEL conditions see as `response`.
    pub fn as_document(&self) -> Value {
        serde_json::json!({"status": self.status, "headers": self.headers, "body": self.body})
    }

    /// The body as text, cut to `max` characters (an excerpt's own cut for a bounded reply),
    /// and whether anything was left out.
    pub fn body_text(&self, max: usize) -> (String, bool) {
        let (text, cut) = match (&self.bounded, &self.body) {
            (Some(b), _) => (b.excerpt.clone(), true),
            (None, Value::String(s)) => (s.clone(), false),
            (None, Value::Null) => (String::new(), false),
            (None, other) => (other.to_string(), false),
        };
        let cut = cut || text.chars().count() > max;
        (text.chars().take(max).collect(), cut)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenderedFile {
    pub directory: String,
    pub name: String,
    pub content: String,
    /// Keys of the records written into the file.
    pub record_keys: Vec<String>,
}

/// The order the trigger stage carries out: read the records of one export for one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOrder {
    pub job_id: String,
    pub flow_id: String,
    /// Index into the flow's pageGenerators; None: every generator (or those the run named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_index: Option<usize>,
    /// Generators the run was limited to (`_exportIds`), when generator_index is None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_ids: Option<Vec<String>>,
    pub source: RunSource,
    /// Set on the continuation a trigger sends itself when its invocation runs short of time
    /// in a long export: where reading picks up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

/// Where a continued run order picks up reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resume {
    /// The page generator being read (generators before it are done).
    pub generator_index: usize,
    /// Pages cut so far: the next page's index.
    pub pages_cut: u64,
    /// Records read but fewer than a page, so pages cut later hold the same records as an
    /// uninterrupted read would (their ids stay stable under redelivery).
    #[serde(default)]
    pub carried: Vec<SourceRecord>,
    /// Where reading stands: an http export's paging position, or `{"afterKey": ...}`, the
    /// last object read whole under an s3 prefix (null for one object or file).
    pub cursor: Value,
    /// Records of the unit the cursor points at (the reply it fetches, the next object, the
    /// one object or file) already cut into pages: reading skips them. A continuation that
    /// ran short of time points past what it read (and carries the rest), so it skips none;
    /// a checkpoint taken after a page points at the unit that page ended in.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip: u64,
    /// The generator's preSavePage hook asked to abort: nothing more of it is read, however
    /// the reading is picked up again (integrator.io: abort stops generating new pages).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aborted: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What the trigger read from a source, before it is cut into a page: a record, or a part
/// of the input that could not be read as one (a bad line), which becomes an error record
/// so that it is counted like the others and the rest of the input is still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "read", rename_all = "camelCase")]
pub enum SourceRecord {
    Record {
        data: Value,
    },
    Unreadable {
        /// What the input held there, cut to a bounded excerpt.
        text: String,
        /// Which file, where in it, and why: "orders.ndjson line 500: invalid JSON: ...".
        message: String,
    },
}

impl SourceRecord {
    /// The page record it becomes under `key`.
    pub fn into_page_record(self, key: String) -> PageRecord {
        match self {
            SourceRecord::Record { data } => PageRecord::new(key, data),
            SourceRecord::Unreadable { text, message } => {
                let mut r = PageRecord::new(key, Value::String(text));
                r.fail(FailureCode::Unreadable, message);
                r
            }
        }
    }
}

/// Where the records of a run come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RunSource {
    /// Read the export itself (http paging, a whole s3 prefix).
    Export,
    /// One object that landed in S3.
    S3Object { bucket: String, key: String },
    /// A file given to the run (`sluice run --records`), copied into the blob store: read
    /// like an S3 object, in `format` when given (else the one its name says), and named in
    /// errors as the user gave it (`name`), not by its copy.
    File {
        bucket: String,
        key: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<crate::FileType>,
    },
    /// Records given inline: webhook posts, DynamoDB stream images.
    Records { records: Vec<Value> },
    /// Records given inline that were too large to keep in the store while their run waited
    /// for its flow: NDJSON, one record a line, in Sluice's system bucket.
    StoredRecords { bucket: String, key: String },
    /// Failed records of an earlier job, each re-entering at the processor where it failed.
    Retry { items: Vec<RetryItem> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryItem {
    pub processor_index: usize,
    pub record: Value,
    /// The record failed in the trigger's shaping (the export's transform or output
    /// filter), so it is shaped again before processor 0 sees it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reshape: bool,
}

/// A message on one of the stage queues. (Pages dominate the traffic, so the size difference
/// between the variants costs nothing worth a Box.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "camelCase")]
pub enum StageMessage {
    Run(RunOrder),
    Page(Page),
    /// A job that has closed, as it was when it closed: the deliver stage posts it to the
    /// flow's `afterProcess` callbacks. Whichever stage closes a job queues this rather than
    /// posting itself, so only the functions that send requests link an HTTP client. (A
    /// struct variant: the job's own `message` field must not meet the tag.)
    AfterProcess {
        job: crate::Job,
    },
    /// A job that completed, as it was when it closed, that read files of ftp exports: the
    /// trigger stage (which links the SFTP and FTP clients) deletes those files or moves
    /// them to the export's backup directory. Queued by whichever stage closes the job.
    FilesRead {
        job: crate::Job,
    },
}

impl StageMessage {
    /// Is this work left after its job closed (kept and resumed while the job is closed,
    /// where a page or a run order of a closed job is stale)?
    pub fn after_close(&self) -> bool {
        matches!(
            self,
            StageMessage::AfterProcess { .. } | StageMessage::FilesRead { .. }
        )
    }
}

#[cfg(test)]
mod message_tests {
    use super::StageMessage;
    use crate::{Job, RunKind};

    #[test]
    fn a_closed_job_with_a_message_round_trips_as_a_queue_message() {
        let mut job = Job::new(
            "j1".into(),
            "f1".into(),
            RunKind::Manual,
            chrono::Utc::now(),
        );
        job.message = Some("canceled: did not finish within 2s".into());
        let body = serde_json::to_string(&StageMessage::AfterProcess { job }).unwrap();
        let StageMessage::AfterProcess { job } = serde_json::from_str(&body).unwrap() else {
            panic!("not a closed job: {body}");
        };
        assert_eq!(
            job.message.as_deref(),
            Some("canceled: did not finish within 2s")
        );
        let again = serde_json::to_string(&StageMessage::AfterProcess { job }).unwrap();
        assert_eq!(again, body);
    }
}
