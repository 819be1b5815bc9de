//! upload: writes a page's rendered file to SFTP (host key checked, temporary name then
//! rename) or S3, honouring the overwrite policy.
//!
//! Idempotency: the ledger key `upload:{job}:{page}:{processor}` records the outcome. A
//! redelivered page reuses it. A claim left in flight (the process died mid-upload) is redone:
//! for the overwrite policy the same content lands under the same name; for skip/fail an
//! existing final file is taken as the crashed attempt's own work.

#[cfg(feature = "sftp")]
pub mod sftp;
#[cfg(all(test, feature = "sftp"))]
mod tests;

use super::deliver::not_sent;
use super::processor::{Processor, Target};
use crate::ports::LedgerState;
use crate::{Error, Result, Sluice, Stage};
use serde_json::{json, Value};
use sluice_model::{
    Exchange, FailureCode, ImportType, OverwritePolicy, Page, RecordState, RenderedRequest, Reply,
    StageMessage,
};
#[cfg(feature = "sftp")]
use std::time::Duration;

/// The upload stage's entry point (what its Lambda function runs).
pub const HANDLER: super::StageHandler =
    super::StageHandler::pages(Stage::Upload, |sluice, page| Box::pin(handle(sluice, page)));

pub async fn handle(sluice: &Sluice, mut page: Page) -> Result<()> {
    let p = Processor::load(sluice, &page.flow_id, page.processor_index).await?;
    let Target::Import(import) = &p.target else {
        return Err(Error::Internal(anyhow::anyhow!(
            "upload got a page for a lookup"
        )));
    };
    let Some(file) = page.file.clone() else {
        return forward(sluice, page).await;
    };
    let spec = import
        .sftp
        .as_ref()
        .or(import.s3.as_ref())
        .cloned()
        .ok_or_else(|| Error::invalid("sftp", "missing"))?;
    let key = crate::ports::ledger_key(
        Stage::Upload,
        &format!("{}:{}:{}", page.job_id, page.page_id, page.processor_index),
    );

    let claim = sluice
        .store
        .ledger_claim(&page.job_id, &key, sluice.clock.now());
    let outcome: Value = match claim.await? {
        LedgerState::Done(v) => v,
        LedgerState::JobCanceled => {
            for r in page.records.iter_mut().filter(|r| r.is_active()) {
                r.state = not_sent(&page.job_id);
            }
            return forward(sluice, page).await;
        }
        state => {
            let redo = state == LedgerState::InFlight;
            let v = match import.kind {
                ImportType::Sftp => write_sftp(sluice, &p, &file, spec.overwrite, redo).await?,
                _ => write_s3(sluice, &p, &spec, &file, redo).await?,
            };
            sluice.store.ledger_complete(&key, &v).await?;
            v
        }
    };

    let url = outcome["url"].as_str().unwrap_or_default().to_string();
    for r in page
        .records
        .iter_mut()
        .filter(|r| r.is_active() && file.record_keys.contains(&r.key))
    {
        match outcome["result"].as_str() {
            Some("written") => {
                r.exchange = Some(Exchange {
                    request: RenderedRequest {
                        method: "PUT".into(),
                        url: url.clone(),
                        headers: vec![],
                        body: None,
                    },
                    reply: Some(Reply {
                        status: 201,
                        headers: Default::default(),
                        body: json!({"path": outcome["path"], "bytes": outcome["bytes"]}),
                        attempts: 1,
                        elapsed_ms: 0,
                        bounded: None,
                    }),
                })
            }
            Some("skipped") => {
                r.state = RecordState::Ignored {
                    reason: format!(
                        "{} exists and the overwrite policy is skip",
                        outcome["path"].as_str().unwrap_or("")
                    ),
                }
            }
            _ => r.fail(
                serde_json::from_value(outcome["code"].clone()).unwrap_or(FailureCode::Upload),
                outcome["message"].as_str().unwrap_or("upload failed"),
            ),
        }
    }
    forward(sluice, page).await
}

async fn forward(sluice: &Sluice, page: Page) -> Result<()> {
    sluice
        .queue
        .send(Stage::Evaluate, StageMessage::Page(page))
        .await?;
    Ok(())
}

fn failed(code: FailureCode, message: String, url: &str) -> Value {
    json!({"result": "failed", "code": code, "message": message, "url": url})
}

