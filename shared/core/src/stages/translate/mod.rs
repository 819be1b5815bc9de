//! translate: the import's filter, then each record (or the page) rendered through the
//! import's handlebars templates: URI, headers, body, file name, file content.
//! (The export's output filter is applied by trigger, where the export is known.)

mod existence;
mod files;
mod templates;
#[cfg(test)]
mod tests;

pub use files::{render_content, render_file};
pub use templates::{body_escape, uri_component, Escape, TemplateCache};

use super::base_uri::BaseUri;
use super::processor::{Processor, Target};
use crate::{Result, Sluice, Stage};
use existence::Existence;
use serde_json::{json, Value};
use sluice_model::{
    Connection, Exchange, Failure, FailureCode, Job, NameValue, Page, RenderedFile,
    RenderedRequest, RequestCase, RequestMode, StageMessage,
};

/// The translate stage's entry point (what its Lambda function runs).
pub const HANDLER: super::StageHandler =
    super::StageHandler::pages(Stage::Translate, |sluice, page| {
        Box::pin(handle(sluice, page))
    });

pub async fn handle(sluice: &Sluice, mut page: Page) -> Result<()> {
    let flow = sluice.flow(&page.flow_id).await?;
    if !matches!(
        flow.steps().position(page.processor_index),
        sluice_model::Position::Step(_)
    ) {
        // At a router (or a flow without page processors): nothing to render; evaluate
        // routes or counts the records.
        return send(sluice, Stage::Evaluate, page).await;
    }
    let p = Processor::of(sluice, flow, page.processor_index).await?;
    let job = sluice.store.get_job(&page.job_id).await?;
    let next = translate(sluice, &mut page, &p, job.as_ref(), Keep::Nothing)
        .await?
        .next;
    send(sluice, next, page).await
}

/// Whether [`translate`] keeps what the mapping made of each record (a preview shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    Nothing,
    Mapped,
}

/// What translate made of a page at its step.
pub(crate) struct Translated {
    /// Where the page goes: deliver, upload, or evaluate when nothing is left to send.
    pub next: Stage,
    /// With [`Keep::Mapped`]: each record's mapped (and postMapped) value, by position.
    pub mapped: Option<Vec<Option<Value>>>,
}

/// The import's filter, preMap, mapping and postMap, then each request (or the page's
/// file) rendered into the page.
pub(crate) async fn translate(
    sluice: &Sluice,
    page: &mut Page,
    p: &Processor,
    job: Option<&Job>,
    keep: Keep,
) -> Result<Translated> {
    let base = base_context(page, p, job, sluice);
    if let Target::Import(import) = &p.target {
        if let Some(filter) = &import.filter {
            let whose = ("the import's filter", FailureCode::Filter);
            let settings = import.settings.as_ref();
            crate::hooks::shaping::filter_records(
                sluice,
                filter,
                whose,
                settings,
                &mut page.records,
            )
            .await?;
        }
    }
    let existence = Existence::of(p);
    if let Some(existence) = &existence {
        existence.skip_ignored(page);
    }

    crate::hooks::import::pre_map(sluice, page, p).await?;
    let mut mapped = mapped_records(sluice, p, page, base.get("now"));
    crate::hooks::import::post_map(sluice, page, p, &mut mapped).await?;
    let kept = (keep == Keep::Mapped).then(|| mapped.clone()).flatten();
    let next = if p.writes_files() {
        render_page_file(sluice, page, p, &base, mapped);
        Stage::Upload
    } else {
        render_requests(sluice, page, p, &base, mapped, existence.as_ref());
        Stage::Deliver
    };
    let anything_to_send = page.records.iter().any(|r| r.is_active());
    Ok(Translated {
        next: if anything_to_send {
            next
        } else {
            Stage::Evaluate
        },
        mapped: kept,
    })
}

async fn send(sluice: &Sluice, stage: Stage, page: Page) -> Result<()> {
    sluice.queue.send(stage, StageMessage::Page(page)).await?;
    Ok(())
}

