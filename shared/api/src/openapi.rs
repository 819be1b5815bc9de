//! `GET /openapi.json`: generated from the handlers' `#[utoipa::path]` attributes.

use crate::routes::{definitions as d, flows, jobs};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice flows API", description = "Flows, their parts, runs and jobs."),
    paths(
        flows::list_flows, flows::create_flow, flows::get_flow, flows::update_flow,
        flows::delete_flow, flows::run_flow, flows::latest_jobs, flows::flow_audit,
        flows::dependencies, flows::descendants, flows::template, flows::import_template,
        flows::last_export_date_time,
        d::connections::list_all, d::connections::create_one, d::connections::get_one,
        d::connections::update_one, d::connections::delete_one,
        d::exports::list_all, d::exports::create_one, d::exports::get_one,
        d::exports::update_one, d::exports::delete_one,
        d::imports::list_all, d::imports::create_one, d::imports::get_one,
        d::imports::update_one, d::imports::delete_one,
        d::integrations::list_all, d::integrations::create_one, d::integrations::get_one,
        d::integrations::update_one, d::integrations::delete_one,
        jobs::get_job, jobs::job_errors, jobs::retry_job, jobs::cancel_job,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
