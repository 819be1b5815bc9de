//! CRUD for every kind of definition (connections, exports, imports, flows, integrations,
//! scripts):
//! parse with the model's types (unknown fields refused), validate, check references against
//! the store, keep timestamps, mask secrets on the way out, and audit every change.

use crate::auth::Caller;
use crate::errors::{ApiError, ApiResult, ErrorBody};
use crate::extract::{from_value, Body, Ids};
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::{Map, Value};
use sluice_core::ports::{AuditEntry, Kind};
use sluice_core::runs;
use sluice_core::stages::trigger::schedule;
use sluice_core::{Error, Sluice};
use sluice_model::{
    chain_cycle, chain_loop_message, new_id, Connection, Export, Flow, Import, Integration,
    ProcessorType, Script, UsesScripts, ValidationErrors, MASK,
};
use std::collections::HashMap;
use std::sync::Arc;

fn to_value<T: Serialize>(t: &T) -> ApiResult<Value> {
    serde_json::to_value(t).map_err(|e| ApiError::from(anyhow::Error::from(e)))
}

/// A stored document of `kind`, or 404 naming it.
pub async fn load(sluice: &Sluice, kind: Kind, id: &str) -> ApiResult<Value> {
    sluice
        .store
        .get_definition(kind, id)
        .await?
        .ok_or_else(|| ApiError::not_found(kind.label(), id))
}

async fn exists(sluice: &Sluice, kind: Kind, id: &str) -> ApiResult<bool> {
    Ok(sluice.store.get_definition(kind, id).await?.is_some())
}

/// What a client may see: connections with every secret masked, credential headers of
/// flows, imports and exports masked.
pub fn present(kind: Kind, doc: &Value) -> Value {
    if kind == Kind::Connection {
        if let Ok(c) = serde_json::from_value::<Connection>(doc.clone()) {
            return serde_json::to_value(c.masked()).unwrap_or(Value::Null);
        }
        // An unreadable stored connection is never shown raw: it may hold secrets.
        return serde_json::json!({ "_id": doc.get("_id") });
    }
    super::header_secrets::masked(kind, doc)
}

/// Checks a document of `kind` (already carrying `_id` and timestamps) and returns it in the
/// model's canonical form, ready to store. `stored` is the previous version on an update.
pub async fn normalize(
    sluice: &Sluice,
    kind: Kind,
    mut doc: Value,
    stored: Option<&Value>,
) -> ApiResult<Value> {
    let mut e = ValidationErrors::new();
    // Masked credential headers (flows, imports, exports) mean "keep the stored value".
    if let Err(v) = super::header_secrets::restore(kind, &mut doc, stored) {
        e.0.extend(v.0);
    }
    let out = match kind {
        Kind::Connection => {
            let mut c: Connection = from_value(doc)?;
            if let Some(old) = stored.and_then(|s| serde_json::from_value(s.clone()).ok()) {
                c.keep_masked_secrets_from(&old);
            }
            if c.has_masked_secret() {
                e.add(
                    "",
                    format!("A secret reads '{MASK}' but there is no stored value to keep: send the real value"),
                );
            }
            if let Err(v) = c.validate() {
                e.0.extend(v.0);
            }
            to_value(&c)?
        }
        Kind::Export => {
            let x: Export = from_value(doc)?;
            if let Err(v) = x.validate() {
                e.0.extend(v.0);
            }
            if let Some(c) = &x.connection_id {
                if !exists(sluice, Kind::Connection, c).await? {
                    e.add("_connectionId", format!("Connection not found: {c}"));
                }
            }
            check_script_references(sluice, &x, &mut e).await?;
            to_value(&x)?
        }
        Kind::Import => {
            let x: Import = from_value(doc)?;
            if let Err(v) = x.validate() {
                e.0.extend(v.0);
            }
            if !x.connection_id.is_empty()
                && !exists(sluice, Kind::Connection, &x.connection_id).await?
            {
                e.add(
                    "_connectionId",
                    format!("Connection not found: {}", x.connection_id),
                );
            }
            check_script_references(sluice, &x, &mut e).await?;
            to_value(&x)?
        }
        Kind::Flow => {
            let f: Flow = from_value(doc)?;
            if let Err(v) = f.validate() {
                e.0.extend(v.0);
            }
            check_flow_references(sluice, &f, &mut e).await?;
            check_script_references(sluice, &f, &mut e).await?;
            to_value(&f)?
        }
        Kind::Integration => {
            let i: Integration = from_value(doc)?;
            if let Err(v) = i.validate() {
                e.0.extend(v.0);
            }
            to_value(&i)?
        }
        Kind::Script => {
            let x: Script = from_value(doc)?;
            if let Err(v) = x.validate() {
                e.0.extend(v.0);
            }
            to_value(&x)?
        }
    };
    e.into_result()
        .map_err(|v| ApiError::from(Error::from(v)))?;
    Ok(out)
}

