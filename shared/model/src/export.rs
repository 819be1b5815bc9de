use crate::{validate, Filter, NameValue, Transform, ValidationErrors};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where records come from (a page generator), or, used as a page processor, a lookup:
/// a request whose reply enriches each record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"_id": "new-orders", "name": "Orders changed since the last run",
    "_connectionId": "orders-api", "type": "http",
    "http": {"relativeURI": "/orders?updated_since={{lastExportDateTime}}",
             "resourcePath": "data.orders", "paging": {"method": "page"}},
    "pageSize": 200}))]
pub struct Export {
    /// The id; generated on create when absent. Letters, digits, `_`, `-`, `.`; at most 128.
    #[serde(rename = "_id", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Shown in lists and messages; required.
    // serde default: a missing name gets validate()'s message naming the field.
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    /// The connection it reads over (required for http; s3 may name the bucket instead).
    #[serde(
        rename = "_connectionId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub connection_id: Option<String>,
    /// Where the records come from; the settings sit under the field of the same name.
    #[serde(rename = "type")]
    pub kind: ExportType,
    /// Settings of an `http` export (required when `type` is http), also of a lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpExport>,
    /// Settings of an `s3` export: run when an object lands under the prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Export>,
    /// Settings of an `ftp` export: the files of a directory on an SFTP, FTP or FTPS
    /// server (its connection says which), read once each (required when `type` is ftp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ftp: Option<FtpExport>,
    /// Settings of a `dynamodb` export (required when `type` is dynamodb).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamodb: Option<DynamoDbExport>,
    /// The public listener of a `webhook` export: `POST /exports/{id}/data` (or
    /// `/exports/{id}/{token}/data` with verify `secret_url`), outside the API keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<crate::WebhookListener>,
    /// Delta settings of an http export: how far its window reaches back and how
    /// `{{lastExportDateTime}}` is written in its requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Delta>,
    /// How a file source is parsed (s3 and ftp exports); by the file's name when absent
    /// (`.csv`, `.ndjson`/`.jsonl`, else json; `.gz` and `.zip` decompressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileFormat>,
    /// Records per page (default 100, at most 10000).
    #[serde(
        default,
        deserialize_with = "crate::parse::count",
        skip_serializing_if = "Option::is_none"
    )]
    pub page_size: Option<usize>,
    /// Transformation rules applied to each record before the output filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<Transform>,
    /// Output filter: records for which it is false are ignored (counted in numIgnore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// The script hook run on each page before it is saved (`preSavePage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<crate::ExportHooks>,
    /// Free-form values handed to this export's scripts as `options.settings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
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

/// integrator.io's `delta` section of an export (`dateField` and `startDate` are not taken:
/// Sluice's window is the watermark, and the request template names the field).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"lagOffset": 300000, "dateFormat": "YYYY-MM-DD HH:mm:ss"}))]
pub struct Delta {
    /// Milliseconds subtracted from the start of the window a delta run reads (its
    /// watermark), so records a source commits late are read by the next run too. At most
    /// 30 days; not applied to a `startDate` given to the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_offset: Option<u64>,
    /// moment.js format tokens (`YYYY-MM-DD HH:mm:ss`, `x` for epoch milliseconds) in which
    /// `{{lastExportDateTime}}` and `{{currentExportDateTime}}` are written in this
    /// export's requests, in UTC; RFC 3339 with milliseconds when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_format: Option<String>,
}

/// The largest `delta.lagOffset`: 30 days in milliseconds.
pub const MAX_LAG_OFFSET_MS: u64 = 30 * 24 * 60 * 60 * 1000;

