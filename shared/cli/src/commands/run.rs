//! `sluice run`: a flow of a bundle, on the local runtime, with progress and a summary. A job
//! of the flow whose process was killed is resumed (or, with `--new`, canceled first).

use super::validate::parse_bundle;
use anyhow::Context;
use serde_json::json;
use sluice_core::runs::start_run;
use sluice_core::{Settings, Sluice};
use sluice_embedded::LocalRuntime;
use sluice_model::{FileType, Job, JobStatus, RunKind, RunRequest, RunSource};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What `sluice run` was asked to do.
pub struct RunArgs<'a> {
    pub bundle: &'a Path,
    pub flow: Option<&'a str>,
    pub records: Option<&'a Path>,
    /// The records file's format, when its name does not say.
    pub format: Option<FileType>,
    pub data: &'a Path,
    pub as_json: bool,
    pub timeout: u64,
    /// Start a fresh job even if one of the flow was interrupted (it is canceled).
    pub new: bool,
    pub settings: Settings,
}

pub async fn run(args: RunArgs<'_>) -> anyhow::Result<ExitCode> {
    let bundle = parse_bundle(args.bundle)?;
    if let Err(errors) = bundle.validate() {
        for e in &errors.0 {
            eprintln!("{}: {}", e.field, e.message);
        }
        anyhow::bail!(
            "{} is not valid ({} problem(s)); nothing was run",
            args.bundle.display(),
            errors.0.len()
        );
    }
    let flow_id = match args.flow {
        Some(id) => bundle
            .flow(id)
            .map(|f| f.id.clone())
            .with_context(|| format!("no flow '{id}' in {}", args.bundle.display()))?,
        None => bundle
            .flows
            .first()
            .map(|f| f.id.clone())
            .with_context(|| format!("{} has no flows", args.bundle.display()))?,
    };
    let runtime = LocalRuntime::open(args.data, args.settings.clone())?;
    let sluice = runtime.sluice();
    sluice.store_bundle(&bundle).await?;
    let started_at = Instant::now();
    let (job_id, expected) = match resume_or_replace(&runtime, &flow_id, &args).await? {
        Some(job_id) => (job_id, None),
        None => (
            start(&runtime, &flow_id, &args).await?,
            args.records.and_then(|p| records_in(p, args.format)),
        ),
    };
    let progress = Progress::new(started_at, expected);
    follow(runtime, &job_id, progress, args.as_json, args.timeout).await
}

/// How many records a file given to `--records` holds, when its format makes that cheap to
/// know (one per line: NDJSON, or CSV after its header row); `None` for a JSON array.
fn records_in(path: &Path, format: Option<FileType>) -> Option<u64> {
    use std::io::Read;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let header = match (format, ext) {
        (Some(FileType::Ndjson), _) | (None, "ndjson" | "jsonl") => 0,
        (Some(FileType::Csv), _) | (None, "csv") => 1,
        _ => return None,
    };
    let mut file = std::fs::File::open(path).ok()?;
    let (mut buf, mut lines, mut last) = (vec![0u8; 1 << 16], 0u64, b'\n');
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    if last != b'\n' {
        lines += 1; // a last line without its newline
    }
    Some(lines.saturating_sub(header))
}

/// How often progress is written when stderr is not a terminal (a log, a pipe).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Progress on stderr: on a terminal one line rewritten in place as the job's counters move;
/// elsewhere a line every [`PROGRESS_EVERY`]. Each says records/s and, when the number of
/// records is known, the share done and the time left at the rate so far.
pub struct Progress {
    started: Instant,
    expected: Option<u64>,
    interactive: bool,
    last: Option<Instant>,
}

impl Progress {
    pub fn new(started: Instant, expected: Option<u64>) -> Self {
        Progress {
            started,
            expected,
            interactive: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            last: None,
        }
    }

