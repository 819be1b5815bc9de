use crate::export::file_format;
use crate::{validate, FileFormat, Filter, Mapping, NameValue, ValidationErrors};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where records go (a page processor): a REST API, or a file on SFTP or S3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"_id": "post-order", "name": "Create each order", "type": "http",
    "_connectionId": "orders-api",
    "http": {"method": "POST", "relativeURI": "/orders",
             "body": "{\"ref\": {{json record.id}}, \"total\": {{json record.total}}}"},
    "responseMapping": {"fields": [{"extract": "id", "generate": "orderId"}]},
    "evaluator": "response.status == 201"}))]
pub struct Import {
    /// The id; generated on create when absent. Letters, digits, `_`, `-`, `.`; at most 128.
    #[serde(rename = "_id", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Shown in lists and messages; required.
    // serde default: a missing name gets validate()'s message naming the field.
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    /// The connection it writes over.
    #[serde(rename = "_connectionId")]
    pub connection_id: String,
    /// Where records go; the settings sit under the field of the same name.
    #[serde(rename = "type")]
    pub kind: ImportType,
    /// Settings of an `http` import (required when `type` is http).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpImport>,
    /// Settings of an `sftp` import (required when `type` is sftp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sftp: Option<FileImport>,
    /// Settings of an `s3` import (required when `type` is s3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<FileImport>,
    /// Format of the file written (sftp, s3); csv when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileFormat>,
    /// Records for which this is false are not sent and count as ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Records that exist (`http.existingExtract` has a value) are not sent and count as
    /// ignored: create only what is missing. Not with `ignoreMissing`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_existing: bool,
    /// Records that do not exist (`http.existingExtract` has no value) are not sent and count
    /// as ignored: update only what exists. Not with `ignoreExisting`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_missing: bool,
    /// Script hooks: `preMap`, `postMap`, `postSubmit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<crate::ImportHooks>,
    /// Free-form values handed to this import's scripts as `options.settings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// How the record sent is built from the record received (integrator.io's mapping).
    /// The body template, or without one the JSON body, sees the mapped record; the URI
    /// and headers see the record as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<Mapping>,
    /// Templates fail on a field the record does not have (handlebars strict mode), so a
    /// typo is a record error instead of an empty value. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_templates: bool,
    /// Values taken from each reply into the record (a flow's page processor may override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mapping: Option<ResponseMapping>,
    /// CEL condition over `record`, `response` and `extracted` that makes a record a success.
    /// Default: `response.status >= 200 && response.status < 300`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluator: Option<String>,
    /// What the target would answer, for a preview (`sluice preview`,
    /// `POST /flows/{id}/preview`): each previewed request is judged on it. Never used by a
    /// run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_response: Option<Box<crate::preview::SampleReply>>,
    /// The integration this belongs to.
    #[serde(
        rename = "_integrationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub integration_id: Option<String>,
    /// Set by the API on create.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<DateTime<Utc>>,
    /// Set by the API on every change.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_modified: Option<DateTime<Utc>>,
}

pub const DEFAULT_EVALUATOR: &str = "response.status >= 200 && response.status < 300";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImportType {
    /// Requests to a REST API.
    Http,
    /// A file per page on an SFTP server.
    Sftp,
    /// A file per page in an S3 bucket.
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestMode {
    /// One request per record; the body template sees `record`.
    #[default]
    Record,
    /// One request per page; the body template sees `records`.
    Page,
}

impl RequestMode {
    /// The name the record (`record`) or the page's records (`records`) have in templates.
    pub fn context_name(self) -> &'static str {
        match self {
            RequestMode::Record => "record",
            RequestMode::Page => "records",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// The request made per record (or per page).
pub struct HttpImport {
    /// GET, POST (the default), PUT, PATCH or DELETE.
    #[serde(default = "default_post")]
    pub method: String,
    /// Handlebars template joined to the connection's baseURI; `{{urlencode record.id}}`
    /// for values.
    #[serde(rename = "relativeURI")]
    pub relative_uri: String,
    /// Headers of this import's requests (values are templates), besides the connection's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NameValue>,
    /// Handlebars template; `{{json record}}` when absent. Use the `json` helper for values
    /// inside JSON bodies: it writes a quoted, escaped JSON value that cannot break the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// One request per record (the default) or one per page.
    #[serde(default)]
    pub request_mode: RequestMode,
    /// The header that carries each request's idempotency key (default `Idempotency-Key`),
    /// the same on every retry and redelivery of a record, so targets that honour it
    /// (Stripe-style APIs) act on a record once. `null` sends none.
    #[serde(
        default = "default_idempotency_header",
        skip_serializing_if = "is_default_idempotency_header"
    )]
    pub idempotency_key_header: Option<String>,
    /// For POST and PATCH: retry failures after which the target may have acted on the
    /// request (a timeout or a connection dropped after the request went out, a 5xx other
    /// than 503). Default: yes while an idempotency key is sent, no without one. Failures
    /// where it cannot have (no connection, 429, 503) are always retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ambiguous: Option<bool>,
    /// The existence check (integrator.io's `existingExtract`): a path in the record as
    /// received (`erpId`, `customer.id`) whose value means the record exists in the target,
    /// typically written by an earlier lookup step's responseMapping. Missing, null or `""`
    /// means it does not. Picks `update` for records that exist, and drives
    /// `ignoreExisting` / `ignoreMissing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_extract: Option<String>,
    /// The request for records that exist (upsert; integrator.io's UPDATE case of
    /// `requestType`); `method`, `relativeURI` and `body` above are then the create request.
    /// Headers are the import's for both. Needs `existingExtract`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateRequest>,
}
fn default_post() -> String {
    "POST".into()
}

/// The request an upsert sends for a record that exists, in place of the import's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"method": "PUT",
    "relativeURI": "/customers/{{urlencode record.erpId}}"}))]
