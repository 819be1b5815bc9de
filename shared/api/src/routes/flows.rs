//! The flows API: CRUD plus run, jobs, audit, dependencies, descendants, templates and the
//! delta watermark.

use super::definitions::{self as defs, doc_id, load, present};
use super::header_secrets;
use crate::auth::Caller;
use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Body, Ids, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sluice_core::ports::{AuditEntry, Kind};
use sluice_core::runs::{self, watermark};
use sluice_core::stages::trigger::schedule;
use sluice_core::{Error, Sluice};
use sluice_model::preview::{Preview, PreviewRequest};
use sluice_model::{
    Bundle, Connection, Export, Flow, Import, Job, ProcessorType, RunKind, RunRequest, RunStarted,
    UsesScripts,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use utoipa::ToSchema;

type St = State<Arc<Sluice>>;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only flows of this integration.
    #[serde(rename = "_integrationId")]
    pub integration_id: Option<String>,
    /// Only enabled (false) or disabled (true) flows.
    pub disabled: Option<bool>,
}

#[utoipa::path(get, path = "/flows", tag = "flows", operation_id = "listFlows", params(ListQuery),
    responses((status = 200, description = "Flows, ordered by _id", body = Vec<Flow>)))]
pub async fn list_flows(State(s): St, Query(q): Query<ListQuery>) -> ApiResult<Json<Vec<Value>>> {
    let flows = defs::list(&s, Kind::Flow).await?;
    Ok(Json(
        flows
            .into_iter()
            .filter(|f| {
                q.integration_id.as_deref().is_none_or(|want| {
                    f.get("_integrationId").and_then(Value::as_str) == Some(want)
                })
            })
            .filter(|f| {
                q.disabled.is_none_or(|want| {
                    f.get("disabled").and_then(Value::as_bool).unwrap_or(false) == want
                })
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/flows", tag = "flows", operation_id = "createFlow", request_body = Flow,
    responses((status = 201, description = "The flow with _id, createdAt, lastModified", body = Flow),
              (status = 409, description = "conflict: the _id exists", body = ErrorBody)))]
pub async fn create_flow(
    State(s): St,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let doc = defs::create(&s, Kind::Flow, body.object()?, &caller.0).await?;
    Ok((StatusCode::CREATED, Json(present(Kind::Flow, &doc))))
}

#[utoipa::path(get, path = "/flows/{id}", tag = "flows", operation_id = "getFlow", params(("id" = String, Path)),
    responses((status = 200, description = "The flow", body = Flow)))]
pub async fn get_flow(State(s): St, Ids(id): Ids<String>) -> ApiResult<Json<Value>> {
    Ok(Json(present(Kind::Flow, &load(&s, Kind::Flow, &id).await?)))
}

#[utoipa::path(put, path = "/flows/{id}", tag = "flows", operation_id = "updateFlow", params(("id" = String, Path)),
    request_body(content = ref("#/components/schemas/FlowChanges"), description = "The fields to replace (`{\"disabled\": true}` alone disables)"),
    responses((status = 200, description = "Fields given replace those stored", body = Flow)))]
pub async fn update_flow(
    State(s): St,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let doc = defs::update(&s, Kind::Flow, &id, body.object()?, &caller.0).await?;
    Ok(Json(present(Kind::Flow, &doc)))
}

#[utoipa::path(delete, path = "/flows/{id}", tag = "flows", operation_id = "deleteFlow", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"),
              (status = 409, description = "conflict: another flow chains to it (_runNextFlowIds)", body = ErrorBody)))]
pub async fn delete_flow(
    State(s): St,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
) -> ApiResult<StatusCode> {
    defs::delete(&s, Kind::Flow, &id, &caller.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a run may be asked for (the body of `POST /flows/{id}/run`; all optional).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"_exportIds": ["new-orders"], "startDate": "2026-11-01T00:00:00.000Z"}))]
pub struct RunBody {
    /// Only these page generators (default: all).
    #[serde(rename = "_exportIds", default)]
    pub export_ids: Option<Vec<String>>,
    /// The delta window's start (`{{lastExportDateTime}}`); default: the last run's end.
    #[serde(default)]
    pub start_date: Option<DateTime<Utc>>,
    /// The delta window's end (`{{currentExportDateTime}}`); default: now.
    #[serde(default)]
    pub end_date: Option<DateTime<Utc>>,
    /// Records for a webhook export.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub records: Option<Vec<Value>>,
}