/// What every template of this page sees besides the record(s).
fn base_context(
    page: &Page,
    p: &Processor,
    job: Option<&Job>,
    sluice: &Sluice,
) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert(
        "job".into(),
        json!({"_id": page.job_id,
            "flowExecutionGroupId": job.and_then(|j| j.flow_execution_group_id.as_deref())}),
    );
    m.insert(
        "flow".into(),
        json!({"_id": p.flow.id, "name": p.flow.name}),
    );
    m.insert(
        "page".into(),
        json!({"index": page.page_index, "id": page.page_id}),
    );
    m.insert(
        "now".into(),
        json!(sluice_model::time::format(&sluice.clock.now())),
    );
    m.insert(
        "lastExportDateTime".into(),
        json!(job
            .and_then(|j| j.start_date)
            .map(|d| sluice_model::time::format(&d))),
    );
    m.insert(
        "currentExportDateTime".into(),
        json!(job
            .and_then(|j| j.end_date)
            .map(|d| sluice_model::time::format(&d))),
    );
    let base_uri = p.connection.http.as_ref().map(|h| h.base_uri.clone());
    m.insert("connection".into(), json!({"baseURI": base_uri}));
    m
}

struct RequestTemplates<'a> {
    method: &'a str,
    uri: &'a str,
    headers: &'a [NameValue],
    body: Option<&'a str>,
    /// Without a body template, send the record (or the page's records) as the JSON body:
    /// true but for GET and DELETE, which carry a body only when one was written for them.
    whole_body: bool,
    mode: RequestMode,
    /// The header that carries the send's idempotency key (imports only).
    idempotency_header: Option<&'a str>,
    /// Handlebars strict mode (the import's `strictTemplates`).
    strict: bool,
}

/// The templates of the processor's request for `case` (an import's `http.update` for
/// records that exist, its own request otherwise).
fn templates_of(p: &Processor, case: RequestCase) -> Option<RequestTemplates<'_>> {
    match &p.target {
        Target::Import(i) => i.http.as_ref().map(|h| {
            let (method, uri, body) = match (&h.update, case) {
                (Some(u), RequestCase::Update) => (
                    &u.method,
                    &u.relative_uri,
                    u.body.as_deref().or(h.body.as_deref()),
                ),
                _ => (&h.method, &h.relative_uri, h.body.as_deref()),
            };
            RequestTemplates {
                method,
                uri,
                headers: &h.headers,
                body,
                whole_body: !matches!(method.to_ascii_uppercase().as_str(), "GET" | "DELETE"),
                mode: h.request_mode,
                idempotency_header: h.idempotency_key_header.as_deref(),
                strict: i.strict_templates,
            }
        }),
        Target::Lookup(e) => e.http.as_ref().map(|h| RequestTemplates {
            method: &h.method,
            uri: &h.relative_uri,
            headers: &h.headers,
            body: h.body.as_deref(),
            whole_body: false,
            mode: RequestMode::Record,
            idempotency_header: None,
            strict: false,
        }),
    }
}