    fn update(&mut self, j: &Job) {
        if !self.interactive && self.last.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let line = self.line(j);
        if self.interactive {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
    }

    fn line(&self, j: &Job) -> String {
        let done = j.num_success + j.num_error + j.num_ignore;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let mut line = format!("{}  {rate:.0} records/s", progress_line(j));
        if let Some(total) = self.expected.filter(|t| *t > 0) {
            let share = (done as f64 / total as f64).min(1.0);
            line.push_str(&format!("  {:.0}%", share * 100.0));
            if rate > 0.0 && done < total {
                let left = (total - done) as f64 / rate;
                line.push_str(&format!("  ETA {}", eta(left)));
            }
        }
        line
    }
}

fn eta(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Waits for a started job with progress on stderr, cancels it on a stop signal or after
/// `timeout` seconds, prints its summary and first errors (or both as JSON) and answers the
/// exit code: 0 completed, 2 completed with errors, 1 otherwise. `sluice retry` uses it too.
pub async fn follow(
    mut runtime: LocalRuntime,
    job_id: &str,
    mut progress: Progress,
    as_json: bool,
    timeout: u64,
) -> anyhow::Result<ExitCode> {
    let sluice = runtime.sluice();
    let started_at = progress.started;
    let interactive = progress.interactive;
    let progress = |j: &Job| progress.update(j);
    let finished = tokio::select! {
        waited = runtime.wait_for_job(job_id, Duration::from_secs(timeout), progress) => waited,
        signal = super::stop_signal() => Err(anyhow::anyhow!("stopped by {signal}")),
    };
    if finished.is_ok() {
        // After-run work (a chained flow) may go on; what is left at the end resumes in the
        // next `sluice run` of that flow or `sluice dev` on this data.
        let _ = runtime.wait_idle(Duration::from_secs(60)).await;
    }
    // Stopping waits for the workers, and for deliveries aborted by a cancel to free their
    // connection slots; it comes before the cancel, so no record of it goes out afterwards.
    runtime.stop().await;
    // Interrupted or out of time: close the job as canceled, which releases the flow's run
    // lock, so the next `sluice run` can start at once instead of finding the flow "currently
    // running" until the lock's lease runs out; its queued messages go, so it does not resume.
    if let Err(e) = finished {
        let message = format!(
            "{e:#}; records still in flight were not counted and may or may not have been delivered"
        );
        runtime.cancel(job_id, message).await?;
    }
    let job = sluice
        .store
        .get_job(job_id)
        .await?
        .context("the job is stored")?;
    if interactive {
        eprintln!();
    }
    report(&sluice, &job, started_at.elapsed(), as_json).await?;
    Ok(match job.status {
        JobStatus::Completed => ExitCode::SUCCESS,
        JobStatus::CompletedWithErrors => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

/// Takes over a job of the flow whose process was killed (its queued messages, its lock).
/// Without `--new` it is resumed: its id is returned. With `--new` it is canceled, so a
/// fresh run can start.
async fn resume_or_replace(
    runtime: &LocalRuntime,
    flow_id: &str,
    args: &RunArgs<'_>,
) -> anyhow::Result<Option<String>> {
    let interrupted = runtime.adopt(Some(flow_id)).await?;
    if args.new {
        for job in interrupted {
            let message = "replaced by a new run (sluice run --new); records not counted may or may not have been delivered".to_string();
            runtime.cancel(&job.id, message).await?;
            eprintln!("canceled interrupted job {} of flow {flow_id}", job.id);
        }
        return Ok(None);
    }
    let Some(job) = interrupted.into_iter().next() else {
        return Ok(None);
    };
    eprintln!(
        "resuming job {} of flow {flow_id} (interrupted; {} of {} pages done, {} records counted); --new starts a fresh job instead",
        job.id,
        job.num_pages_done,
        if job.paging_done { job.num_pages.to_string() } else { "?".into() },
        job.num_success + job.num_error + job.num_ignore
    );
    if let Some(path) = args.records {
        eprintln!(
            "  {} is not read again: the job goes on with the records it started with",
            path.display()
        );
    }
    Ok(Some(job.id))
}

/// Starts a fresh run; a refused one names the job running and why it cannot be taken over.
async fn start(
    runtime: &LocalRuntime,
    flow_id: &str,
    args: &RunArgs<'_>,
) -> anyhow::Result<String> {
    let sluice = runtime.sluice();
    let mut request = RunRequest::default();
    if let Some(path) = args.records {
        let (bucket, key) = runtime.stage_file(path).await?;
        request.source = Some(RunSource::File {
            bucket,
            key,
            name: path.display().to_string(),
            format: args.format,
        });
    }
    let started = match start_run(&sluice, flow_id, request, RunKind::Manual).await {
        Ok(started) => started.context("the run was queued behind a running one")?,
        Err(sluice_core::Error::Conflict(message)) => {
            anyhow::bail!("{message}{}", held_by(runtime, flow_id).await)
        }
        Err(e) => return Err(e.into()),
    };
    eprintln!("running flow {flow_id}: job {}", started.job_id);
    Ok(started.job_id)
}

/// Which process runs the flow's unfinished job, when another one on this data does.
async fn held_by(runtime: &LocalRuntime, flow_id: &str) -> String {
    let sluice = runtime.sluice();
    let Ok(Some(holder)) = sluice.store.lock_holder(flow_id).await else {
        return String::new();
    };
    match runtime.queue().other_runner_of(&holder.owner).await {
        Ok(Some(r)) => format!(
            "; it runs in sluice process {} on {}: stop that one, or wait for it to finish",
            r.pid, r.host
        ),
        _ => String::new(),
    }
}

async fn report(
    sluice: &Sluice,
    job: &Job,
    elapsed: Duration,
    as_json: bool,
) -> anyhow::Result<()> {
    let errors = sluice.store.list_errors(&job.id).await?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"job": job, "errors": errors}))?
        );
        return Ok(());
    }
    print_summary(job, elapsed);
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
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_file_of_lines_is_counted_and_progress_shows_share_and_eta() {
        let dir = tempfile::tempdir().unwrap();
        let ndjson = dir.path().join("r.ndjson");
        std::fs::write(&ndjson, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}").unwrap();
        assert_eq!(
            records_in(&ndjson, None),
            Some(3),
            "a last line without newline"
        );
        let csv = dir.path().join("r.txt");
        std::fs::write(&csv, "n\n1\n2\n").unwrap();
        assert_eq!(
            records_in(&csv, Some(FileType::Csv)),
            Some(2),
            "the header row"
        );
        let json = dir.path().join("r.json");
        std::fs::write(&json, "[1, 2]").unwrap();
        assert_eq!(records_in(&json, None), None, "a JSON array is not counted");

        let progress = Progress::new(Instant::now() - Duration::from_secs(10), Some(4000));
        let mut job = Job::new(
            "j".into(),
            "f".into(),
            sluice_model::RunKind::Manual,
            chrono::Utc::now(),
        );
        job.num_success = 1000;
        let line = progress.line(&job);
        assert!(line.contains("100 records/s"), "{line}");
        assert!(line.contains("25%  ETA 30s"), "{line}");
        assert!(!Progress::new(Instant::now(), None).line(&job).contains('%'));
    }
}