impl From<RunBody> for RunRequest {
    fn from(b: RunBody) -> Self {
        RunRequest {
            export_ids: b.export_ids,
            start_date: b.start_date,
            end_date: b.end_date,
            records: b.records,
            ..Default::default()
        }
    }
}

#[utoipa::path(post, path = "/flows/{id}/run", tag = "flows", operation_id = "runFlow", params(("id" = String, Path)),
    request_body(content = Option<RunBody>, description = "Optional: _exportIds, startDate, endDate, records"),
    responses((status = 201, description = "The run was started", body = RunStarted),
              (status = 409, description = "conflict: Flow is currently running", body = ErrorBody)))]
pub async fn run_flow(
    State(s): St,
    Extension(caller): Extension<Caller>,
    Ids(id): Ids<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<RunStarted>)> {
    let request: RunBody = body.json_or_default()?;
    let started = runs::start_run(&s, &id, request.into(), RunKind::Manual)
        .await?
        .ok_or_else(|| ApiError::conflict("Flow is currently running"))?;
    let entry = sluice_core::ports::AuditEntry::of_job(
        &id,
        &started.job_id,
        "run",
        &caller.0,
        s.clock.now(),
    );
    s.store.append_audit(&entry).await?;
    Ok((StatusCode::CREATED, Json(started)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// How many jobs, newest first (default 10).
    pub limit: Option<usize>,
}

/// What each step of the flow would do with sample records: nothing is sent, stored or
/// counted.
#[utoipa::path(post, path = "/flows/{id}/preview", tag = "flows", operation_id = "previewFlow", params(("id" = String, Path)),
    request_body(content = PreviewRequest, description = "Sample records, at most `limit` of them, and optionally the reply each request is judged on"),
    responses((status = 200, description = "Each record's way through the flow, step by step", body = Preview)))]
pub async fn preview_flow(
    State(s): St,
    Ids(id): Ids<String>,
    body: Body,
) -> ApiResult<Json<Preview>> {
    let request: PreviewRequest = body.json()?;
    Ok(Json(
        sluice_core::preview::preview(&s, &id, &request).await?,
    ))
}

#[utoipa::path(get, path = "/flows/{id}/jobs/latest", tag = "flows", operation_id = "latestJobsOfFlow",
    params(("id" = String, Path), LimitQuery),
    responses((status = 200, description = "Newest jobs first", body = Vec<Job>)))]
pub async fn latest_jobs(
    State(s): St,
    Ids(id): Ids<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Vec<Job>>> {
    load(&s, Kind::Flow, &id).await?;
    let jobs = s
        .store
        .list_jobs(&id, q.limit.unwrap_or(10).clamp(1, 1000))
        .await?;
    Ok(Json(jobs))
}

#[utoipa::path(get, path = "/flows/{id}/audit", tag = "flows", operation_id = "flowAudit", params(("id" = String, Path)),
    responses((status = 200, description = "Who changed what and when, oldest first", body = Vec<AuditEntry>)))]
pub async fn flow_audit(State(s): St, Ids(id): Ids<String>) -> ApiResult<Json<Vec<AuditEntry>>> {
    let entries = s.store.list_audit(&id).await?;
    if entries.is_empty() {
        load(&s, Kind::Flow, &id).await?;
    }
    Ok(Json(entries))
}

/// The exports and imports a flow uses, in order, without repeats.
async fn parts_of(s: &Sluice, flow: &Flow) -> ApiResult<(Vec<Export>, Vec<Import>)> {
    let mut export_ids: Vec<&str> = flow
        .page_generators
        .iter()
        .map(|g| g.export_id.as_str())
        .collect();
    let mut import_ids = Vec::new();
    let steps = flow.steps();
    for p in steps.iter().map(|s| s.processor) {
        match (p.kind, p.target_id()) {
            (ProcessorType::Export, Some(id)) => export_ids.push(id),
            (ProcessorType::Import, Some(id)) => import_ids.push(id),
            _ => {}
        }
    }
    let mut exports = Vec::new();
    for id in dedup(export_ids) {
        exports.push(s.export(id).await?);
    }
    let mut imports = Vec::new();
    for id in dedup(import_ids) {
        imports.push(s.import(id).await?);
    }
    Ok((exports, imports))
}

fn dedup(ids: Vec<&str>) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    ids.into_iter().filter(|id| seen.insert(*id)).collect()
}