/// `mapped`: what the mapping (and postMap) made of each active record, by position; the body
/// renders it, the URI and headers the record itself.
fn render_requests(
    sluice: &Sluice,
    page: &mut Page,
    p: &Processor,
    base: &serde_json::Map<String, Value>,
    mut mapped: Option<Vec<Option<Value>>>,
    existence: Option<&Existence>,
) {
    let (Some(t), Some(update)) = (
        templates_of(p, RequestCase::Create),
        templates_of(p, RequestCase::Update),
    ) else {
        for r in page.records.iter_mut().filter(|r| r.is_active()) {
            r.fail(FailureCode::Config, "the import has no http section");
        }
        return;
    };
    let base_uri = p.connection.http.as_ref().map(|h| h.base_uri.as_str());
    let base_uri = match BaseUri::parse(base_uri.unwrap_or("")) {
        Ok(b) => b,
        Err(e) => {
            for r in page.records.iter_mut().filter(|r| r.is_active()) {
                r.fail(FailureCode::Config, e.clone());
            }
            return;
        }
    };
    let cache = &sluice.caches.templates;
    let with = |name: &str, value: Value| {
        let mut ctx = base.clone();
        ctx.insert(name.into(), value);
        Value::Object(ctx)
    };
    let name = t.mode.context_name();
    match t.mode {
        RequestMode::Record => {
            let send_ids: Vec<String> = page
                .records
                .iter()
                .map(|r| page.send_id(Some(&r.key)))
                .collect();
            let records = page.records.iter_mut().zip(send_ids).enumerate();
            for (i, (r, send_id)) in records.filter(|(_, (r, _))| r.is_active()) {
                let ctx = Contexts {
                    request: with(name, r.data.clone()),
                    body: mapped
                        .as_mut()
                        .and_then(|m| m[i].take())
                        .map(|m| with(name, m)),
                };
                let t = match existence.map(|e| e.case(r)) {
                    Some(RequestCase::Update) => &update,
                    _ => &t,
                };
                match render_request(cache, t, &p.connection, &base_uri, &ctx) {
                    Ok(mut request) => {
                        add_idempotency_key(t, &mut request, send_id);
                        r.exchange = Some(Exchange {
                            request,
                            reply: None,
                        })
                    }
                    Err(f) => r.fail(f.code, f.message),
                }
            }
        }
        RequestMode::Page => {
            let active = || {
                page.records
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.is_active())
            };
            let records: Vec<Value> = active().map(|(_, r)| r.data.clone()).collect();
            let body = mapped.as_mut().map(|m| {
                let mapped: Vec<Value> = active().filter_map(|(i, _)| m[i].take()).collect();
                with(name, Value::Array(mapped))
            });
            let ctx = Contexts {
                request: with(name, Value::Array(records)),
                body,
            };
            match render_request(cache, &t, &p.connection, &base_uri, &ctx) {
                Ok(mut request) => {
                    add_idempotency_key(&t, &mut request, page.send_id(None));
                    page.batch = Some(Exchange {
                        request,
                        reply: None,
                    })
                }
                Err(f) => {
                    for r in page.records.iter_mut().filter(|r| r.is_active()) {
                        r.fail(f.code, f.message.clone());
                    }
                }
            }
        }
    }
}

/// Each active record through the import's mapping, by position in the page (`None` for
/// records that are not active); a record the mapping fails for becomes an error (code
/// `mapping`). `None` when the processor has no mapping: what is sent is the record itself.
fn mapped_records(
    sluice: &Sluice,
    p: &Processor,
    page: &mut Page,
    now: Option<&Value>,
) -> Option<Vec<Option<Value>>> {
    let Target::Import(import) = &p.target else {
        return None;
    };
    let mapping = import.mapping.as_ref()?;
    let active = page.records.iter_mut().filter(|r| r.is_active());
    let compiled = match crate::mapping::compiled(&sluice.caches.mappings, mapping) {
        Ok(c) => c,
        Err(e) => {
            for r in active {
                r.fail(FailureCode::Mapping, e.clone());
            }
            return Some(vec![None; page.records.len()]);
        }
    };
    let templates = sluice.templates(import.strict_templates, now);
    let mapped = page.records.iter_mut().map(|r| {
        if !r.is_active() {
            return None;
        }
        match crate::mapping::apply(&compiled, &r.data, templates) {
            Ok(m) => Some(m),
            Err(e) => {
                r.fail(FailureCode::Mapping, e);
                None
            }
        }
    });
    Some(mapped.collect())
}

/// What a request's templates render with: the URI and headers see the record as it came
/// (`request`), the body the mapped record when the import maps (`body`), as integrator.io
/// does.
struct Contexts {
    request: Value,
    body: Option<Value>,
}

/// The send's idempotency key in the import's header, unless the import writes that header
/// itself.
fn add_idempotency_key(t: &RequestTemplates, request: &mut RenderedRequest, key: String) {
    let Some(name) = t.idempotency_header else {
        return;
    };
    if !request
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        request.headers.push((name.to_string(), key));
    }
}

