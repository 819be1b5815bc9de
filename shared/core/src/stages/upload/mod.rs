//! upload: writes a page's rendered file to SFTP (host key checked, temporary name then
//! rename) or S3, honouring the overwrite policy.

use crate::{Result, Sluice};
use sluice_model::Page;

pub async fn handle(sluice: &Sluice, page: Page) -> Result<()> {
    let _ = (sluice, page);
    todo!("owned by the upload helper")
}