/// The scripts the flow's own hooks and those of its exports and imports call, without
/// repeats.
fn script_ids(flow: &Flow, exports: &[Export], imports: &[Import]) -> Vec<String> {
    let refs = (flow.script_refs().into_iter())
        .chain(exports.iter().flat_map(|x| x.script_refs()))
        .chain(imports.iter().flat_map(|x| x.script_refs()));
    let ids = refs.map(|(_, r)| r.script_id.as_str()).collect();
    dedup(ids).into_iter().map(String::from).collect()
}

fn connection_ids(exports: &[Export], imports: &[Import]) -> Vec<String> {
    let ids = exports
        .iter()
        .filter_map(|x| x.connection_id.as_deref())
        .chain(imports.iter().map(|x| x.connection_id.as_str()))
        .filter(|c| !c.is_empty())
        .collect();
    dedup(ids).into_iter().map(String::from).collect()
}

/// What a flow uses and what uses it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"uses": {"exports": ["new-orders"], "imports": ["post-order"],
    "connections": ["orders-api"], "scripts": ["order-hooks"]},
    "usedBy": {"flows": ["nightly-report"]}}))]
pub struct Dependencies {
    pub uses: Uses,
    pub used_by: UsedBy,
}

/// The ids of the definitions a flow runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uses {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    pub connections: Vec<String>,
    /// The scripts its hooks (and those of its exports and imports) call.
    pub scripts: Vec<String>,
}

/// The flows that chain to this one (`_runNextFlowIds`).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsedBy {
    pub flows: Vec<String>,
}

#[utoipa::path(get, path = "/flows/{id}/dependencies", tag = "flows", operation_id = "flowDependencies", params(("id" = String, Path)),
    responses((status = 200, description = "What the flow uses and what uses it", body = Dependencies)))]
pub async fn dependencies(State(s): St, Ids(id): Ids<String>) -> ApiResult<Json<Dependencies>> {
    let flow = s.flow(&id).await?;
    let (exports, imports) = parts_of(&s, &flow).await?;
    let used_by: Vec<String> = s
        .store
        .list_definitions(Kind::Flow)
        .await?
        .iter()
        .filter(|f| {
            f.get("_runNextFlowIds")
                .and_then(Value::as_array)
                .is_some_and(|ids| ids.iter().any(|x| x.as_str() == Some(id.as_str())))
        })
        .map(|f| doc_id(f).to_string())
        .collect();
    Ok(Json(Dependencies {
        uses: Uses {
            exports: exports.iter().map(|x| x.id.clone()).collect(),
            imports: imports.iter().map(|x| x.id.clone()).collect(),
            connections: connection_ids(&exports, &imports),
            scripts: script_ids(&flow, &exports, &imports),
        },
        used_by: UsedBy { flows: used_by },
    }))
}

/// The exports and imports a flow runs, in full.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"exports": [{"_id": "incoming", "name": "Orders posted to the run", "type": "webhook"}],
    "imports": [{"_id": "post-order", "name": "Create each order", "type": "http",
                 "_connectionId": "orders-api", "http": {"method": "POST", "relativeURI": "/orders"}}]}))]
pub struct Descendants {
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
}

#[utoipa::path(get, path = "/flows/{id}/descendants", tag = "flows", operation_id = "flowDescendants", params(("id" = String, Path)),
    responses((status = 200, description = "The exports and imports the flow runs, in full (credential headers masked)", body = Descendants)))]
pub async fn descendants(State(s): St, Ids(id): Ids<String>) -> ApiResult<Json<Value>> {
    let flow = s.flow(&id).await?;
    let (exports, imports) = parts_of(&s, &flow).await?;
    let mut out = serde_json::to_value(Descendants { exports, imports })?;
    for kind in [Kind::Export, Kind::Import] {
        if let Some(Value::Array(docs)) = out.get_mut(kind.collection()) {
            for d in docs.iter_mut() {
                *d = header_secrets::masked(kind, d);
            }
        }
    }
    Ok(Json(out))
}

