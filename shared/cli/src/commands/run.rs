//! `sluice run`: a flow of a bundle, on the local runtime, with progress and a summary.

use super::validate::parse_bundle;
use anyhow::Context;
use serde_json::json;
use sluice_core::ports::Kind;
use sluice_core::runs::cancel_job;
use sluice_core::runs::start_run;
use sluice_core::Settings;
use sluice_embedded::LocalRuntime;
use sluice_model::{Job, JobStatus, RunSource};
use sluice_model::{RunKind, RunRequest, RunStarted};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub async fn run(
    bundle_path: &Path,
    flow: Option<&str>,
    records: Option<&Path>,
    data: &Path,
    as_json: bool,
    timeout: u64,
    settings: Settings,
) -> anyhow::Result<ExitCode> {
    let bundle = parse_bundle(bundle_path)?;
    if let Err(errors) = bundle.validate() {
        for e in &errors.0 {
            eprintln!("{}: {}", e.field, e.message);
        }
        anyhow::bail!(
            "{} is not valid ({} problem(s)); nothing was run",
            bundle_path.display(),
            errors.0.len()
        );
    }
    let flow_id = match flow {
        Some(id) => bundle
            .flow(id)
            .map(|f| f.id.clone())
            .with_context(|| format!("no flow '{id}' in {}", bundle_path.display()))?,
        None => bundle
            .flows
            .first()
            .map(|f| f.id.clone())
            .with_context(|| format!("{} has no flows", bundle_path.display()))?,
    };
    let runtime = LocalRuntime::open(data, settings)?;
    let sluice = runtime.sluice();
    for c in &bundle.connections {
        sluice
            .store
            .put_definition(Kind::Connection, &c.id, &json!(c))
            .await?;
    }
    for e in &bundle.exports {
        sluice
            .store
            .put_definition(Kind::Export, &e.id, &json!(e))
            .await?;
    }
    for i in &bundle.imports {
        sluice
            .store
            .put_definition(Kind::Import, &i.id, &json!(i))
            .await?;
    }
    for f in &bundle.flows {
        sluice
            .store
            .put_definition(Kind::Flow, &f.id, &json!(f))
            .await?;
    }
    let mut request = RunRequest::default();
    if let Some(path) = records {
        let (bucket, key) = runtime.stage_file(path).await?;
        request.source = Some(RunSource::S3Object { bucket, key });
    }
    let started_at = Instant::now();
    let started = start_run(&sluice, &flow_id, request, RunKind::Manual)
        .await?
        .context("the run was queued behind a running one")?;
    eprintln!("running flow {flow_id}: job {}", started.job_id);
    follow(runtime, &started, started_at, as_json, timeout).await
}

/// Waits for a started job with progress on stderr, cancels it on Ctrl-C or `timeout`,
/// prints its summary and first errors (or both as JSON) and answers the exit code:
/// 0 completed, 2 completed with errors, 1 otherwise.
pub async fn follow(
    mut runtime: LocalRuntime,
    started: &RunStarted,
    started_at: Instant,
    as_json: bool,
    timeout: u64,
) -> anyhow::Result<ExitCode> {
    let sluice = runtime.sluice();
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = |j: &Job| {
        let line = progress_line(j);
        if interactive {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    };
    let finished = tokio::select! {
        waited = runtime.wait_for_job(&started.job_id, Duration::from_secs(timeout), progress) => waited,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("stopped by Ctrl-C")),
    };
    if finished.is_ok() {
        runtime.wait_idle(Duration::from_secs(60)).await?;
    }
    // Stopping waits for the workers, and for deliveries aborted by a cancel to free their
    // connection slots; it comes before the cancel, so no record of it goes out afterwards.
    runtime.stop().await;
    // Interrupted or out of time: close the job as canceled, which releases the flow's run
    // lock, so the next `sluice run` can start at once instead of finding the flow "currently
    // running" until the lock's lease runs out.
    if let Err(e) = finished {
        let message = format!(
            "{e:#}; records still in flight were not counted and may or may not have been delivered"
        );
        cancel_job(&sluice, &started.job_id, message).await?;
    }
    let job = sluice
        .store
        .get_job(&started.job_id)
        .await?
        .context("the job is stored")?;
    if interactive {
        eprintln!();
    }
    let elapsed = started_at.elapsed();
    let errors = sluice.store.list_errors(&job.id).await?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"job": job, "errors": errors}))?
        );
    } else {
        print_summary(&job, elapsed);
        for e in errors.iter().take(10) {
            let at = if e.record_key.is_empty() {
                "export".to_string()
            } else {
                e.record_key.clone()
            };
            println!("  error {} at {}: {}", e.code, at, e.message);
        }
        if errors.len() > 10 {
            println!(
                "  ... and {} more (see the job's errors)",
                errors.len() - 10
            );
        }
    }
    Ok(match job.status {
        JobStatus::Completed => ExitCode::SUCCESS,
        JobStatus::CompletedWithErrors => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

fn progress_line(j: &Job) -> String {
    let pages = if j.paging_done {
        format!("{}/{}", j.num_pages_done, j.num_pages)
    } else {
        format!("{}/…", j.num_pages_done)
    };
    format!(
        "pages {pages}  success {}  error {}  ignored {}",
        j.num_success, j.num_error, j.num_ignore
    )
}

fn print_summary(job: &Job, elapsed: Duration) {
    let total = job.num_success + job.num_error + job.num_ignore;
    let rate = total as f64 / elapsed.as_secs_f64().max(0.001);
    println!("job {}  status {}", job.id, job.status.as_str());
    println!(
        "  records {total}: success {}, error {}, ignored {}",
        job.num_success, job.num_error, job.num_ignore
    );
    println!(
        "  pages {}  time {:.2}s  {:.0} records/s",
        job.num_pages,
        elapsed.as_secs_f64(),
        rate
    );
    if let Some(m) = &job.message {
        println!("  {}: {m}", job.status.as_str());
    }
}