/// Every script the definition's hooks name is stored.
async fn check_script_references(
    sluice: &Sluice,
    d: &impl UsesScripts,
    e: &mut ValidationErrors,
) -> ApiResult<()> {
    for (field, r) in d.script_refs() {
        if !r.script_id.is_empty() && !exists(sluice, Kind::Script, &r.script_id).await? {
            e.add(
                format!("{field}._scriptId"),
                format!("Script not found: {}", r.script_id),
            );
        }
    }
    Ok(())
}

async fn check_flow_references(
    sluice: &Sluice,
    f: &Flow,
    e: &mut ValidationErrors,
) -> ApiResult<()> {
    for (i, g) in f.page_generators.iter().enumerate() {
        if !g.export_id.is_empty() && !exists(sluice, Kind::Export, &g.export_id).await? {
            e.add(
                format!("pageGenerators[{i}]._exportId"),
                format!("Export not found: {}", g.export_id),
            );
        }
    }
    for step in f.steps().iter() {
        let p = step.processor;
        let Some(id) = p.target_id().filter(|id| !id.is_empty()) else {
            continue;
        };
        let kind = match p.kind {
            ProcessorType::Import => Kind::Import,
            ProcessorType::Export => Kind::Export,
        };
        if !exists(sluice, kind, id).await? {
            e.add(
                format!("{}.{}", step.field, p.target_field()),
                format!("{} not found: {id}", kind.label()),
            );
        }
    }
    for (i, id) in f.run_next_flow_ids.iter().enumerate() {
        if id != &f.id && !exists(sluice, Kind::Flow, id).await? {
            e.add(
                format!("_runNextFlowIds[{i}]"),
                format!("Flow not found: {id}"),
            );
        }
    }
    if !f.run_next_flow_ids.is_empty() && !f.id.is_empty() {
        // The stored chains, with this flow's as it is about to be saved.
        let mut chains: HashMap<String, Vec<String>> = HashMap::new();
        for d in sluice.store.list_definitions(Kind::Flow).await? {
            if let Ok(stored) = serde_json::from_value::<Flow>(d) {
                chains.insert(stored.id, stored.run_next_flow_ids);
            }
        }
        chains.insert(f.id.clone(), f.run_next_flow_ids.clone());
        let next = |id: &str| chains.get(id).map(Vec::as_slice);
        if let Some(cycle) = chain_cycle(&f.id, next) {
            e.add("_runNextFlowIds", chain_loop_message(&cycle));
        }
    }
    Ok(())
}

