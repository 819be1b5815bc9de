//! A preview: what each step of a flow would do with sample records, worked out by the
//! stages' own code with nothing sent, stored or counted (`sluice preview`,
//! `POST /flows/{id}/preview`).

use crate::{RenderedFile, RenderedRequest, Reply};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// What to preview: sample records, and what the target would answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"records": [{"id": 1, "total": "12.50"}], "limit": 10,
    "reply": {"status": 201, "body": {"id": "ord-1"}}}))]
pub struct PreviewRequest {
    /// The sample records, as the flow's export would hand them on.
    #[serde(default)]
    pub records: Vec<Value>,
    /// At most this many of them (default 10, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The reply each request is judged on, for imports without a `sampleResponse` of their
    /// own and for lookups. Without either, a step's records stop at their request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<SampleReply>,
}

impl PreviewRequest {
    /// Records previewed by default, and at most.
    pub const DEFAULT_LIMIT: usize = 10;
    pub const MAX_LIMIT: usize = 100;

    pub fn limit(&self) -> usize {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .clamp(1, Self::MAX_LIMIT)
    }
}

/// A reply as a sample: what a target would answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"status": 201, "headers": {"content-type": "application/json"},
    "body": {"id": "ord-1"}}))]
pub struct SampleReply {
    /// The status code (default 200).
    #[serde(default = "ok")]
    pub status: u16,
    /// Lower-case header names and their values.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String, Value>,
    /// The body: JSON, or a string.
    #[serde(default)]
    pub body: Value,
}

fn ok() -> u16 {
    200
}

impl SampleReply {
    pub fn to_reply(&self) -> Reply {
        Reply {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
            attempts: 0,
            elapsed_ms: 0,
            bounded: None,
        }
    }
}

/// What each step would do with each sample record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"_flowId": "orders-to-erp",
    "hooks": "preSavePage, preMap and postMap run, ...",
    "records": [{"key": "preview-r00000", "input": {"id": 1, "total": "12.50"}, "steps": [
        {"step": "export", "name": "New orders", "record": {"id": 1, "total": "12.50"},
         "outcome": {"outcome": "goesOn"}},
        {"step": "pageProcessors[0]", "processorIndex": 0, "name": "Create each order",
         "record": {"id": 1, "total": "12.50"}, "mapped": {"ref": "1", "amount": 12.5},
         "request": {"method": "POST", "url": "https://erp.example.com/api/orders",
                     "headers": [["Authorization", "********"], ["content-type", "application/json"]],
                     "body": "{\"ref\":\"1\",\"amount\":12.5}"},
         "reply": {"status": 201, "headers": {}, "body": {"id": "ord-1"}, "attempts": 0, "elapsedMs": 0},
         "extracted": {"orderId": "ord-1"}, "outcome": {"outcome": "succeeds"}}]}]}))]
pub struct Preview {
    #[serde(rename = "_flowId")]
    pub flow_id: String,
    /// Which hooks ran, and why the others did not.
    pub hooks: String,
    /// One per sample record, and one per copy of a record on a further branch of an
    /// `all_matching_branches` router (its key says which).
    pub records: Vec<RecordPreview>,
}

/// One sample record's way through the flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordPreview {
    /// `preview-r00000` for the first sample; a copy adds `.r<router>b<branch>`.
    pub key: String,
    /// The sample as given.
    pub input: Value,
    pub steps: Vec<StepPreview>,
}

/// What one step would do with the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepPreview {
    /// Where the step is written: `export`, `pageProcessors[0]`, `routers[0]`,
    /// `routers[0].branches[1].pageProcessors[0]`.
    pub step: String,
    /// Its number in errors and retries (none for the export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor_index: Option<usize>,
    /// The export's, import's, lookup's or router's name.
    pub name: String,
    /// The record as the step has it: for the export, after its transform, filter and
    /// preSavePage; for a page processor, as it arrived (after an import's preMap: what
    /// the mapping reads).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub record: Value,
    /// What the import's mapping (and postMap) made of it: what the body renders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapped: Option<Value>,
    /// The request that would be sent, credentials masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RenderedRequest>,
    /// The file that would be written (sftp and s3 imports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<RenderedFile>,
    /// The sample reply it was judged on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
    /// What the responseMapping took from the reply.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extracted: Map<String, Value>,
    /// The branches a router sends the record down (`Europe`; `router 2: Everyone else`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    pub outcome: PreviewOutcome,
}

/// How the record leaves a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum PreviewOutcome {
    /// On to the next step.
    GoesOn,
    /// The flow ends here for it: a success.
    Succeeds,
    /// Filtered out or taken by no branch: counted as ignored.
    Ignored { reason: String },
    /// An error, as it would be stored. `proceeds`: the step has `proceedOnFailure`, so the
    /// record goes on all the same.
    Fails {
        code: crate::FailureCode,
        message: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        proceeds: bool,
    },
    /// The request would be sent, but without a sample reply what extract and evaluate
    /// conclude is not known: the preview stops here.
    AwaitsReply,
}