impl Delta {
    /// The lag as a duration (zero when absent).
    pub fn lag(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.lag_offset.unwrap_or(0).min(MAX_LAG_OFFSET_MS) as i64)
    }

    /// The compiled `dateFormat`, if one is given (validation refused one that fails).
    pub fn format(&self) -> Option<crate::moment::DateFormat> {
        let source = self.date_format.as_deref()?;
        crate::moment::DateFormat::compile(source).ok()
    }

    fn validate_into(&self, e: &mut ValidationErrors, kind: ExportType) {
        if kind != ExportType::Http {
            e.add(
                "delta",
                "only http exports read a delta window (s3, dynamodb and webhook exports get their records from events)",
            );
        }
        if self.lag_offset.is_some_and(|ms| ms > MAX_LAG_OFFSET_MS) {
            e.add(
                "delta.lagOffset",
                format!("must be at most {MAX_LAG_OFFSET_MS} ms (30 days)"),
            );
        }
        if let Some(f) = &self.date_format {
            if let Err(why) = crate::moment::DateFormat::compile(f) {
                e.add(
                    "delta.dateFormat",
                    format!("'{f}' is not a moment.js date format: {why}"),
                );
            }
        }
    }
}

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportType {
    /// A REST API, read on a schedule or by hand, page by page.
    Http,
    /// Objects landing in an S3 bucket (JSON array, NDJSON or CSV).
    S3,
    /// Files in a directory of an SFTP, FTP or FTPS server, read on a schedule or by hand,
    /// each once; deleted or moved after a run that read them completes.
    Ftp,
    /// Changes to a DynamoDB table, from its stream.
    Dynamodb,
    /// Records posted to its listener (`webhook`), to the run endpoint or given to
    /// `sluice run --records`.
    Webhook,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// A request (or a series of paged requests) whose replies hold the records.
pub struct HttpExport {
    /// Handlebars template; sees `lastExportDateTime`, `currentExportDateTime`,
    /// `export.http.paging.{page,skip,token}` and, for lookups, `record`.
    #[serde(rename = "relativeURI")]
    pub relative_uri: String,
    /// Default GET.
    #[serde(default = "default_get")]
    pub method: String,
    /// Headers of this export's requests (values are templates), besides the connection's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NameValue>,
    /// Handlebars template of the request body (a POST search, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Path to the array of records in the reply (`data.items` or `$.data.items`); the whole
    /// reply when absent (an array is the records, an object is one record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_path: Option<String>,
    /// How to ask for the next page (one request when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}
fn default_get() -> String {
    "GET".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PagingMethod {
    /// `{{export.http.paging.page}}` in the URI counts up from `page` (default 1).
    Page,
    /// `{{export.http.paging.skip}}` counts up by the page's record count from `skip` (default 0).
    Skip,
    /// `path` selects a next-page token from the reply; `{{export.http.paging.token}}`.
    Token,
    /// The reply's `Link: <...>; rel="next"` header is the next URL.
    Linkheader,
    /// `path` selects the next page's full URL from the reply.
    Url,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// Paging of an http export.
pub struct Paging {
    pub method: PagingMethod,
    /// The first page number (page paging; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    /// The first offset (skip paging; default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<u64>,
    /// JSONPath to the token or next URL in the reply (token and url paging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// URI template for the pages after the first (token paging), else `relativeURI` again.
    #[serde(
        rename = "relativeURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub relative_uri: Option<String>,
    /// Stop after this many pages (a guard against servers that never stop).
    #[serde(
        default,
        deserialize_with = "crate::parse::count",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_pages: Option<u64>,
    /// A reply with this status ends paging (e.g. 404 past the last page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_page_status_code: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// Which objects of a bucket an s3 export reads.
pub struct S3Export {
    /// The bucket (defaults to the connection's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Only keys under this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Only keys ending so (`.csv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// Which files an ftp export reads and where they go once read, in integrator.io's field
/// names (its FTP export). The names are compared as given, case-sensitively; both
/// filters must match when both are given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"directoryPath": "outbox/orders", "fileNameStartsWith": "ORDER_",
    "fileNameEndsWith": ".csv", "backupDirectoryPath": "outbox/orders/done"}))]
pub struct FtpExport {
    /// The directory read (absolute, or relative to the login directory); files only,
    /// not its subdirectories.
    pub directory_path: String,
    /// Only files whose names start with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name_starts_with: Option<String>,
    /// Only files whose names end with this (`.csv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name_ends_with: Option<String>,
    /// Where each file is moved (same name; a name taken there gets `.<job id>` added)
    /// once a run that read it completes, instead of being deleted. Created if missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_directory_path: Option<String>,
}

/// What becomes of an ftp export's file once a run that read it completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRead {
    /// Removed from the server (the default).
    Delete,
    /// Moved into this directory.
    MoveTo(String),
    /// Left where it is (`file.skipDelete`); the export's memory keeps it from being read
    /// again while its size and modification time stay the same.
    Keep,
}

impl FtpExport {
    /// Does a file of this name belong to the export?
    pub fn wants(&self, name: &str) -> bool {
        self.file_name_starts_with
            .as_deref()
            .is_none_or(|p| name.starts_with(p))
            && self
                .file_name_ends_with
                .as_deref()
                .is_none_or(|s| name.ends_with(s))
    }

    fn validate_into(&self, e: &mut ValidationErrors) {
        validate::required(e, "ftp.directoryPath", &self.directory_path);
        for (field, v) in [
            ("ftp.directoryPath", Some(&self.directory_path)),
            (
                "ftp.fileNameStartsWith",
                self.file_name_starts_with.as_ref(),
            ),
            ("ftp.fileNameEndsWith", self.file_name_ends_with.as_ref()),
            (
                "ftp.backupDirectoryPath",
                self.backup_directory_path.as_ref(),
            ),
        ] {
            if v.is_some_and(|v| v.contains("{{")) {
                e.add(
                    field,
                    "is compared as written: templates are not rendered here (give the text itself)",
                );
            }
        }
        for (field, v) in [
            ("ftp.fileNameStartsWith", &self.file_name_starts_with),
            ("ftp.fileNameEndsWith", &self.file_name_ends_with),
        ] {
            if v.as_deref().is_some_and(|v| v.contains('/')) {
                e.add(field, "is part of a file name and holds no `/`");
            }
        }
        if let Some(b) = &self.backup_directory_path {
            validate::required(e, "ftp.backupDirectoryPath", b);
            if b.trim_end_matches('/') == self.directory_path.trim_end_matches('/') {
                e.add(
                    "ftp.backupDirectoryPath",
                    "is the directory read: files moved there would be read again",
                );
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// The DynamoDB table whose stream feeds the flow.
pub struct DynamoDbExport {
    /// The table (its stream must be on and wired to the trigger function).
    pub table_name: String,
    /// Which stream events produce records (default INSERT and MODIFY).
    #[serde(default = "default_event_types")]
    pub event_types: Vec<String>,
}
fn default_event_types() -> Vec<String> {
    vec!["INSERT".into(), "MODIFY".into()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// A JSON array of records (or one object).
    #[default]
    Json,
    /// One JSON record per line.
    Ndjson,
    /// Comma (or other) separated values, with a header row by default.
    Csv,
    /// Imports only: the file is `file.template` rendered over the page's records (XML,
    /// fixed-width, any text).
    Template,
}

impl FileType {
    /// Can records be read from a file of this type (exports, `sluice run --records`)?
    pub fn is_readable(self) -> bool {
        self != FileType::Template
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// How a file is parsed (exports) or written (imports).
pub struct FileFormat {
    #[serde(rename = "type")]
    pub kind: FileType,
    /// CSV settings (type csv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvOptions>,
    /// The file's content as a template (type template; imports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<FileTemplate>,
    /// Exports only: how the files are compressed; decompressed as they are read. By the
    /// file's name when absent (`.gz` gzip, `.zip` zip, else none). Each file of a zip is
    /// read in turn, in this format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression_format: Option<Compression>,
    /// ftp exports only: leave each file on the server once read (default false: deleted,
    /// or moved to `ftp.backupDirectoryPath`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_delete: bool,
}

/// How a file read is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (`.gz`), members read one after another.
    Gzip,
    /// A zip archive whose entries carry their sizes before their data (as zip tools write
    /// to a file); entries are read in the archive's order, folders skipped.
    Zip,
}

impl FileFormat {
    /// A format of this type with its defaults (no csv settings, no template).
    pub fn of(kind: FileType) -> FileFormat {
        FileFormat {
            kind,
            csv: None,
            template: None,
            compression_format: None,
            skip_delete: false,
        }
    }
}

/// A file import's whole content as a handlebars template, rendered once per page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"escape": "xml",
    "content": "<orders>{{#each records}}<order id=\"{{this.id}}\">{{this.name}}</order>{{/each}}</orders>\n"}))]
pub struct FileTemplate {
    /// Handlebars template of the file; sees `records` (the page's records as the import's
    /// mapping makes them), `job`, `flow`, `page`, `now`, `lastExportDateTime`,
    /// `currentExportDateTime`, and the helpers of every template.
    pub content: String,
    /// How a plain `{{value}}` is written: `none` (as it is; the default) or `xml` (`&`, `<`,
    /// `>`, `"` and `'` as entities, so a value cannot add elements or attributes).
    /// `{{{value}}}` writes raw text on purpose.
    #[serde(default)]
    pub escape: ContentEscape,
}

/// How values are escaped in a file content template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContentEscape {
    /// Values as they are (fixed-width, plain text).
    #[default]
    None,
    /// XML text and attribute escaping.
    Xml,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
/// CSV settings.
pub struct CsvOptions {
    /// One ASCII character (default `,`).
    #[serde(default = "default_delimiter")]
    pub column_delimiter: String,
    /// The first row names the columns (default true).
    #[serde(default = "yes")]
    pub has_header_row: bool,
    /// Columns to write, in order (imports); all fields of the first record when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}
fn default_delimiter() -> String {
    ",".into()
}
fn yes() -> bool {
    true
}
impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            column_delimiter: default_delimiter(),
            has_header_row: true,
            columns: Vec::new(),
        }
    }
}

impl Export {
    pub fn page_size(&self) -> usize {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE)
    }

    /// What becomes of an ftp export's files once read (None for other exports).
    pub fn after_read(&self) -> Option<AfterRead> {
        let ftp = self.ftp.as_ref().filter(|_| self.kind == ExportType::Ftp)?;
        Some(match &ftp.backup_directory_path {
            Some(dir) => AfterRead::MoveTo(dir.clone()),
            None if self.file.as_ref().is_some_and(|f| f.skip_delete) => AfterRead::Keep,
            None => AfterRead::Delete,
        })
    }

    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        validate::identity(&mut e, &self.id, &self.name);
        match self.kind {
            ExportType::Http => {
                if self.connection_id.is_none() {
                    e.add("_connectionId", "is required when type is http");
                }
                match &self.http {
                    None => e.add("http", "is required when type is http"),
                    Some(h) => {
                        validate::template(&mut e, "http.relativeURI", &h.relative_uri);
                        if let Some(b) = &h.body {
                            validate::template(&mut e, "http.body", b);
                        }
                        for (i, hv) in h.headers.iter().enumerate() {
                            validate::template(
                                &mut e,
                                &format!("http.headers[{i}].value"),
                                &hv.value,
                            );
                        }
                        if let Some(p) = &h.resource_path {
                            validate::json_path(&mut e, "http.resourcePath", p);
                        }
                        if let Some(p) = &h.paging {
                            let needs_path =
                                matches!(p.method, PagingMethod::Token | PagingMethod::Url);
                            match (&p.path, needs_path) {
                                (None, true) => e.add(
                                    "http.paging.path",
                                    "is required for token and url paging",
                                ),
                                (Some(path), _) => {
                                    validate::json_path(&mut e, "http.paging.path", path)
                                }
                                _ => {}
                            }
                            if let Some(u) = &p.relative_uri {
                                validate::template(&mut e, "http.paging.relativeURI", u);
                            }
                            if p.max_pages == Some(0) {
                                e.add("http.paging.maxPages", "must be at least 1");
                            }
                        }
                    }
                }
            }
            ExportType::Ftp => {
                if self.connection_id.is_none() {
                    e.add(
                        "_connectionId",
                        "is required when type is ftp (an sftp or ftp connection)",
                    );
                }
                match &self.ftp {
                    None => e.add("ftp", "is required when type is ftp"),
                    Some(f) => {
                        f.validate_into(&mut e);
                        if f.backup_directory_path.is_some()
                            && self.file.as_ref().is_some_and(|f| f.skip_delete)
                        {
                            e.add(
                                "file.skipDelete",
                                "leaves files where they are, and ftp.backupDirectoryPath moves them: give one",
                            );
                        }
                    }
                }
            }
            ExportType::S3 => {
                if self.s3.is_none() && self.connection_id.is_none() {
                    e.add(
                        "s3",
                        "is required when type is s3 (or give a _connectionId to an s3 connection)",
                    );
                }
            }
            ExportType::Dynamodb => match &self.dynamodb {
                None => e.add("dynamodb", "is required when type is dynamodb"),
                Some(d) => {
                    validate::required(&mut e, "dynamodb.tableName", &d.table_name);
                    for (i, t) in d.event_types.iter().enumerate() {
                        if !matches!(t.as_str(), "INSERT" | "MODIFY" | "REMOVE") {
                            e.add(
                                format!("dynamodb.eventTypes[{i}]"),
                                format!("'{t}' is not INSERT, MODIFY or REMOVE"),
                            );
                        }
                    }
                }
            },
            ExportType::Webhook => {
                if let Some(l) = &self.webhook {
                    if let Err(v) = l.verification("webhook") {
                        e.0.extend(v.0);
                    }
                }
            }
        }
        if self.webhook.is_some() && self.kind != ExportType::Webhook {
            e.add("webhook", "is only for exports of type webhook");
        }
        if self.ftp.is_some() && self.kind != ExportType::Ftp {
            e.add("ftp", "is only for exports of type ftp");
        }
        if self.file.as_ref().is_some_and(|f| f.skip_delete) && self.kind != ExportType::Ftp {
            e.add(
                "file.skipDelete",
                "is only for ftp exports (other sources are never deleted)",
            );
        }
        if let Some(n) = self.page_size {
            if n == 0 || n > MAX_PAGE_SIZE {
                e.add("pageSize", format!("must be between 1 and {MAX_PAGE_SIZE}"));
            }
        }
        if let Some(t) = &self.transform {
            t.validate_into(&mut e, "transform");
        }
        if let Some(f) = &self.filter {
            f.validate_into(&mut e, "filter");
        }
        if let Some(d) = &self.delta {
            d.validate_into(&mut e, self.kind);
        }
        if let Some(f) = &self.file {
            file_format(&mut e, "file", f, false);
        }
        if let Some(h) = &self.hooks {
            crate::script::validate_hooks(&mut e, "hooks", h.refs());
        }
        e.into_result()
    }
}