/// Appends an audit entry with the top-level fields that changed (secrets masked).
pub async fn audit(
    sluice: &Sluice,
    kind: Kind,
    id: &str,
    action: &str,
    actor: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> ApiResult<()> {
    let fields = |v: Option<&Value>, masked: bool| -> Map<String, Value> {
        let v = v.map(|v| if masked { present(kind, v) } else { v.clone() });
        match v {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        }
    };
    // Changes are found on the raw documents (so a new secret shows as a change) but
    // recorded with secrets masked.
    let (raw_old, raw_new) = (fields(old, false), fields(new, false));
    let (shown_old, shown_new) = (fields(old, true), fields(new, true));
    let mut changes = Map::new();
    for key in raw_old.keys().chain(raw_new.keys()) {
        if key == "lastModified" || changes.contains_key(key) {
            continue;
        }
        if raw_old.get(key) != raw_new.get(key) {
            changes.insert(
                key.clone(),
                serde_json::json!({ "oldValue": shown_old.get(key), "newValue": shown_new.get(key) }),
            );
        }
    }
    let entry = AuditEntry {
        id: new_id(),
        resource_type: kind,
        resource_id: id.to_string(),
        action: action.to_string(),
        time: sluice.clock.now(),
        actor: actor.to_string(),
        changes: Value::Object(changes),
    };
    sluice.store.append_audit(&entry).await?;
    Ok(())
}

async fn reschedule_stored(sluice: &Sluice, doc: &Value) -> ApiResult<()> {
    let flow: Flow = serde_json::from_value(doc.clone()).map_err(anyhow::Error::from)?;
    schedule::reschedule(sluice, &flow).await?;
    Ok(())
}

fn now_value(sluice: &Sluice) -> Value {
    Value::String(sluice_model::time::format(&sluice.clock.now()))
}

pub async fn create(
    sluice: &Sluice,
    kind: Kind,
    mut doc: Map<String, Value>,
    actor: &str,
) -> ApiResult<Value> {
    let id = match doc.get("_id") {
        None => new_id(),
        Some(Value::String(s)) if s.is_empty() => new_id(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::validation(Some("_id".into()), "must be a string")),
    };
    if let Some(why) = sluice_model::validate::id_problem(&id) {
        return Err(ApiError::validation(Some("_id".into()), why));
    }
    if exists(sluice, kind, &id).await? {
        return Err(ApiError::conflict(format!(
            "{} already exists: {id}",
            kind.label()
        )));
    }
    let now = now_value(sluice);
    doc.insert("_id".into(), Value::String(id.clone()));
    doc.insert("createdAt".into(), now.clone());
    doc.insert("lastModified".into(), now);
    let doc = normalize(sluice, kind, Value::Object(doc), None).await?;
    sluice.store.put_definition(kind, &id, &doc).await?;
    if kind == Kind::Flow {
        reschedule_stored(sluice, &doc).await?;
    }
    audit(sluice, kind, &id, "create", actor, None, Some(&doc)).await?;
    Ok(doc)
}

/// PUT: the fields given replace those stored (top-level merge), then the whole is checked.
pub async fn update(
    sluice: &Sluice,
    kind: Kind,
    id: &str,
    changes: Map<String, Value>,
    actor: &str,
) -> ApiResult<Value> {
    let stored = load(sluice, kind, id).await?;
    if let Some(given) = changes.get("_id") {
        if given.as_str() != Some(id) {
            return Err(ApiError::validation(
                Some("_id".into()),
                format!("does not match the id in the path ({id})"),
            ));
        }
    }
    let mut merged = stored.as_object().cloned().unwrap_or_default();
    for (k, v) in changes {
        if k == "createdAt" {
            continue; // creation time is the store's, not the client's
        }
        merged.insert(k, v);
    }
    merged.insert("_id".into(), Value::String(id.to_string()));
    merged.insert("lastModified".into(), now_value(sluice));
    let doc = normalize(sluice, kind, Value::Object(merged), Some(&stored)).await?;
    sluice.store.put_definition(kind, id, &doc).await?;
    if kind == Kind::Flow {
        reschedule_stored(sluice, &doc).await?;
    }
    audit(sluice, kind, id, "update", actor, Some(&stored), Some(&doc)).await?;
    Ok(doc)
}

/// Who still uses the definition, if anyone (then it may not be deleted).
async fn used_by(sluice: &Sluice, kind: Kind, id: &str) -> ApiResult<Option<String>> {
    let mut users = Vec::new();
    match kind {
        Kind::Connection => {
            for k in [Kind::Export, Kind::Import] {
                for d in sluice.store.list_definitions(k).await? {
                    if d.get("_connectionId").and_then(Value::as_str) == Some(id) {
                        users.push(format!("{} {}", k.label().to_lowercase(), doc_id(&d)));
                    }
                }
            }
        }
        Kind::Export | Kind::Import => {
            for d in sluice.store.list_definitions(Kind::Flow).await? {
                let Ok(f) = serde_json::from_value::<Flow>(d.clone()) else {
                    continue;
                };
                if flow_uses(&f, kind, id) {
                    users.push(format!("flow {}", f.id));
                }
            }
        }
        Kind::Flow => {
            // A flow another flow chains to: deleting it would leave that chain pointing at
            // nothing (the run after it would fail to start, silently but for a log line).
            for d in sluice.store.list_definitions(Kind::Flow).await? {
                let Ok(f) = serde_json::from_value::<Flow>(d.clone()) else {
                    continue;
                };
                if f.id != id && f.run_next_flow_ids.iter().any(|n| n == id) {
                    users.push(format!("flow {} (_runNextFlowIds)", f.id));
                }
            }
        }
        Kind::Script => users.extend(script_users(sluice, id).await?),
        Kind::Integration => {}
    }
    Ok((!users.is_empty()).then(|| users.join(", ")))
}

/// The exports, imports and flows whose hooks call script `id`, as "export e1".
pub async fn script_users(sluice: &Sluice, id: &str) -> ApiResult<Vec<String>> {
    let mut users = Vec::new();
    for kind in [Kind::Export, Kind::Import, Kind::Flow] {
        for d in sluice.store.list_definitions(kind).await? {
            let uses = match kind {
                Kind::Export => {
                    serde_json::from_value::<Export>(d.clone()).is_ok_and(|x| x.uses_script(id))
                }
                Kind::Import => {
                    serde_json::from_value::<Import>(d.clone()).is_ok_and(|x| x.uses_script(id))
                }
                _ => serde_json::from_value::<Flow>(d.clone()).is_ok_and(|x| x.uses_script(id)),
            };
            if uses {
                users.push(format!("{} {}", kind.label().to_lowercase(), doc_id(&d)));
            }
        }
    }
    Ok(users)
}

pub fn doc_id(d: &Value) -> &str {
    d.get("_id").and_then(Value::as_str).unwrap_or("")
}

/// Does the flow use the export or import `id`?
pub fn flow_uses(f: &Flow, kind: Kind, id: &str) -> bool {
    match kind {
        Kind::Export => {
            f.page_generators.iter().any(|g| g.export_id == id)
                || f.steps().iter().any(|s| {
                    s.processor.kind == ProcessorType::Export
                        && s.processor.export_id.as_deref() == Some(id)
                })
        }
        Kind::Import => f.steps().iter().any(|s| {
            s.processor.kind == ProcessorType::Import
                && s.processor.import_id.as_deref() == Some(id)
        }),
        _ => false,
    }
}

pub async fn delete(sluice: &Sluice, kind: Kind, id: &str, actor: &str) -> ApiResult<()> {
    let stored = load(sluice, kind, id).await?;
    if kind != Kind::Flow {
        // The running job first: it is what the user must wait for (or cancel).
        runs::unused_by_running_jobs(sluice, kind, id).await?;
    }
    if let Some(users) = used_by(sluice, kind, id).await? {
        return Err(ApiError::conflict(format!(
            "{} {id} is still used by {users}",
            kind.label()
        )));
    }
    if kind == Kind::Flow {
        // Held still: not while a job of it runs, nor while runs wait to start.
        runs::while_idle(sluice, id, || async {
            if let Some(waiting) = sluice.store.queued_runs(id, 1).await?.first() {
                return Err(Error::Conflict(format!(
                    "Flow {id} has runs waiting to start (the oldest a {} run queued {}); delete it once they have run",
                    waiting.kind.as_str(),
                    waiting.queued_at.to_rfc3339()
                )));
            }
            sluice.store.delete_definition(kind, id).await?;
            sluice.store.set_next_run(id, None).await?;
            Ok(())
        })
        .await?;
    } else {
        sluice.store.delete_definition(kind, id).await?;
    }
    audit(sluice, kind, id, "delete", actor, Some(&stored), None).await?;
    Ok(())
}

pub async fn list(sluice: &Sluice, kind: Kind) -> ApiResult<Vec<Value>> {
    let docs = sluice.store.list_definitions(kind).await?;
    Ok(docs.iter().map(|d| present(kind, d)).collect())
}

// ---- handlers, one set per kind (paths and operation ids are literal for the OpenAPI document)

type St = State<Arc<Sluice>>;

macro_rules! crud {
    ($module:ident, $kind:expr, $ty:ty, $tag:literal, $collection:literal, $item:literal,
     $changes:literal, $list:literal, $create:literal, $get:literal, $update:literal,
     $delete:literal) => {
        pub mod $module {
            use super::*;

            #[utoipa::path(get, path = $collection, tag = $tag, operation_id = $list,
                responses((status = 200, description = "All of this kind, ordered by _id", body = Vec<$ty>)))]
            pub async fn list_all(State(s): St) -> ApiResult<Json<Vec<Value>>> {
                Ok(Json(list(&s, $kind).await?))
            }

            #[utoipa::path(post, path = $collection, tag = $tag, operation_id = $create,
                request_body = $ty,
                responses((status = 201, description = "Created, with _id, createdAt and lastModified (secrets masked)", body = $ty),
                          (status = 409, description = "conflict: the _id exists", body = ErrorBody)))]
            pub async fn create_one(
                State(s): St,
                Extension(caller): Extension<Caller>,
                body: Body,
            ) -> ApiResult<(StatusCode, Json<Value>)> {
                let doc = create(&s, $kind, body.object()?, &caller.0).await?;
                Ok((StatusCode::CREATED, Json(present($kind, &doc))))
            }

            #[utoipa::path(get, path = $item, tag = $tag, operation_id = $get,
                params(("id" = String, Path, description = "_id")),
                responses((status = 200, description = "The definition (secrets masked)", body = $ty)))]
            pub async fn get_one(State(s): St, Ids(id): Ids<String>) -> ApiResult<Json<Value>> {
                Ok(Json(present($kind, &load(&s, $kind, &id).await?)))
            }

            #[utoipa::path(put, path = $item, tag = $tag, operation_id = $update,
                params(("id" = String, Path, description = "_id")),
                request_body(content = ref($changes), description = "The fields to replace; the rest stay as stored"),
                responses((status = 200, description = "Updated (fields given replace those stored)", body = $ty)))]
            pub async fn update_one(
                State(s): St,
                Extension(caller): Extension<Caller>,
                Ids(id): Ids<String>,
                body: Body,
            ) -> ApiResult<Json<Value>> {
                let doc = update(&s, $kind, &id, body.object()?, &caller.0).await?;
                Ok(Json(present($kind, &doc)))
            }

            #[utoipa::path(delete, path = $item, tag = $tag, operation_id = $delete,
                params(("id" = String, Path, description = "_id")),
                responses((status = 204, description = "Deleted"),
                          (status = 409, description = "conflict: still in use (the message names the users)", body = ErrorBody)))]
            pub async fn delete_one(
                State(s): St,
                Extension(caller): Extension<Caller>,
                Ids(id): Ids<String>,
            ) -> ApiResult<StatusCode> {
                delete(&s, $kind, &id, &caller.0).await?;
                Ok(StatusCode::NO_CONTENT)
            }

            pub fn routes() -> axum::Router<Arc<Sluice>> {
                use axum::routing::get;
                axum::Router::new()
                    .route($collection, get(list_all).post(create_one))
                    .route($item, get(get_one).put(update_one).delete(delete_one))
            }
        }
    };
}

