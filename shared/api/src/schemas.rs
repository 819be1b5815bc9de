//! What the published schemas say about a request: every field a body carries that its
//! schema (the OpenAPI components, derived from the model's serde types) does not have, a
//! list where one value is taken (integrator.io writes `"method": ["POST"]`), and a value
//! outside an enum (`"type": "ftp"`). Serde stops at the first problem; this lists them
//! all, so an integrator.io export is refused once with the complete list of what Sluice
//! does not support.

use serde_json::Value;
use sluice_model::ValidationErrors;
use std::sync::OnceLock;

/// The OpenAPI document as JSON, built once per process.
pub fn document_json() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(crate::openapi::document()).unwrap_or(Value::Null))
}

/// Every field of `value` that the component schema `name` has no place for, by path
/// (`http.formType`, `pageProcessors[0].responseMapping.lists`).
pub fn unknown_fields(name: &str, value: &Value) -> ValidationErrors {
    let mut found = ValidationErrors::new();
    let schema = Value::String(format!("#/components/schemas/{name}"));
    if let Some(schema) = resolve(&serde_json::json!({ "$ref": schema })) {
        walk(schema, value, "", &mut found);
    }
    found
}

/// Follows `$ref`s into the document's components.
fn resolve(schema: &Value) -> Option<&'static Value> {
    let doc = document_json();
    let mut reference = schema.get("$ref")?.as_str()?.to_string();
    loop {
        let target = doc.pointer(reference.strip_prefix('#')?)?;
        match target.get("$ref").and_then(Value::as_str) {
            Some(next) => reference = next.to_string(),
            None => return Some(target),
        }
    }
}

/// The schemas a value may match here: the schema itself, or its `oneOf`/`anyOf`/`allOf`
/// branches (an `Option<T>` is `oneOf [null, T]`), `$ref`s followed.
fn branches<'a>(schema: &'a Value, out: &mut Vec<&'a Value>) {
    let schema: &Value = match resolve(schema) {
        Some(s) => s,
        None => schema,
    };
    let mut combined = false;
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(list)) = schema.get(key) {
            combined = true;
            for b in list {
                branches(b, out);
            }
        }
    }
    if !combined {
        out.push(schema);
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The JSON types a schema names (`"string"`, `["string", "null"]`); empty for any.
fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn walk(schema: &Value, value: &Value, path: &str, found: &mut ValidationErrors) {
    let mut options = Vec::new();
    branches(schema, &mut options);
    match value {
        Value::Array(items) => {
            let Some(item_schema) = options.iter().find_map(|s| s.get("items")) else {
                let typed = options
                    .iter()
                    .all(|s| !types(s).is_empty() || s.get("enum").is_some());
                if typed && !options.is_empty() {
                    found.add(
                        path,
                        "a list is not supported here: Sluice takes one value (write \"POST\", not [\"POST\"])",
                    );
                }
                return;
            };
            for (i, item) in items.iter().enumerate() {
                walk(item_schema, item, &format!("{path}[{i}]"), found);
            }
        }
        Value::Object(fields) => {
            let scalar = !options.is_empty()
                && options.iter().all(|s| {
                    let t = types(s);
                    (!t.is_empty() || s.get("enum").is_some())
                        && !t.contains(&"object")
                        && s.get("properties").is_none()
                });
            if scalar {
                found.add(
                    path,
                    "an object is not supported here: Sluice takes a single value",
                );
                return;
            }
            let objects: Vec<&Value> = options
                .into_iter()
                .filter(|s| s.get("properties").is_some())
                .collect();
            if objects.is_empty() {
                return; // free-form (a record, a reply): anything goes
            }
            let closed = objects
                .iter()
                .all(|s| s.get("additionalProperties") == Some(&Value::Bool(false)));
            for (key, v) in fields {
                let property = objects
                    .iter()
                    .find_map(|s| s.get("properties").and_then(|p| p.get(key)));
                match property {
                    Some(p) => walk(p, v, &join(path, key), found),
                    None if closed => found.add(
                        join(path, key),
                        format!("unknown field `{key}`: Sluice does not support it here (see docs/reference.md)"),
                    ),
                    None => {}
                }
            }
        }
        Value::String(text) => {
            let allowed: Vec<&str> = options
                .iter()
                .filter_map(|s| s.get("enum").and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let free = options.iter().any(|s| {
                s.get("enum").is_none() && (types(s).is_empty() || types(s).contains(&"string"))
            });
            if !allowed.is_empty() && !free && !allowed.contains(&text.as_str()) {
                found.add(
                    path,
                    format!("'{text}' is not supported: one of {}", allowed.join(", ")),
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_every_unknown_field_at_every_depth() {
        let flow = json!({
            "name": "f", "free": true, "pageGenerators": [{"_exportId": "e", "type": "x"}],
            "pageProcessors": [{"type": "import", "_importId": "i",
                "responseMapping": {"fields": [], "lists": []}}],
            "notifyRequest": {"url": "http://x", "method": "POST"}
        });
        let found: Vec<String> = unknown_fields("Flow", &flow)
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            found,
            [
                "free",
                "pageGenerators[0].type",
                "pageProcessors[0].responseMapping.lists",
                "notifyRequest.method"
            ]
        );
        let record = json!({"name": "f", "pageGenerators": [{"_exportId": "e"}]});
        assert!(unknown_fields("Flow", &record).is_empty());
        let import = json!({"name": "i", "type": "ftp", "_connectionId": "c",
            "http": {"method": ["POST"], "relativeURI": "/x"}});
        let found = unknown_fields("Import", &import).0;
        let fields: Vec<&str> = found.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["type", "http.method"]);
        assert!(
            found[0].message.contains("one of http, sftp, s3"),
            "{}",
            found[0].message
        );
    }
}