pub struct UpdateRequest {
    /// Default PUT.
    #[serde(default = "default_put")]
    pub method: String,
    /// Handlebars template joined to the connection's baseURI, over the record as received.
    #[serde(rename = "relativeURI")]
    pub relative_uri: String,
    /// Handlebars template of the body; the import's `body` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}
fn default_put() -> String {
    "PUT".into()
}

/// Which of an upsert's requests a record gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestCase {
    /// The import's own request (the record does not exist, or the import does not upsert).
    Create,
    /// `http.update`: the record exists.
    Update,
}
pub const DEFAULT_IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
fn default_idempotency_header() -> Option<String> {
    Some(DEFAULT_IDEMPOTENCY_HEADER.into())
}
fn is_default_idempotency_header(h: &Option<String>) -> bool {
    h.as_deref() == Some(DEFAULT_IDEMPOTENCY_HEADER)
}

impl HttpImport {
    /// POST and PATCH are not idempotent: sending one twice may act twice.
    pub fn is_idempotent_method(&self) -> bool {
        !matches!(self.method.to_ascii_uppercase().as_str(), "POST" | "PATCH")
    }

    /// Whether a failure after which the target may have acted on the request is retried.
    pub fn retries_ambiguous(&self) -> bool {
        self.is_idempotent_method()
            || self
                .retry_ambiguous
                .unwrap_or(self.idempotency_key_header.is_some())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OverwritePolicy {
    /// Replace a file of the same name.
    #[default]
    Overwrite,
    /// Leave an existing file alone; the page's records count as ignored.
    Skip,
    /// An existing file makes the page's records errors.
    Fail,
}

/// A file written per page: directory and file name are templates over `job`, `flow`,
/// `page`, `now` and `record` (the page's first record, as received).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileImport {
    /// Directory (sftp) or key prefix (s3).
    #[serde(default)]
    pub directory_path: String,
    /// Handlebars template of the file name; `{{page.index}}` keeps the pages' files apart
    /// (unique in a run and its retries: a retry numbers on); `{{job._id}}` keeps runs apart;
    /// `{{record.customerId}}` names it by a field of the page's first record.
    pub file_name: String,
    #[serde(default)]
    /// What to do when the file exists (default overwrite).
    pub overwrite: OverwritePolicy,
    /// For s3: the bucket, defaulting to the connection's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
}

fn method(e: &mut ValidationErrors, field: &str, method: &str) {
    if !matches!(
        method.to_ascii_uppercase().as_str(),
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
    ) {
        e.add(
            field,
            format!("'{method}' is not GET, POST, PUT, PATCH or DELETE"),
        );
    }
}

/// integrator.io's responseMapping: `extract` is a JSONPath over
/// `{status, headers, body}` (a bare `id` means the body's `id`), `generate` is the record
/// field it is written to (dotted for nesting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseMapping {
    /// Each: a value taken from the reply into the record.
    #[serde(default)]
    pub fields: Vec<MappingField>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// One value taken from a reply.
pub struct MappingField {
    /// JSONPath into `{status, headers, body}`; a bare `id` is the body's `id`.
    pub extract: String,
    /// The record field written (dotted for nesting: `erp.id`).
    pub generate: String,
}

impl ResponseMapping {
    pub fn validate_into(&self, e: &mut ValidationErrors, field: &str) {
        for (i, f) in self.fields.iter().enumerate() {
            validate::json_path(
                e,
                &format!("{field}.fields[{i}].extract"),
                &extract_path(&f.extract),
            );
            validate::required(e, &format!("{field}.fields[{i}].generate"), &f.generate);
        }
    }
}

/// Where a mapping's `extract` points in the reply document `{status, headers, body}`:
/// `$...` paths are taken as written; `status`, `headers...` and `body...` name those parts;
/// anything else is a path inside the body (`id` is `$.body.id`), as integrator.io users write.
pub fn extract_path(extract: &str) -> String {
    let p = extract.trim();
    if p.starts_with('$') {
        return p.to_string();
    }
    let head = p.split(['.', '[']).next().unwrap_or("");
    match head {
        "status" | "headers" | "body" => validate::normalize_json_path(p),
        _ if p.starts_with('[') => format!("$.body{p}"),
        _ => format!("$.body.{p}"),
    }
}

impl Import {
    pub fn evaluator(&self) -> &str {
        self.evaluator.as_deref().unwrap_or(DEFAULT_EVALUATOR)
    }