crud!(
    connections,
    Kind::Connection,
    Connection,
    "connections",
    "/connections",
    "/connections/{id}",
    "#/components/schemas/ConnectionChanges",
    "listConnections",
    "createConnection",
    "getConnection",
    "updateConnection",
    "deleteConnection"
);
crud!(
    exports,
    Kind::Export,
    Export,
    "exports",
    "/exports",
    "/exports/{id}",
    "#/components/schemas/ExportChanges",
    "listExports",
    "createExport",
    "getExport",
    "updateExport",
    "deleteExport"
);
crud!(
    imports,
    Kind::Import,
    Import,
    "imports",
    "/imports",
    "/imports/{id}",
    "#/components/schemas/ImportChanges",
    "listImports",
    "createImport",
    "getImport",
    "updateImport",
    "deleteImport"
);
crud!(
    integrations,
    Kind::Integration,
    Integration,
    "integrations",
    "/integrations",
    "/integrations/{id}",
    "#/components/schemas/IntegrationChanges",
    "listIntegrations",
    "createIntegration",
    "getIntegration",
    "updateIntegration",
    "deleteIntegration"
);
crud!(
    scripts,
    Kind::Script,
    Script,
    "scripts",
    "/scripts",
    "/scripts/{id}",
    "#/components/schemas/ScriptChanges",
    "listScripts",
    "createScript",
    "getScript",
    "updateScript",
    "deleteScript"
);
