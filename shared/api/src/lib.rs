//! The flows API: one axum router, served locally by `sluice dev` and on Lambda by
//! lambda_http in `functions/api`.

use axum::Router;
use sluice_core::Sluice;
use std::sync::Arc;

/// Who may call the API: `Authorization: Bearer <key>`, each key with a name for the audit log.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// (name, key) pairs.
    pub api_keys: Vec<(String, String)>,
}

/// The whole API.
pub fn router(sluice: Arc<Sluice>, config: ApiConfig) -> Router {
    let _ = (sluice, config);
    todo!("owned by the api helper")
}
