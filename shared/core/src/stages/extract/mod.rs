//! extract: responseMapping, RFC 9535 JSONPath selections from the reply into record fields.

use crate::{Result, Sluice};
use sluice_model::Page;

pub async fn handle(sluice: &Sluice, page: Page) -> Result<()> {
    let _ = (sluice, page);
    todo!("owned by the pipeline helper")
}
