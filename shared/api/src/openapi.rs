//! `GET /openapi.json`: OpenAPI 3.1, generated from the handlers' `#[utoipa::path]`
//! attributes and the model's serde types (their `ToSchema` derives), so the document
//! cannot drift from what the API reads and writes. [`Conventions`] adds what every
//! operation shares, from what the operation is: the bearer key (all but the open routes)
//! with its 401, 400/404 for path ids, 400 for query strings, 400/413/415 for bodies, 500,
//! each error answer the one `ErrorBody` component; and the `*Changes` schemas PUT takes.

use crate::routes::{definitions as d, flows, jobs, listeners, meta, oauth};
use sluice_model::api::ErrorCode;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, RefOr, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice flows API",
        description = "Flows, their parts (connections, exports, imports, integrations, scripts), runs, jobs and job errors. Field names follow integrator.io's flows API. Every route but /healthz, /openapi.json the webhook listeners (`POST /exports/{id}/data`, verified by each export's `webhook`) and the OAuth2 callback (`GET /oauth2/callback`, checked by its one-time `state`) needs `Authorization: Bearer <key>`; every error answer is `{\"errors\":[{code, message, field?}]}`; times are RFC 3339 UTC with milliseconds.",
        license(name = "Apache-2.0")
    ),
    paths(
        meta::health, meta::openapi,
        flows::list_flows, flows::create_flow, flows::get_flow, flows::update_flow,
        flows::delete_flow, flows::run_flow, flows::preview_flow, flows::latest_jobs, flows::flow_audit,
        flows::dependencies, flows::descendants, flows::template, flows::import_template,
        flows::import_template_alias, flows::last_export_date_time,
        d::connections::list_all, d::connections::create_one, d::connections::get_one,
        d::connections::update_one, d::connections::delete_one,
        d::exports::list_all, d::exports::create_one, d::exports::get_one,
        d::exports::update_one, d::exports::delete_one,
        d::imports::list_all, d::imports::create_one, d::imports::get_one,
        d::imports::update_one, d::imports::delete_one,
        d::integrations::list_all, d::integrations::create_one, d::integrations::get_one,
        d::integrations::update_one, d::integrations::delete_one,
        d::scripts::list_all, d::scripts::create_one, d::scripts::get_one,
        d::scripts::update_one, d::scripts::delete_one,
        jobs::list_jobs, jobs::get_job, jobs::job_errors, jobs::get_error, jobs::update_error,
        jobs::resolve_errors, jobs::unresolve_errors, jobs::retry_job, jobs::cancel_job,
        listeners::deliver, listeners::deliver_to_secret_url,
        oauth::authorize, oauth::callback,
    ),
    components(schemas(sluice_model::api::ErrorBody, sluice_model::Integration, sluice_model::Script)),
    modifiers(&Conventions),
    tags(
        (name = "flows", description = "Flows: CRUD, runs, jobs, audit, templates"),
        (name = "connections", description = "How to reach each system"),
        (name = "exports", description = "Where records come from (and lookups)"),
        (name = "imports", description = "Where records go"),
        (name = "integrations", description = "Groupings of flows"),
        (name = "scripts", description = "JavaScript that hooks, filters and transforms call"),
        (name = "jobs", description = "Runs and the records that failed in them"),
        (name = "meta", description = "Health and this document")
    )
)]
pub struct ApiDoc;

/// The definition kinds whose PUT takes `<Name>Changes`: the schema with nothing required.
pub const DEFINITIONS: [&str; 6] = [
    "Connection",
    "Export",
    "Import",
    "Flow",
    "Integration",
    "Script",
];

struct Conventions;

/// The error answers, by status, and when each applies.
fn error_response(code: ErrorCode) -> (String, RefOr<utoipa::openapi::Response>) {
    let description = match code {
        ErrorCode::ValidationError => "validation_error: a field (named in `field`) is wrong",
        ErrorCode::Unauthorized => "unauthorized: no or an unknown bearer key",
        ErrorCode::NotFound => "not_found: no such resource",
        ErrorCode::MethodNotAllowed => "method_not_allowed",
        ErrorCode::Conflict => "conflict",
        ErrorCode::PayloadTooLarge => "payload_too_large: the body is over 1 MiB",
        ErrorCode::UnsupportedMediaType => "unsupported_media_type: the body is not JSON",
        ErrorCode::Internal => "internal: see the service logs",
    };
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(RefOr::<Schema>::Ref(
                utoipa::openapi::Ref::from_schema_name("ErrorBody"),
            ))),
        )
        .build();
    (code.status().to_string(), RefOr::T(response))
}

impl Conventions {
    fn operation(open: bool, op: &mut Operation) {
        let params = op.parameters.as_deref().unwrap_or_default();
        let has = |place: ParameterIn| {
            params
                .iter()
                .any(|p| std::mem::discriminant(&p.parameter_in) == std::mem::discriminant(&place))
        };
        let mut codes = Vec::new();
        if !open {
            op.security = Some(vec![SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
            codes.extend([ErrorCode::Unauthorized, ErrorCode::Internal]);
        }
        if has(ParameterIn::Path) {
            codes.extend([ErrorCode::ValidationError, ErrorCode::NotFound]);
        }
        if has(ParameterIn::Query) {
            codes.push(ErrorCode::ValidationError);
        }
        if op.request_body.is_some() {
            codes.extend([
                ErrorCode::ValidationError,
                ErrorCode::PayloadTooLarge,
                ErrorCode::UnsupportedMediaType,
            ]);
        }
        for code in codes {
            let (status, response) = error_response(code);
            op.responses.responses.entry(status).or_insert(response);
        }
    }
}

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        for name in DEFINITIONS {
            if let Some(RefOr::T(Schema::Object(full))) = components.schemas.get(name) {
                let mut changes = full.clone();
                changes.required.clear();
                changes.description = Some(format!(
                    "Fields of {name} to replace (PUT): any subset; the others stay as stored."
                ));
                changes.example = None;
                components
                    .schemas
                    .insert(format!("{name}Changes"), RefOr::T(Schema::Object(changes)));
            }
        }
        openapi.paths.paths.iter_mut().for_each(|(path, item)| {
            let open = meta::OPEN_PATHS.contains(&path.as_str())
                || listeners::PATHS.contains(&path.as_str())
                || path == oauth::CALLBACK_PATH;
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                Self::operation(open, op);
            }
        });
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    #[test]
    fn dump() {
        if let Ok(p) = std::env::var("SLUICE_DUMP_OPENAPI") {
            std::fs::write(p, serde_json::to_string_pretty(&super::document()).unwrap()).unwrap();
        }
    }
}
