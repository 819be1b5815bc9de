//! `sluice jobs`, `sluice errors JOB`, `sluice retry JOB`: the jobs and errors of the local
//! store (`--data`), read through the same Store queries as `GET /jobs` and
//! `GET /jobs/{id}/errors`, and a retry of failed records on the local runtime.

use anyhow::Context;
use sluice_api::routes::errors_csv;
use sluice_core::ports::{ErrorQuery, JobQuery};
use sluice_core::{runs, Settings};
use sluice_embedded::LocalRuntime;
use sluice_model::{JobError, JobStatus};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// Which jobs `sluice jobs` lists.
pub struct JobsFilter {
    pub flow: Option<String>,
    pub status: Option<JobStatus>,
    pub limit: usize,
}

pub async fn jobs(data: &Path, filter: JobsFilter, as_json: bool) -> anyhow::Result<ExitCode> {
    let runtime = LocalRuntime::open(data, sluice_embedded::local_settings())?;
    let query = JobQuery {
        flow_id: filter.flow,
        status: filter.status,
        limit: filter.limit.max(1),
        ..Default::default()
    };
    let page = runtime.sluice().store.find_jobs(&query).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&page.items)?);
        return Ok(ExitCode::SUCCESS);
    }
    if page.items.is_empty() {
        println!("no jobs in {}", data.display());
    }
    for j in &page.items {
        println!(
            "{}  {:<22} {:<21} {:<8} success {:<6} error {:<6} ignored {:<6} {}",
            j.id,
            j.flow_id,
            j.status.as_str(),
            j.trigger.as_str(),
            j.num_success,
            j.num_error,
            j.num_ignore,
            j.created_at
                .map(|t| sluice_model::time::format(&t))
                .unwrap_or_default()
        );
    }
    if page.next_cursor.is_some() {
        println!("... more: raise --limit");
    }
    Ok(ExitCode::SUCCESS)
}

/// How `sluice errors` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorsOutput {
    Text,
    Json,
    Csv,
}

pub async fn errors(
    data: &Path,
    job_id: &str,
    mut query: ErrorQuery,
    output: ErrorsOutput,
) -> anyhow::Result<ExitCode> {
    let runtime = LocalRuntime::open(data, sluice_embedded::local_settings())?;
    let store = runtime.sluice().store.clone();
    store
        .get_job(job_id)
        .await?
        .with_context(|| format!("no job {job_id} in {}", data.display()))?;
    let mut all: Vec<JobError> = Vec::new();
    query.limit = 1000;
    loop {
        let page = store.find_errors(job_id, &query).await?;
        all.extend(page.items);
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    match output {
        ErrorsOutput::Json => println!("{}", serde_json::to_string_pretty(&all)?),
        ErrorsOutput::Csv => {
            let mut w = errors_csv::Writer::new();
            for e in &all {
                w.write(e).map_err(|e| anyhow::anyhow!("{:?}", e.errors))?;
            }
            print!(
                "{}",
                w.finish().map_err(|e| anyhow::anyhow!("{:?}", e.errors))?
            );
        }
        ErrorsOutput::Text => {
            if all.is_empty() {
                println!("job {job_id} has no errors that match");
            }
            for e in &all {
                let step = match (&e.step_name, e.processor_index) {
                    (_, -1) => "export".to_string(),
                    (Some(name), i) => format!("step {i} ({name})"),
                    (None, i) => format!("step {i}"),
                };
                let resolved = if e.resolved { "  [resolved]" } else { "" };
                println!("{}  {step}  {}: {}{resolved}", e.id, e.code, e.message);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `sluice retry` retries and how it reports.
pub struct Retry {
    pub job: String,
    /// Only these errors; every unresolved one when empty.
    pub errors: Vec<String>,
    pub as_json: bool,
    pub timeout: u64,
}

pub async fn retry(data: &Path, retry: Retry, settings: Settings) -> anyhow::Result<ExitCode> {
    let runtime = LocalRuntime::open(data, settings)?;
    let sluice = runtime.sluice();
    let chosen = (!retry.errors.is_empty()).then_some(retry.errors);
    let started_at = Instant::now();
    let started = runs::retry_errors(&sluice, &retry.job, chosen).await?;
    eprintln!(
        "retrying the errors of job {}: job {}",
        retry.job, started.job_id
    );
    super::run::follow(
        runtime,
        &started.job_id,
        super::run::Progress::new(started_at, None),
        retry.as_json,
        retry.timeout,
    )
    .await
}
