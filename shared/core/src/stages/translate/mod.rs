//! translate: the output filter, then each record (or the page) rendered through the
//! import's handlebars templates: URI, headers, body, file name, file content.

use crate::{Result, Sluice};
use sluice_model::Page;

/// Compiled templates, keyed by their source text; compiled once per process.
#[derive(Default)]
pub struct TemplateCache {}

pub async fn handle(sluice: &Sluice, page: Page) -> Result<()> {
    let _ = (sluice, page);
    todo!("owned by the pipeline helper")
}
