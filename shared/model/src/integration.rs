//! Integrations: named groupings of flows (a flow names its group in `_integrationId`).

use crate::{validate, ValidationErrors};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A named grouping of flows; flows, exports, imports and connections name theirs in
/// `_integrationId`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"_id": "shop-sync", "name": "Shop to ERP",
    "description": "Orders and refunds from the shop into the ERP"}))]
pub struct Integration {
    /// The id; generated on create when absent.
    #[serde(rename = "_id", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Shown in lists; required.
    // serde default: a missing name gets validate()'s message naming the field.
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Set by the API on create.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_at: Option<DateTime<Utc>>,
    /// Set by the API on every change.
    #[serde(
        default,
        with = "crate::time::ms_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_modified: Option<DateTime<Utc>>,
}

impl Integration {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        validate::identity(&mut e, &self.id, &self.name);
        e.into_result()
    }
}
