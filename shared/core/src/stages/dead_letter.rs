//! A message that failed every delivery attempt becomes something a person can read and
//! retry, never a silent loss: a page's unfinished records become job errors (code
//! `dead_letter`) and count as errors so the job still completes; a run order fails its job;
//! a closed job's after-process callbacks that never went out are logged.

use super::evaluate;
use super::Stage;
use crate::{runs, Result, Sluice};
use sluice_model::{Page, RecordState, StageMessage};
use tracing::Instrument;

pub async fn dead_letter(
    sluice: &Sluice,
    stage: Stage,
    message: StageMessage,
    reason: &str,
) -> Result<()> {
    let span = super::message_span(stage, &message);
    settle_message(sluice, stage, message, reason)
        .instrument(span)
        .await
}

async fn settle_message(
    sluice: &Sluice,
    stage: Stage,
    message: StageMessage,
    reason: &str,
) -> Result<()> {
    tracing::error!(reason, "message dead-lettered");
    match message {
        StageMessage::Run(order) => {
            runs::fail_job(
                sluice,
                &order.job_id,
                format!(
                    "the {} stage gave up reading the export: {reason}",
                    stage.name()
                ),
            )
            .await
        }
        StageMessage::Page(mut page) => {
            for r in page.records.iter_mut().filter(|r| r.is_active()) {
                r.fail(
                    sluice_model::FailureCode::DeadLetter,
                    format!(
                        "the {} stage failed on this page after every retry: {reason}",
                        stage.name()
                    ),
                );
            }
            settle(sluice, page).await
        }
        // The job is closed already and its callbacks are best effort: the error line above
        // (with the job's fields) is what is left of a callback that could not go out.
        StageMessage::AfterProcess { .. } => Ok(()),
        // The job completed; its files stay on the server (remembered, so not read again)
        // and the error line above says which job's could not be deleted or moved.
        StageMessage::FilesRead { .. } => Ok(()),
    }
}

/// Counts a page whose records are all settled (no active ones) and finishes it.
async fn settle(sluice: &Sluice, page: Page) -> Result<()> {
    let v = evaluate::tally(sluice, &page, None, true);
    if !v.errors.is_empty() {
        sluice.store.put_errors(&v.errors).await?;
    }
    debug_assert!(page
        .records
        .iter()
        .all(|r| !matches!(r.state, RecordState::Active)));
    evaluate::count_page(sluice, &page, &v, 0).await
}