/// The flow, the flows it chains to (recursively), and everything they use; secrets masked.
async fn bundle_of(s: &Sluice, id: &str) -> ApiResult<Bundle> {
    let mut bundle = Bundle::default();
    let mut todo = vec![id.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(fid) = todo.pop() {
        if !seen.insert(fid.clone()) {
            continue;
        }
        let flow = s.flow(&fid).await?;
        let (exports, imports) = parts_of(s, &flow).await?;
        for c in connection_ids(&exports, &imports) {
            if !bundle.connections.iter().any(|x| x.id == c) {
                bundle.connections.push(s.connection(&c).await?.masked());
            }
        }
        for id in script_ids(&flow, &exports, &imports) {
            if !bundle.scripts.iter().any(|x| x.id == id) {
                bundle.scripts.push(s.script(&id).await?);
            }
        }
        for x in exports {
            if !bundle.exports.iter().any(|y| y.id == x.id) {
                bundle.exports.push(x);
            }
        }
        for x in imports {
            if !bundle.imports.iter().any(|y| y.id == x.id) {
                bundle.imports.push(x);
            }
        }
        todo.extend(flow.run_next_flow_ids.iter().cloned());
        bundle.flows.push(flow);
    }
    Ok(bundle)
}

#[utoipa::path(get, path = "/flows/{id}/template", tag = "flows", operation_id = "flowTemplate", params(("id" = String, Path)),
    responses((status = 200, description = "A portable bundle of the flow, the flows it chains to and all they use, secrets masked", body = Bundle)))]
pub async fn template(State(s): St, Ids(id): Ids<String>) -> ApiResult<Json<Value>> {
    let mut bundle = to_json(&bundle_of(&s, &id).await?)?;
    for kind in [Kind::Export, Kind::Import, Kind::Flow] {
        if let Some(Value::Array(docs)) = bundle.get_mut(kind.collection()) {
            for d in docs.iter_mut() {
                *d = header_secrets::masked(kind, d);
            }
        }
    }
    Ok(Json(bundle))
}

/// The ids `POST /flows/import-template` stored, by kind.
#[derive(Debug, Default, Serialize, ToSchema)]
#[schema(example = json!({"connections": ["orders-api"], "exports": ["new-orders"],
    "imports": ["post-order"], "flows": ["orders-to-erp"], "scripts": ["order-hooks"]}))]
pub struct Loaded {
    pub connections: Vec<String>,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    pub flows: Vec<String>,
    pub scripts: Vec<String>,
}

#[utoipa::path(post, path = "/flows/import-template", tag = "flows", operation_id = "importTemplate", request_body = Bundle,
    responses((status = 201, description = "The ids stored, by kind (each created or replaced)", body = Loaded)))]
pub async fn import_template(
    State(s): St,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Loaded>)> {
    let mut raw = Value::Object(body.object()?);
    // Masked secrets mean "keep what is stored under that id".
    let mut e = sluice_model::ValidationErrors::new();
    for kind in [Kind::Export, Kind::Import, Kind::Flow] {
        if let Some(Value::Array(docs)) = raw.get_mut(kind.collection()) {
            for (i, d) in docs.iter_mut().enumerate() {
                let stored = match d.get("_id").and_then(Value::as_str) {
                    Some(id) => s.store.get_definition(kind, id).await?,
                    None => None,
                };
                if let Err(v) = header_secrets::restore(kind, d, stored.as_ref()) {
                    e.nest(&format!("{}[{i}]", kind.collection()), v);
                }
            }
        }
    }
    let mut bundle: Bundle = crate::extract::from_value(raw)?;
    for (i, c) in bundle.connections.iter_mut().enumerate() {
        if let Some(stored) = s.store.get_definition(Kind::Connection, &c.id).await? {
            if let Ok(stored) = serde_json::from_value::<Connection>(stored) {
                c.keep_masked_secrets_from(&stored);
            }
        }
        if c.has_masked_secret() {
            e.add(
                format!("connections[{i}]"),
                "a masked secret must be supplied (no stored connection with this _id holds it)",
            );
        }
    }
    if let Err(v) = bundle.validate() {
        e.0.extend(v.0);
    }
    e.into_result()
        .map_err(|v| ApiError::from(Error::from(v)))?;

    let now = json!(sluice_model::time::format(&s.clock.now()));
    let mut loaded = Loaded::default();
    let mut put = |kind: Kind, id: &str, mut doc: Value| {
        let created = doc.get("createdAt").cloned().filter(|v| !v.is_null());
        doc["createdAt"] = created.unwrap_or_else(|| now.clone());
        doc["lastModified"] = now.clone();
        match kind {
            Kind::Connection => &mut loaded.connections,
            Kind::Export => &mut loaded.exports,
            Kind::Import => &mut loaded.imports,
            Kind::Script => &mut loaded.scripts,
            Kind::Flow | Kind::Integration => &mut loaded.flows,
        }
        .push(id.to_string());
        (kind, id.to_string(), doc)
    };
    let mut docs = Vec::new();
    for x in &bundle.scripts {
        docs.push(put(Kind::Script, &x.id, to_json(x)?));
    }
    for c in &bundle.connections {
        docs.push(put(Kind::Connection, &c.id, to_json(c)?));
    }
    for x in &bundle.exports {
        docs.push(put(Kind::Export, &x.id, to_json(x)?));
    }
    for x in &bundle.imports {
        docs.push(put(Kind::Import, &x.id, to_json(x)?));
    }
    for f in &bundle.flows {
        docs.push(put(Kind::Flow, &f.id, to_json(f)?));
    }
    for (kind, id, doc) in docs {
        let old = s.store.get_definition(kind, &id).await?;
        s.store.put_definition(kind, &id, &doc).await?;
        let action = if old.is_some() { "update" } else { "create" };
        defs::audit(&s, kind, &id, action, &caller.0, old.as_ref(), Some(&doc)).await?;
    }
    for f in &bundle.flows {
        schedule::reschedule(&s, f).await?;
    }
    Ok((StatusCode::CREATED, Json(loaded)))
}

