//! `sluice clean`: purges the local store's jobs older than their retention period (the
//! flow's `retentionDays`, else `SLUICE_RETENTION_DAYS`, 30 days), with their errors and
//! delivery ledger; `--dry-run` says what would go and deletes nothing. The same clean-up
//! `sluice dev` runs once a day (`sluice_core::runs::clean`).

use sluice_core::runs::clean::{clean, CleanReport, CleanRequest, CleanedJob};
use sluice_core::Settings;
use sluice_embedded::LocalRuntime;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(
    data: &Path,
    request: CleanRequest,
    settings: Settings,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let runtime = LocalRuntime::open(data, settings)?;
    let report = clean(&runtime.sluice(), &request).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", in_words(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn line(j: &CleanedJob) -> String {
    format!(
        "  {}  {:<22} created {}  {} error(s){}\n",
        j.job_id,
        j.flow_id,
        sluice_model::time::format(&j.created_at),
        j.errors,
        j.kept_because
            .as_deref()
            .map(|why| format!("  kept: {why}"))
            .unwrap_or_default()
    )
}

fn in_words(report: &CleanReport) -> String {
    let mut out = String::new();
    let errors: usize = report.purged.iter().map(|j| j.errors).sum();
    if report.dry_run {
        out.push_str(&format!(
            "dry run: would delete {} job(s) with {errors} error(s) and their delivery-ledger entries; nothing was deleted\n",
            report.purged.len()
        ));
    } else {
        let d = report.deleted;
        out.push_str(&format!(
            "deleted {} job(s), {} error(s), {} delivery-ledger entr(y/ies)\n",
            d.jobs, d.errors, d.ledger_entries
        ));
    }
    report.purged.iter().for_each(|j| out.push_str(&line(j)));
    if !report.kept.is_empty() {
        out.push_str(&format!(
            "kept {} job(s) past their retention that are still needed:\n",
            report.kept.len()
        ));
        report.kept.iter().for_each(|j| out.push_str(&line(j)));
    }
    out
}