/// Without the `sftp` feature (every Lambda function but upload): an sftp import cannot be
/// written here, and the message is retried, then dead-lettered as readable job errors.
#[cfg(not(feature = "sftp"))]
async fn write_sftp(
    _: &Sluice,
    _: &Processor,
    _: &sluice_model::RenderedFile,
    _: OverwritePolicy,
    _: bool,
) -> Result<Value> {
    Err(Error::Internal(anyhow::anyhow!(
        "this build has no SFTP support: build it with sluice-core's `sftp` feature"
    )))
}

#[cfg(feature = "sftp")]
async fn write_sftp(
    sluice: &Sluice,
    p: &Processor,
    file: &sluice_model::RenderedFile,
    policy: OverwritePolicy,
    redo: bool,
) -> Result<Value> {
    let Some(c) = &p.connection.sftp else {
        return Ok(failed(
            FailureCode::Config,
            format!("connection {} is not an sftp connection", p.connection.id),
            "",
        ));
    };
    let target = sftp::SftpTarget::of(&*sluice.secrets, c, Duration::from_secs(20))?;
    let url = format!(
        "sftp://{}:{}/{}/{}",
        c.host,
        c.port,
        file.directory.trim_matches('/'),
        file.name
    );
    let (dir, name, content) = (
        file.directory.clone(),
        file.name.clone(),
        file.content.clone().into_bytes(),
    );
    let mut last = String::new();
    for attempt in 1..=2 {
        let (t, d, n, body) = (target.clone(), dir.clone(), name.clone(), content.clone());
        let result = tokio::task::spawn_blocking(move || {
            // A redone upload under skip/fail: an existing file is the crashed attempt's.
            if redo && policy != OverwritePolicy::Overwrite && sftp::exists(&t, &d, &n)? {
                return Ok(sftp::Written::Done {
                    path: format!("{}/{}", d.trim_end_matches('/'), n),
                    bytes: body.len(),
                });
            }
            sftp::write_file(&t, &d, &n, &body, policy)
        })
        .await
        .map_err(|e| Error::Internal(e.into()))?;
        match result {
            Ok(sftp::Written::Done { path, bytes }) => {
                return Ok(json!({"result": "written", "path": path, "bytes": bytes, "url": url}))
            }
            Ok(sftp::Written::SkippedExisting { path }) => {
                return Ok(json!({"result": "skipped", "path": path, "url": url}))
            }
            Err(e @ sftp::SftpError::HostKeyMismatch(..)) => {
                return Ok(failed(FailureCode::HostKeyMismatch, e.to_string(), &url))
            }
            Err(e @ sftp::SftpError::Exists(_)) => {
                return Ok(failed(FailureCode::FileExists, e.to_string(), &url))
            }
            Err(sftp::SftpError::Other(m)) => {
                last = m;
                if attempt < 2 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    Ok(failed(
        FailureCode::Sftp,
        format!("{last} (after 2 attempts)"),
        &url,
    ))
}

/// The S3 object key of a file: connection prefix, directory, name.
pub fn s3_key(prefix: Option<&str>, directory: &str, name: &str) -> String {
    [prefix.unwrap_or(""), directory, name]
        .iter()
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

async fn write_s3(
    sluice: &Sluice,
    p: &Processor,
    spec: &sluice_model::FileImport,
    file: &sluice_model::RenderedFile,
    redo: bool,
) -> Result<Value> {
    let conn = p.connection.s3.as_ref();
    let Some(bucket) = spec
        .bucket
        .clone()
        .or_else(|| conn.map(|c| c.bucket.clone()))
    else {
        return Ok(failed(
            FailureCode::Config,
            "no bucket on the import or its connection".into(),
            "",
        ));
    };
    let key = s3_key(
        conn.and_then(|c| c.prefix.as_deref()),
        &file.directory,
        &file.name,
    );
    let url = format!("s3://{bucket}/{key}");
    let exists = sluice.blobs.exists(&bucket, &key).await?;
    if exists && !redo {
        match spec.overwrite {
            OverwritePolicy::Skip => {
                return Ok(json!({"result": "skipped", "path": key, "url": url}))
            }
            OverwritePolicy::Fail => {
                return Ok(failed(
                    FailureCode::FileExists,
                    format!("{url} exists and the overwrite policy is fail"),
                    &url,
                ))
            }
            OverwritePolicy::Overwrite => {}
        }
    }
    if !(exists && redo && spec.overwrite != OverwritePolicy::Overwrite) {
        sluice
            .blobs
            .put(&bucket, &key, file.content.clone().into_bytes().into())
            .await?;
    }
    Ok(json!({"result": "written", "path": key, "bytes": file.content.len(), "url": url}))
}