/// Checks a file format; `writing` for an import's (which may be a template), else an
/// export's, which is read.
pub(crate) fn file_format(e: &mut ValidationErrors, field: &str, f: &FileFormat, writing: bool) {
    match (f.kind, &f.template) {
        (FileType::Template, _) if !writing => e.add(
            format!("{field}.type"),
            "template is a format imports write; an export reads json, ndjson or csv",
        ),
        (FileType::Template, None) => e.add(
            format!("{field}.template"),
            "is required when type is template (give template.content)",
        ),
        (FileType::Template, Some(t)) => {
            validate::template(e, &format!("{field}.template.content"), &t.content)
        }
        (_, Some(_)) => e.add(
            format!("{field}.template"),
            "is only used when type is template",
        ),
        (_, None) => {}
    }
    if writing && f.compression_format.is_some() {
        e.add(
            format!("{field}.compressionFormat"),
            "is how files read are compressed; imports write them uncompressed",
        );
    }
    if writing && f.skip_delete {
        e.add(
            format!("{field}.skipDelete"),
            "is for ftp exports, whose files are deleted once read",
        );
    }
    if let Some(c) = &f.csv {
        if c.column_delimiter.len() != 1 {
            e.add(
                format!("{field}.csv.columnDelimiter"),
                "must be a single ASCII character",
            );
        }
    }
}
