//! deliver: sends rendered requests over the connection (auth, timeout, retries with backoff
//! and jitter honouring Retry-After, rate and concurrency limits) and keeps each reply.

use crate::{Result, Sluice};
use sluice_model::Page;

/// HTTP client, OAuth2 token cache, per-connection limiters.
#[derive(Default)]
pub struct HttpState {}

pub async fn handle(sluice: &Sluice, page: Page) -> Result<()> {
    let _ = (sluice, page);
    todo!("owned by the deliver helper")
}
