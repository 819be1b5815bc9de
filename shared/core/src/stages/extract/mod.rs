//! extract: responseMapping, RFC 9535 JSONPath selections from the reply into record fields.

use super::processor::{replies, Processor};
use crate::{Result, Sluice, Stage};
use serde_json::{Map, Value};
use sluice_model::{
    extract_path, FailureCode, Page, PageRecord, Reply, ResponseMapping, StageMessage,
};

/// The extract stage's entry point (what its Lambda function runs).
pub const HANDLER: super::StageHandler =
    super::StageHandler::pages(Stage::Extract, |sluice, page| {
        Box::pin(handle(sluice, page))
    });

pub async fn handle(sluice: &Sluice, mut page: Page) -> Result<()> {
    let p = Processor::load(sluice, &page.flow_id, page.processor_index).await?;
    extract(&mut page, &p);
    sluice
        .queue
        .send(Stage::Evaluate, StageMessage::Page(page))
        .await?;
    Ok(())
}

/// The step's responseMapping over each active record's reply.
pub(crate) fn extract(page: &mut Page, p: &Processor) {
    if let Some(mapping) = p.mapping() {
        let replies = replies(page);
        for (r, reply) in page
            .records
            .iter_mut()
            .zip(replies)
            .filter(|(r, _)| r.is_active())
        {
            if let Some(reply) = reply {
                if let Err(e) = apply_mapping(mapping, &reply, r) {
                    r.fail(FailureCode::Mapping, e);
                }
            }
        }
    }
}

/// Writes each mapped value into `record.extracted[generate]` and into the record's data (as
/// the flow carries it: [`PageRecord::flow_data`]) at the dotted path `generate`. A path that matches nothing gives null. A bounded reply (too big
/// to keep whole) brings its selections, made over the whole reply when it arrived.
pub fn apply_mapping(
    mapping: &ResponseMapping,
    reply: &Reply,
    record: &mut PageRecord,
) -> Result<(), String> {
    let doc = reply.as_document();
    for f in &mapping.fields {
        let selected = reply
            .bounded
            .as_ref()
            .and_then(|b| b.selected.get(&f.extract));
        let value = match selected {
            Some(v) => v.clone(),
            None => select(&doc, &f.extract)?,
        };
        record.extracted.insert(f.generate.clone(), value.clone());
        // Into the record the flow carries on (not what this import's hooks made to send).
        let data = record.original.as_mut().unwrap_or(&mut record.data);
        set_path(data, &f.generate, value);
    }
    Ok(())
}

/// The first match of `extract` (see [`sluice_model::extract_path`]) in the reply document.
pub fn select(reply_doc: &Value, extract: &str) -> Result<Value, String> {
    let path = extract_path(extract);
    let query = serde_json_path::JsonPath::parse(&path)
        .map_err(|e| format!("invalid JSONPath '{extract}': {e}"))?;
    Ok(query
        .query(reply_doc)
        .first()
        .cloned()
        .unwrap_or(Value::Null))
}

/// Sets `a.b.c` in `target`, creating objects on the way (a non-object in the way is replaced).
pub fn set_path(target: &mut Value, dotted: &str, value: Value) {
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let mut cur = target;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let obj = cur.as_object_mut().expect("made an object above");
        if i + 1 == parts.len() {
            obj.insert(part.to_string(), value);
            return;
        }
        let next = obj
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_model::{MappingField, Reply};

    fn reply() -> Reply {
        Reply {
            status: 201,
            headers: json!({"location": "/orders/9"})
                .as_object()
                .unwrap()
                .clone(),
            body: json!({"id": "ord-9", "items": [{"sku": "a"}, {"sku": "b"}]}),
            attempts: 1,
            elapsed_ms: 3,
            bounded: None,
        }
    }

    fn doc() -> Value {
        reply().as_document()
    }

    #[test]
    fn selects_body_status_and_headers() {
        assert_eq!(select(&doc(), "id").unwrap(), json!("ord-9"));
        assert_eq!(select(&doc(), "$.body.items[1].sku").unwrap(), json!("b"));
        assert_eq!(select(&doc(), "items[0].sku").unwrap(), json!("a"));
        assert_eq!(select(&doc(), "status").unwrap(), json!(201));
        assert_eq!(
            select(&doc(), "headers.location").unwrap(),
            json!("/orders/9")
        );
        assert_eq!(select(&doc(), "nothing.here").unwrap(), Value::Null);
        assert!(select(&doc(), "$[?").is_err());
    }

    #[test]
    fn mapping_writes_extracted_and_nested_fields() {
        let mapping = ResponseMapping {
            fields: vec![
                MappingField {
                    extract: "id".into(),
                    generate: "orderId".into(),
                },
                MappingField {
                    extract: "status".into(),
                    generate: "sync.status".into(),
                },
            ],
        };
        let mut r = PageRecord::new("k".into(), json!({"name": "x", "sync": 5}));
        apply_mapping(&mapping, &reply(), &mut r).unwrap();
        assert_eq!(
            r.data,
            json!({"name": "x", "sync": {"status": 201}, "orderId": "ord-9"})
        );
        assert_eq!(r.extracted.get("orderId"), Some(&json!("ord-9")));
    }
}