fn render_request(
    cache: &TemplateCache,
    t: &RequestTemplates,
    connection: &Connection,
    base_uri: &BaseUri,
    contexts: &Contexts,
) -> Result<RenderedRequest, Failure> {
    let template = |e: String| Failure::new(FailureCode::Template, e);
    let ctx = handlebars::Context::wraps(&contexts.request).map_err(|e| template(e.to_string()))?;
    let uri = cache
        .render_as(t.uri, &ctx, Escape::UriComponent, t.strict)
        .map_err(|e| template(format!("relativeURI: {e}")))?;
    // A URL outside the connection's baseURI is refused before anything is sent.
    let url = base_uri
        .join(&uri)
        .map_err(|e| Failure::new(FailureCode::UrlRefused, e))?
        .to_string();
    let mut headers = Vec::new();
    if let Some(h) = &connection.http {
        for hv in &h.headers {
            headers.push((hv.name.clone(), hv.value.clone()));
        }
    }
    for (i, hv) in t.headers.iter().enumerate() {
        // `secret:NAME` stays as written; deliver resolves it when sending.
        let v = if sluice_model::is_secret_reference(&hv.value) {
            hv.value.clone()
        } else {
            cache
                .render_as(&hv.value, &ctx, Escape::None, t.strict)
                .map_err(|e| template(format!("headers[{i}]: {e}")))?
        };
        headers.push((hv.name.clone(), v));
    }
    let method = t.method.to_ascii_uppercase();
    let escape = templates::body_escape(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let body = match (t.body, &contexts.body) {
        (Some(b), mapped) => {
            let mapped_ctx;
            let ctx = match mapped {
                Some(body) => {
                    mapped_ctx =
                        handlebars::Context::wraps(body).map_err(|e| template(e.to_string()))?;
                    &mapped_ctx
                }
                None => &ctx,
            };
            Some(
                cache
                    .render_as(b, ctx, escape, t.strict)
                    .map_err(|e| template(format!("body: {e}")))?,
            )
        }
        (None, _) if !t.whole_body => None,
        // Without a body template the record (a mapping's output when the import maps) is
        // the JSON body itself.
        (None, Some(mapped)) => Some(mapped[t.mode.context_name()].to_string()),
        (None, None) => Some(contexts.request[t.mode.context_name()].to_string()),
    };
    Ok(RenderedRequest {
        method,
        url,
        headers,
        body,
    })
}

fn render_page_file(
    sluice: &Sluice,
    page: &mut Page,
    p: &Processor,
    base: &serde_json::Map<String, Value>,
    mapped: Option<Vec<Option<Value>>>,
) {
    let Target::Import(import) = &p.target else {
        return;
    };
    let Some(spec) = import.sftp.as_ref().or(import.s3.as_ref()) else {
        for r in page.records.iter_mut().filter(|r| r.is_active()) {
            r.fail(
                FailureCode::Config,
                format!(
                    "the import has no {} section",
                    if import.sftp.is_none() {
                        "sftp/s3"
                    } else {
                        "file"
                    }
                ),
            );
        }
        return;
    };
    let cache = &sluice.caches.templates;
    // The name sees the page's first record as received, as a URI sees its record.
    let mut named = base.clone();
    if let Some(first) = page.records.iter().find(|r| r.is_active()) {
        named.insert("record".into(), first.data.clone());
    }
    let ctx = Value::Object(named);
    let rendered = (|| -> Result<RenderedFile, String> {
        let directory = cache
            .render_value(&spec.directory_path, &ctx)
            .map_err(|e| format!("directoryPath: {e}"))?;
        if directory.split(['/', '\\']).any(|segment| segment == "..") {
            return Err(format!(
                "directoryPath rendered to '{directory}', which climbs out with '..'"
            ));
        }
        let name = cache
            .render_value(&spec.file_name, &ctx)
            .map_err(|e| format!("fileName: {e}"))?;
        if name.contains(['/', '\\']) || name.trim().is_empty() || name == "." || name == ".." {
            return Err(format!(
                "fileName rendered to '{name}', which is not a plain file name"
            ));
        }
        // The file holds the records as the import's mapping makes them.
        let active: Vec<&Value> = page
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_active())
            .map(|(i, r)| {
                mapped
                    .as_ref()
                    .and_then(|m| m[i].as_ref())
                    .unwrap_or(&r.data)
            })
            .collect();
        let content = render_content(cache, base, &active, import.file.as_ref())
            .map_err(|e| format!("file content: {e}"))?;
        let record_keys = page
            .records
            .iter()
            .filter(|r| r.is_active())
            .map(|r| r.key.clone())
            .collect();
        Ok(RenderedFile {
            directory,
            name,
            content,
            record_keys,
        })
    })();
    match rendered {
        Ok(f) => page.file = Some(f),
        Err(e) => {
            for r in page.records.iter_mut().filter(|r| r.is_active()) {
                r.fail(FailureCode::Template, e.clone());
            }
        }
    }
}
