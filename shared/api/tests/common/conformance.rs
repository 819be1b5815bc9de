//! Every reply the API tests receive is checked against the OpenAPI document: the route and
//! method are documented, the status is one the operation documents, and the body matches
//! that response's schema (JSON Schema 2020-12, as OpenAPI 3.1 uses). A reply that does not
//! conform fails the test that got it.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

fn document() -> &'static Value {
    sluice_api::schemas::document_json()
}

/// The documented path template `path` (query stripped) matches, preferring literal
/// segments over `{params}` (`/flows/import-template` over `/flows/{id}`).
fn template_of(path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut best: Option<(&'static str, usize)> = None;
    for template in document()["paths"].as_object()?.keys() {
        let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literal = 0;
        let fits = parts.iter().zip(&segments).all(|(t, s)| {
            if t.starts_with('{') {
                true
            } else {
                literal += 1;
                t == s
            }
        });
        if fits && best.is_none_or(|(_, l)| literal > l) {
            best = Some((template.as_str(), literal));
        }
    }
    best.map(|(t, _)| t)
}

type Validators = Mutex<HashMap<(String, String, u16, String), Arc<jsonschema::Validator>>>;

fn validator(
    template: &str,
    method: &str,
    status: u16,
    media: &str,
    schema: &Value,
) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Validators> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (
        template.to_string(),
        method.to_string(),
        status,
        media.to_string(),
    );
    if let Some(v) = cache.lock().unwrap().get(&key) {
        return v.clone();
    }
    // The response schema with the document's components beside it, so `#/components/...`
    // references resolve.
    let mut root = json!({"components": document()["components"]});
    for (k, v) in schema.as_object().expect("a schema object") {
        root[k] = v.clone();
    }
    let v = Arc::new(
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| {
                panic!("schema of {method} {template} {status} does not compile: {e}")
            }),
    );
    cache.lock().unwrap().insert(key, v.clone());
    v
}

/// Panics, naming the route, when the reply is not what the document says.
pub fn check(method: &str, path: &str, status: u16, content_type: Option<&str>, body: &str) {
    let method = method.to_ascii_lowercase();
    let Some(template) = template_of(path) else {
        assert_eq!(
            status, 404,
            "{method} {path}: undocumented route answered {status}: {body}"
        );
        return;
    };
    let Some(op) = document()["paths"][template].get(&method) else {
        assert_eq!(
            status, 405,
            "{method} {template}: undocumented method answered {status}: {body}"
        );
        return;
    };
    let Some(response) = op["responses"].get(status.to_string()) else {
        panic!(
            "{method} {template} answered {status}, which the document does not list (it lists {:?}): {body}",
            op["responses"].as_object().map(|r| r.keys().collect::<Vec<_>>())
        );
    };
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        assert!(
            body.is_empty(),
            "{method} {template} {status}: documented without a body, got {body}"
        );
        return;
    };
    let media = content_type
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_string();
    let Some(entry) = content.get(&media) else {
        panic!(
            "{method} {template} {status}: answered {media:?}, documented {:?}",
            content.keys().collect::<Vec<_>>()
        );
    };
    if media != "application/json" {
        return; // text/csv: its columns are checked by the tests that download it
    }
    let value: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {template} {status}: not JSON ({e}): {body}"));
    let v = validator(template, &method, status, &media, &entry["schema"]);
    let problems: Vec<String> = v
        .iter_errors(&value)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "{method} {template} {status}: the reply does not match its documented schema:\n  {}\nreply: {body}",
        problems.join("\n  ")
    );
}
