//! The flows API: CRUD plus run, jobs, audit, dependencies, descendants, templates and the
//! delta watermark.

use super::definitions::{self as defs, doc_id, load, present};
use super::header_secrets;
use crate::auth::Caller;
use crate::errors::{ApiError, ApiResult, Body};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_core::ports::Kind;
use sluice_core::runs::{self, watermark};
use sluice_core::stages::trigger::schedule;
use sluice_core::{Error, Sluice};
use sluice_model::{
    Bundle, Connection, Export, Flow, Import, ProcessorType, RunKind, RunRequest, RunStarted,
};
use std::collections::BTreeSet;
use std::sync::Arc;

type St = State<Arc<Sluice>>;

/// A bad query string answered in the API's error shape.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(q)| q)
        .map_err(|r| ApiError::validation(None, r.body_text()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only flows of this integration.
    #[serde(rename = "_integrationId")]
    pub integration_id: Option<String>,
    /// Only enabled (false) or disabled (true) flows.
    pub disabled: Option<bool>,
}

#[utoipa::path(get, path = "/flows", tag = "flows", params(ListQuery),
    responses((status = 200, description = "Flows", body = Vec<serde_json::Value>)))]
pub async fn list_flows(
    State(s): St,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<Value>>> {
    let q = query(q)?;
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

#[utoipa::path(post, path = "/flows", tag = "flows", request_body = serde_json::Value,
    responses((status = 201, description = "The flow with _id, createdAt, lastModified", body = serde_json::Value),
              (status = 400, description = "validation_error")))]
pub async fn create_flow(
    State(s): St,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let doc = defs::create(&s, Kind::Flow, body.object()?, &caller.0).await?;
    Ok((StatusCode::CREATED, Json(present(Kind::Flow, &doc))))
}

#[utoipa::path(get, path = "/flows/{id}", tag = "flows", params(("id" = String, Path)),
    responses((status = 200, description = "The flow", body = serde_json::Value),
              (status = 404, description = "not_found")))]
pub async fn get_flow(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(present(Kind::Flow, &load(&s, Kind::Flow, &id).await?)))
}

#[utoipa::path(put, path = "/flows/{id}", tag = "flows", params(("id" = String, Path)),
    request_body = serde_json::Value,
    responses((status = 200, description = "Fields given replace those stored", body = serde_json::Value),
              (status = 400, description = "validation_error"), (status = 404, description = "not_found")))]
pub async fn update_flow(
    State(s): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let doc = defs::update(&s, Kind::Flow, &id, body.object()?, &caller.0).await?;
    Ok(Json(present(Kind::Flow, &doc)))
}

#[utoipa::path(delete, path = "/flows/{id}", tag = "flows", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "not_found"),
              (status = 409, description = "conflict: another flow chains to it (_runNextFlowIds)")))]
pub async fn delete_flow(
    State(s): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    defs::delete(&s, Kind::Flow, &id, &caller.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/flows/{id}/run", tag = "flows", params(("id" = String, Path)),
    request_body(content = serde_json::Value, description = "Optional: _exportIds, startDate, endDate, records"),
    responses((status = 201, description = "{_jobId, _exportId, flowExecutionGroupId}", body = serde_json::Value),
              (status = 409, description = "conflict: Flow is currently running")))]
pub async fn run_flow(
    State(s): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<RunStarted>)> {
    let request: RunRequest = if body.is_blank() {
        RunRequest::default()
    } else {
        body.parse()?
    };
    let started = runs::start_run(&s, &id, request, RunKind::Manual)
        .await?
        .ok_or_else(|| ApiError::conflict("Flow is currently running"))?;
    let entry = sluice_core::ports::AuditEntry {
        id: sluice_model::new_id(),
        resource_type: Kind::Flow,
        resource_id: id.clone(),
        action: "run".into(),
        time: s.clock.now(),
        actor: caller.0,
        changes: json!({ "_jobId": started.job_id }),
    };
    s.store.append_audit(&entry).await?;
    Ok((StatusCode::CREATED, Json(started)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LimitQuery {
    /// How many jobs, newest first (default 10).
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/flows/{id}/jobs/latest", tag = "flows",
    params(("id" = String, Path), LimitQuery),
    responses((status = 200, description = "Newest jobs first", body = Vec<serde_json::Value>)))]
pub async fn latest_jobs(
    State(s): St,
    Path(id): Path<String>,
    q: Result<Query<LimitQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let q = query(q)?;
    load(&s, Kind::Flow, &id).await?;
    let jobs = s
        .store
        .list_jobs(&id, q.limit.unwrap_or(10).clamp(1, 1000))
        .await?;
    Ok(Json(
        serde_json::to_value(jobs).map_err(anyhow::Error::from)?,
    ))
}

#[utoipa::path(get, path = "/flows/{id}/audit", tag = "flows", params(("id" = String, Path)),
    responses((status = 200, description = "Who changed what and when, oldest first", body = Vec<serde_json::Value>)))]
