//! evaluate: the import's CEL evaluator judges each record; counts, stores errors, sends the
//! page to the next processor or finishes it; the last page closes the job.

use crate::{Result, Sluice};
use sluice_model::Page;

pub async fn handle(sluice: &Sluice, page: Page) -> Result<()> {
    let _ = (sluice, page);
    todo!("owned by the pipeline helper")
}
