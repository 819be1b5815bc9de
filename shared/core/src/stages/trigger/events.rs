//! Events into runs: an S3 object created, DynamoDB stream records.

use super::s3_location;
use crate::ports::Kind;
use crate::runs::start_event_run;
use crate::{Result, Sluice};
use serde_json::{Map, Number, Value};
use sluice_model::{Export, ExportType, Flow, RunKind, RunRequest, RunSource, RunStarted};

/// Every enabled flow whose page generator reads this export kind, with the export.
pub(super) async fn flows_reading(
    sluice: &Sluice,
    kind: ExportType,
) -> Result<Vec<(Flow, Export)>> {
    let mut out = Vec::new();
    for doc in sluice.store.list_definitions(Kind::Flow).await? {
        let Ok(flow) = serde_json::from_value::<Flow>(doc) else {
            continue;
        };
        if flow.disabled {
            continue;
        }
        for g in &flow.page_generators {
            if let Ok(export) = sluice.export(&g.export_id).await {
                if export.kind == kind {
                    out.push((flow.clone(), export));
                }
            }
        }
    }
    Ok(out)
}

/// Starts a run of every enabled flow with an s3 export matching bucket/prefix/suffix, or
/// keeps it until the flow's running job ends. `event` tells this upload from another of the
/// same key (S3's sequencer, else ETag and event time), so a notification delivered twice
/// runs once. `Ok` only when every matching flow has kept or started its run.
pub async fn on_s3_object(
    sluice: &Sluice,
    bucket: &str,
    key: &str,
    event: Option<&str>,
) -> Result<Vec<RunStarted>> {
    let mut started = Vec::new();
    for (flow, export) in flows_reading(sluice, ExportType::S3).await? {
        let (b, prefix) = s3_location(sluice, &export).await?;
        let suffix = export
            .s3
            .as_ref()
            .and_then(|s| s.suffix.clone())
            .unwrap_or_default();
        if b != bucket || !key.starts_with(&prefix) || !key.ends_with(&suffix) {
            continue;
        }
        let request = RunRequest {
            export_ids: Some(vec![export.id.clone()]),
            source: Some(RunSource::S3Object {
                bucket: bucket.into(),
                key: key.into(),
            }),
            ..Default::default()
        };
        let event = event.map(|e| format!("s3|{bucket}|{key}|{e}"));
        let run = start_event_run(sluice, &flow.id, event.as_deref(), request, RunKind::S3);
        if let Some(s) = run.await? {
            started.push(s);
        }
    }
    Ok(started)
}

/// One DynamoDB stream record, already plain: the event name and the NewImage as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct TableChange {
    pub table_name: String,
    /// INSERT, MODIFY or REMOVE.
    pub event_name: String,
    pub new_image: Option<Value>,
    /// The stream record's `eventID`, when it came from a stream.
    pub event_id: Option<String>,
}

/// Starts a run of every enabled flow with a dynamodb export on that table, with the changes
/// whose event type the export takes (its filter is applied when the records are cut into
/// pages, so filtered records count as ignored), or keeps it until the flow's running job
/// ends. A batch whose changes all carry stream ids runs once however often it is delivered.
/// `Ok` only when every matching flow has kept or started its run.
pub async fn on_table_changes(
    sluice: &Sluice,
    changes: Vec<TableChange>,
) -> Result<Vec<RunStarted>> {
    let mut started = Vec::new();
    for (flow, export) in flows_reading(sluice, ExportType::Dynamodb).await? {
        let Some(spec) = &export.dynamodb else {
            continue;
        };
        let taken: Vec<&TableChange> = changes
            .iter()
            .filter(|c| c.table_name == spec.table_name && spec.event_types.contains(&c.event_name))
            .filter(|c| c.new_image.is_some())
            .collect();
        if taken.is_empty() {
            continue;
        }
        let event: Option<Vec<&str>> = taken.iter().map(|c| c.event_id.as_deref()).collect();
        let event = event.map(|ids| format!("dynamodb|{}", ids.join(",")));
        let records = taken.iter().filter_map(|c| c.new_image.clone()).collect();
        let request = RunRequest {
            export_ids: Some(vec![export.id.clone()]),
            source: Some(RunSource::Records { records }),
            ..Default::default()
        };
        let run = start_event_run(
            sluice,
            &flow.id,
            event.as_deref(),
            request,
            RunKind::Dynamodb,
        );
        if let Some(s) = run.await? {
            started.push(s);
        }
    }
    Ok(started)
}

/// Converts a DynamoDB attribute-value map (`{"n": {"N": "1"}}`) into plain JSON (`{"n": 1}`).
pub fn from_attribute_values(image: &Value) -> Value {
    match image {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), attribute(v))).collect())
        }
        other => other.clone(),
    }
}

fn number(s: &str) -> Value {
    if let Ok(i) = s.parse::<i64>() {
        return Value::Number(i.into());
    }
    s.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(s.into()))
}

fn attribute(v: &Value) -> Value {
    let Some((t, inner)) = v.as_object().and_then(|m| m.iter().next()) else {
        return v.clone();
    };
    match (t.as_str(), inner) {
        ("S", Value::String(s)) => Value::String(s.clone()),
        ("N", Value::String(s)) => number(s),
        ("BOOL", b @ Value::Bool(_)) => b.clone(),
        ("NULL", _) => Value::Null,
        ("M", Value::Object(m)) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), attribute(v)))
                .collect::<Map<_, _>>(),
        ),
        ("L", Value::Array(items)) => Value::Array(items.iter().map(attribute).collect()),
        ("SS", Value::Array(items)) => Value::Array(items.clone()),
        ("NS", Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(|n| n.as_str().map(number).unwrap_or(Value::Null))
                .collect(),
        ),
        ("B", Value::String(b64)) => Value::String(b64.clone()),
        ("BS", Value::Array(items)) => Value::Array(items.clone()),
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attribute_values_become_plain_json() {
        let image = json!({
            "id": {"S": "a1"}, "n": {"N": "42"}, "f": {"N": "1.5"}, "ok": {"BOOL": true}, "none": {"NULL": true},
            "m": {"M": {"x": {"N": "1"}}}, "l": {"L": [{"S": "a"}, {"N": "2"}]}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]}
        });
        assert_eq!(
            from_attribute_values(&image),
            json!({"id": "a1", "n": 42, "f": 1.5, "ok": true, "none": null, "m": {"x": 1}, "l": ["a", 2], "ss": ["a", "b"], "ns": [1, 2]})
        );
    }
}
