//! Events into runs: an S3 object created, DynamoDB stream records.

use super::RunStarted;
use crate::{Result, Sluice};
use serde_json::Value;

/// Starts a run of every enabled flow with an s3 export matching bucket/prefix/suffix.
pub async fn on_s3_object(sluice: &Sluice, bucket: &str, key: &str) -> Result<Vec<RunStarted>> {
    let _ = (sluice, bucket, key);
    todo!("owned by the sources helper")
}

/// One DynamoDB stream record, already plain: the event name and the NewImage as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct TableChange {
    pub table_name: String,
    /// INSERT, MODIFY or REMOVE.
    pub event_name: String,
    pub new_image: Option<Value>,
}

/// Starts a run of every enabled flow with a dynamodb export on that table, with the changes
/// whose event type the export takes and that pass its filter.
pub async fn on_table_changes(
    sluice: &Sluice,
    changes: Vec<TableChange>,
) -> Result<Vec<RunStarted>> {
    let _ = (sluice, changes);
    todo!("owned by the sources helper")
}

/// Converts a DynamoDB attribute-value map (`{"n": {"N": "1"}}`) into plain JSON (`{"n": 1}`).
pub fn from_attribute_values(image: &Value) -> Value {
    let _ = image;
    todo!("owned by the sources helper")
}