pub async fn flow_audit(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let entries = s.store.list_audit(&id).await?;
    if entries.is_empty() {
        load(&s, Kind::Flow, &id).await?;
    }
    Ok(Json(
        serde_json::to_value(entries).map_err(anyhow::Error::from)?,
    ))
}

/// The exports and imports a flow uses, in order, without repeats.
async fn parts_of(s: &Sluice, flow: &Flow) -> ApiResult<(Vec<Export>, Vec<Import>)> {
    let mut export_ids: Vec<&str> = flow
        .page_generators
        .iter()
        .map(|g| g.export_id.as_str())
        .collect();
    let mut import_ids = Vec::new();
    for p in &flow.page_processors {
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

fn connection_ids(exports: &[Export], imports: &[Import]) -> Vec<String> {
    let ids = exports
        .iter()
        .filter_map(|x| x.connection_id.as_deref())
        .chain(imports.iter().map(|x| x.connection_id.as_str()))
        .filter(|c| !c.is_empty())
        .collect();
    dedup(ids).into_iter().map(String::from).collect()
}

#[utoipa::path(get, path = "/flows/{id}/dependencies", tag = "flows", params(("id" = String, Path)),
    responses((status = 200, description = "{uses: {exports, imports, connections}, usedBy: {flows}}", body = serde_json::Value)))]
pub async fn dependencies(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({
        "uses": {
            "exports": exports.iter().map(|x| &x.id).collect::<Vec<_>>(),
            "imports": imports.iter().map(|x| &x.id).collect::<Vec<_>>(),
            "connections": connection_ids(&exports, &imports),
        },
        "usedBy": { "flows": used_by },
    })))
}

#[utoipa::path(get, path = "/flows/{id}/descendants", tag = "flows", params(("id" = String, Path)),
    responses((status = 200, description = "{exports: [...], imports: [...]} in full", body = serde_json::Value)))]
pub async fn descendants(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let flow = s.flow(&id).await?;
    let (exports, imports) = parts_of(&s, &flow).await?;
    Ok(Json(json!({ "exports": exports, "imports": imports })))
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

#[utoipa::path(get, path = "/flows/{id}/template", tag = "flows", params(("id" = String, Path)),
    responses((status = 200, description = "A portable bundle of the flow and all it uses, secrets removed", body = serde_json::Value)))]
pub async fn template(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
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

#[utoipa::path(post, path = "/flows/import-template", tag = "flows", request_body = serde_json::Value,
    responses((status = 201, description = "The ids loaded, by kind", body = serde_json::Value),
              (status = 400, description = "validation_error")))]
pub async fn import_template(
    State(s): St,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut raw: Value = body.parse()?;
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
    let mut bundle: Bundle = crate::errors::from_value(raw)?;
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

    let now = s.clock.now();
    let mut loaded = json!({"connections": [], "exports": [], "imports": [], "flows": []});
    let mut put = |kind: Kind, id: &str, mut doc: Value| {
        let created = doc.get("createdAt").cloned().filter(|v| !v.is_null());
        doc["createdAt"] = created.unwrap_or_else(|| json!(now));
        doc["lastModified"] = json!(now);
        loaded[kind.collection()]
            .as_array_mut()
            .expect("array")
            .push(json!(id));
        (kind, id.to_string(), doc)
    };
    let mut docs = Vec::new();
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

fn to_json<T: serde::Serialize>(t: &T) -> ApiResult<Value> {
    Ok(serde_json::to_value(t).map_err(anyhow::Error::from)?)
}

#[utoipa::path(get, path = "/flows/{id}/lastExportDateTime", tag = "flows", params(("id" = String, Path)),
    responses((status = 200, description = "{lastExportDateTime: string|null (the first page generator's), exports: {exportId: string|null}}", body = serde_json::Value)))]
pub async fn last_export_date_time(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let flow: Flow =
        serde_json::from_value(load(&s, Kind::Flow, &id).await?).map_err(anyhow::Error::from)?;
    let mut exports = serde_json::Map::new();
    for g in &flow.page_generators {
        let at = watermark::read(&s, &id, &g.export_id).await?;
        exports.insert(g.export_id.clone(), json!(at));
    }
    let first = flow
        .page_generators
        .first()
        .and_then(|g| exports.get(&g.export_id).cloned())
        .unwrap_or(Value::Null);
    Ok(Json(
        json!({ "lastExportDateTime": first, "exports": exports }),
    ))
}

pub fn routes() -> axum::Router<Arc<Sluice>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/flows", get(list_flows).post(create_flow))
        .route("/flows/import-template", post(import_template))
        .route("/templates/import", post(import_template))
        .route(
            "/flows/{id}",
            get(get_flow).put(update_flow).delete(delete_flow),
        )
        .route("/flows/{id}/run", post(run_flow))
        .route("/flows/{id}/jobs/latest", get(latest_jobs))
        .route("/flows/{id}/audit", get(flow_audit))
        .route("/flows/{id}/dependencies", get(dependencies))
        .route("/flows/{id}/descendants", get(descendants))
        .route("/flows/{id}/template", get(template))
        .route("/flows/{id}/lastExportDateTime", get(last_export_date_time))
}