    /// The existence check and what hangs on it: `ignoreExisting` / `ignoreMissing` and
    /// `http.update` each need `http.existingExtract`, the two ignores exclude each other,
    /// and an update request is never sent when existing records are skipped.
    fn validate_existence(&self, e: &mut ValidationErrors, h: &HttpImport) {
        if self.ignore_existing && self.ignore_missing {
            e.add(
                "ignoreMissing",
                "cannot be true with ignoreExisting: every record would be skipped",
            );
        }
        match &h.existing_extract {
            Some(path) => {
                if let Err(why) = crate::paths::RecordPath::compile(path) {
                    e.add("http.existingExtract", why);
                }
            }
            None => {
                let needs = "needs http.existingExtract: the record field whose value means \
                             the record exists";
                for (set, field) in [
                    (self.ignore_existing, "ignoreExisting"),
                    (self.ignore_missing, "ignoreMissing"),
                    (h.update.is_some(), "http.update"),
                ] {
                    if set {
                        e.add(field, needs);
                    }
                }
            }
        }
        if let Some(u) = &h.update {
            if self.ignore_existing {
                e.add(
                    "http.update",
                    "is never sent: ignoreExisting skips every record that exists",
                );
            }
            if h.request_mode == RequestMode::Page {
                e.add(
                    "http.update",
                    "is sent per record: with requestMode page every record of a request \
                     gets the import's own request",
                );
            }
            method(e, "http.update.method", &u.method);
            validate::template(e, "http.update.relativeURI", &u.relative_uri);
            if let Some(b) = &u.body {
                validate::template(e, "http.update.body", b);
            }
        }
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        validate::identity(&mut e, &self.id, &self.name);
        validate::required(&mut e, "_connectionId", &self.connection_id);
        match self.kind {
            crate::ImportType::Http => match &self.http {
                None => e.add("http", "is required when type is http"),
                Some(h) => {
                    validate::template(&mut e, "http.relativeURI", &h.relative_uri);
                    if let Some(b) = &h.body {
                        validate::template(&mut e, "http.body", b);
                    }
                    for (i, hv) in h.headers.iter().enumerate() {
                        validate::template(&mut e, &format!("http.headers[{i}].value"), &hv.value);
                    }
                    if let Some(name) = &h.idempotency_key_header {
                        validate::header_name(&mut e, "http.idempotencyKeyHeader", name);
                    }
                    method(&mut e, "http.method", &h.method);
                    self.validate_existence(&mut e, h);
                }
            },
            ImportType::Sftp | ImportType::S3 => {
                let (name, f) = if self.kind == ImportType::Sftp {
                    ("sftp", &self.sftp)
                } else {
                    ("s3", &self.s3)
                };
                match f {
                    None => e.add(name, format!("is required when type is {name}")),
                    Some(f) => {
                        validate::template(
                            &mut e,
                            &format!("{name}.directoryPath"),
                            &f.directory_path,
                        );
                        validate::required(&mut e, &format!("{name}.fileName"), &f.file_name);
                        validate::template(&mut e, &format!("{name}.fileName"), &f.file_name);
                    }
                }
            }
        }
        if let Some(f) = &self.filter {
            f.validate_into(&mut e, "filter");
        }
        if self.kind != ImportType::Http {
            for (set, field) in [
                (self.ignore_existing, "ignoreExisting"),
                (self.ignore_missing, "ignoreMissing"),
            ] {
                if set {
                    e.add(field, "applies to http imports only");
                }
            }
        }
        if let Some(m) = &self.mapping {
            m.validate_into(&mut e, "mapping");
        }
        if let Some(f) = &self.file {
            file_format(&mut e, "file", f, true);
        }
        if let Some(m) = &self.response_mapping {
            m.validate_into(&mut e, "responseMapping");
        }
        if let Some(ev) = &self.evaluator {
            validate::condition(&mut e, "evaluator", ev);
        }
        if let Some(h) = &self.hooks {
            crate::script::validate_hooks(&mut e, "hooks", h.refs());
        }
        e.into_result()
    }
}