/// `POST /templates/import`: the same as `POST /flows/import-template`.
#[utoipa::path(post, path = "/templates/import", tag = "flows", operation_id = "importTemplateAlias", request_body = Bundle,
    responses((status = 201, description = "The ids stored, by kind (each created or replaced)", body = Loaded)))]
pub async fn import_template_alias(
    state: St,
    caller: Extension<Caller>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Loaded>)> {
    import_template(state, caller, body).await
}

fn to_json<T: serde::Serialize>(t: &T) -> ApiResult<Value> {
    Ok(serde_json::to_value(t).map_err(anyhow::Error::from)?)
}

/// Where the flow's next delta runs start: per export (kept per export of the flow).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"lastExportDateTime": "2026-11-22T10:15:00.041Z",
    "exports": {"new-orders": "2026-11-22T10:15:00.041Z", "new-refunds": null}}))]
pub struct LastExportDateTime {
    /// The first page generator's: the end of its last completed delta run's window; null
    /// before the first.
    #[serde(with = "sluice_model::time::ms_opt")]
    pub last_export_date_time: Option<DateTime<Utc>>,
    /// Each page generator's, by export id (RFC 3339 UTC milliseconds, or null).
    pub exports: BTreeMap<String, Option<String>>,
}

#[utoipa::path(get, path = "/flows/{id}/lastExportDateTime", tag = "flows", operation_id = "flowLastExportDateTime", params(("id" = String, Path)),
    responses((status = 200, description = "Where the next delta runs start", body = LastExportDateTime)))]
pub async fn last_export_date_time(
    State(s): St,
    Ids(id): Ids<String>,
) -> ApiResult<Json<LastExportDateTime>> {
    let flow: Flow = serde_json::from_value(load(&s, Kind::Flow, &id).await?)?;
    let mut exports = BTreeMap::new();
    let mut first = None;
    for (i, g) in flow.page_generators.iter().enumerate() {
        let at = watermark::read(&s, &id, &g.export_id).await?;
        if i == 0 {
            first = at;
        }
        exports.insert(
            g.export_id.clone(),
            at.map(|t| sluice_model::time::format(&t)),
        );
    }
    Ok(Json(LastExportDateTime {
        last_export_date_time: first,
        exports,
    }))
}

pub fn routes() -> axum::Router<Arc<Sluice>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/flows", get(list_flows).post(create_flow))
        .route("/flows/import-template", post(import_template))
        .route("/templates/import", post(import_template_alias))
        .route(
            "/flows/{id}",
            get(get_flow).put(update_flow).delete(delete_flow),
        )
        .route("/flows/{id}/run", post(run_flow))
        .route("/flows/{id}/preview", post(preview_flow))
        .route("/flows/{id}/jobs/latest", get(latest_jobs))
        .route("/flows/{id}/audit", get(flow_audit))
        .route("/flows/{id}/dependencies", get(dependencies))
        .route("/flows/{id}/descendants", get(descendants))
        .route("/flows/{id}/template", get(template))
        .route("/flows/{id}/lastExportDateTime", get(last_export_date_time))
}
