//! `sluice preview`: what each step of a flow would do with sample records, printed as JSON,
//! with nothing sent, stored or counted. The bundle goes into a store in memory, gone when
//! the command ends; `sluice_core::preview` does the work.

use super::validate::{read_json, valid_bundle};
use anyhow::Context;
use futures::StreamExt;
use serde_json::Value;
use sluice_core::ports::secrets::EnvSecrets;
use sluice_core::stages::trigger::readers::{format_for_name, stream_bytes, Read};
use sluice_embedded::LocalRuntime;
use sluice_model::preview::{PreviewRequest, SampleReply};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

pub struct PreviewArgs<'a> {
    pub bundle: &'a Path,
    pub records: &'a Path,
    pub flow: Option<&'a str>,
    pub limit: usize,
    pub reply: Option<&'a Path>,
}

pub async fn run(args: PreviewArgs<'_>) -> anyhow::Result<ExitCode> {
    let (bundle, flow_id) = valid_bundle(args.bundle, args.flow, "previewed")?;
    let reply = match args.reply {
        Some(path) => Some(
            serde_json::from_value::<SampleReply>(read_json(path)?).with_context(|| {
                format!(
                    "{}: not a reply ({{status, headers, body}})",
                    path.display()
                )
            })?,
        ),
        None => None,
    };
    let request = PreviewRequest {
        records: read_records(args.records, args.limit).await?,
        limit: Some(args.limit),
        reply,
    };
    let blobs = tempfile::tempdir()?;
    let mut runtime = LocalRuntime::in_memory(blobs.path(), Arc::new(EnvSecrets))?;
    let sluice = runtime.sluice();
    sluice.store_bundle(&bundle).await?;
    let preview = sluice_core::preview::preview(&sluice, &flow_id, &request).await;
    runtime.stop().await;
    println!("{}", serde_json::to_string_pretty(&preview?)?);
    Ok(ExitCode::SUCCESS)
}

/// The first `limit` records of the file, read as `sluice run --records` reads it.
async fn read_records(path: &Path, limit: usize) -> anyhow::Result<Vec<Value>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let format = format_for_name(&path.to_string_lossy());
    let mut items = stream_bytes(bytes, &format);
    let mut records = Vec::new();
    while let Some(item) = items.next().await {
        if records.len() >= limit {
            break;
        }
        match item.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))? {
            Read::Record(v) => records.push(v),
            Read::Unreadable(u) => anyhow::bail!("{} {}: {}", path.display(), u.at, u.message),
        }
    }
    Ok(records)
}
