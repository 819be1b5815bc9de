//! Credentials in headers: flows carry them in the afterProcess, notifyRequest and
//! notifyResponse callbacks, http imports and exports in `http.headers` (`Authorization`,
//! `X-Api-Key`, ...). They are masked like connection secrets, and a masked value sent back
//! keeps the stored one. A webhook export's listener credentials (`webhook.token`,
//! `webhook.password`, `webhook.key`) are masked the same way.

use serde_json::Value;
use sluice_core::ports::Kind;
use sluice_model::{is_secret_header, ValidationErrors, MASK};
use std::collections::HashMap;

/// The header lists of a document of `kind`, each with the field path it sits at.
fn header_lists(kind: Kind, doc: &mut Value) -> Vec<(String, &mut Value)> {
    match kind {
        Kind::Flow => {
            let Value::Object(doc) = doc else {
                return Vec::new();
            };
            let mut lists = Vec::new();
            for (key, value) in doc.iter_mut() {
                if !matches!(
                    key.as_str(),
                    "afterProcess" | "notifyRequest" | "notifyResponse"
                ) {
                    continue;
                }
                let callbacks: Vec<(String, &mut Value)> = match value {
                    Value::Array(list) => list
                        .iter_mut()
                        .enumerate()
                        .map(|(i, c)| (format!("{key}[{i}]"), c))
                        .collect(),
                    c @ Value::Object(_) => vec![(key.to_string(), c)],
                    _ => continue,
                };
                for (at, callback) in callbacks {
                    if let Some(headers) = callback.get_mut("headers") {
                        lists.push((format!("{at}.headers"), headers));
                    }
                }
            }
            lists
        }
        Kind::Import | Kind::Export => doc
            .get_mut("http")
            .and_then(|h| h.get_mut("headers"))
            .map(|headers| vec![("http.headers".to_string(), headers)])
            .unwrap_or_default(),
        Kind::Connection | Kind::Integration | Kind::Script => Vec::new(),
    }
}

/// The listener credentials of a webhook export.
const LISTENER_SECRETS: [&str; 3] = ["token", "password", "key"];

/// Calls `f(field, value)` for every secret header value of the document, and every
/// listener credential of an export.
fn for_each_secret(kind: Kind, doc: &mut Value, mut f: impl FnMut(&str, &mut Value)) {
    if kind == Kind::Export {
        if let Some(Value::Object(listener)) = doc.get_mut("webhook") {
            for name in LISTENER_SECRETS {
                if let Some(value) = listener.get_mut(name) {
                    f(&format!("webhook.{name}"), value);
                }
            }
        }
    }
    for (at, headers) in header_lists(kind, doc) {
        let Value::Array(headers) = headers else {
            continue;
        };
        for (j, header) in headers.iter_mut().enumerate() {
            let name = header.get("name").and_then(Value::as_str).unwrap_or("");
            if !is_secret_header(name) {
                continue;
            }
            if let Some(value) = header.get_mut("value") {
                f(&format!("{at}[{j}].value"), value);
            }
        }
    }
}

/// A copy fit to show. `secret:NAME` references are kept, since they hold no secret.
pub fn masked(kind: Kind, doc: &Value) -> Value {
    let mut doc = doc.clone();
    for_each_secret(kind, &mut doc, |_, v| {
        if let Some(s) = v.as_str() {
            if !s.is_empty() && !sluice_model::is_secret_reference(s) {
                *v = Value::String(MASK.into());
            }
        }
    });
    doc
}

/// Puts the stored value back wherever `doc` holds the mask at the same place; a mask with
/// nothing to restore is an error naming the field.
pub fn restore(
    kind: Kind,
    doc: &mut Value,
    stored: Option<&Value>,
) -> Result<(), ValidationErrors> {
    let mut old = HashMap::new();
    if let Some(stored) = stored {
        for_each_secret(kind, &mut stored.clone(), |field, v| {
            old.insert(field.to_string(), v.clone());
        });
    }
    let mut e = ValidationErrors::new();
    for_each_secret(kind, doc, |field, v| {
        if v.as_str() == Some(MASK) {
            match old.get(field) {
                Some(kept) => *v = kept.clone(),
                None => e.add(
                    field,
                    format!(
                        "reads '{MASK}' but there is no stored value to keep: send the real value"
                    ),
                ),
            }
        }
    });
    e.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flow(value: &str) -> Value {
        json!({"_id": "f", "afterProcess": [{"url": "http://x", "headers": [
            {"name": "Authorization", "value": value}, {"name": "X-Trace", "value": "t1"}]}],
            "notifyRequest": {"url": "http://y", "headers": [{"name": "X-Api-Key", "value": value}]}})
    }

    #[test]
    fn masks_secret_headers_only() {
        let m = masked(Kind::Flow, &flow("Bearer abc"));
        assert_eq!(m["afterProcess"][0]["headers"][0]["value"], MASK);
        assert_eq!(m["afterProcess"][0]["headers"][1]["value"], "t1");
        assert_eq!(m["notifyRequest"]["headers"][0]["value"], MASK);
        assert_eq!(
            masked(Kind::Flow, &flow("secret:HOOK")),
            flow("secret:HOOK")
        );
    }

    #[test]
    fn restores_from_stored_or_names_the_field() {
        let stored = flow("Bearer abc");
        let mut sent = masked(Kind::Flow, &stored);
        restore(Kind::Flow, &mut sent, Some(&stored)).unwrap();
        assert_eq!(sent, stored);
        let mut sent = masked(Kind::Flow, &stored);
        let err = restore(Kind::Flow, &mut sent, None).unwrap_err();
        assert_eq!(err.0[0].field, "afterProcess[0].headers[0].value");
        assert_eq!(err.0.len(), 2);
    }

    #[test]
    fn masks_import_and_export_headers() {
        for kind in [Kind::Import, Kind::Export] {
            let doc = json!({"_id": "i", "http": {"headers": [
                {"name": "x-api-key", "value": "k-123"}, {"name": "Accept", "value": "text/csv"},
                {"name": "Authorization", "value": "secret:PARTNER"}]}});
            let m = masked(kind, &doc);
            assert_eq!(m["http"]["headers"][0]["value"], MASK);
            assert_eq!(m["http"]["headers"][1]["value"], "text/csv");
            assert_eq!(m["http"]["headers"][2]["value"], "secret:PARTNER");
            let mut sent = m.clone();
            restore(kind, &mut sent, Some(&doc)).unwrap();
            assert_eq!(sent, doc);
            let err = restore(kind, &mut m.clone(), None).unwrap_err();
            assert_eq!(err.0[0].field, "http.headers[0].value");
        }
    }

    #[test]
    fn masks_listener_credentials() {
        let doc = json!({"_id": "e", "type": "webhook",
            "webhook": {"verify": "basic", "username": "shop", "password": "p4ss"}});
        let m = masked(Kind::Export, &doc);
        assert_eq!(m["webhook"]["password"], MASK);
        assert_eq!(m["webhook"]["username"], "shop");
        let mut sent = m.clone();
        restore(Kind::Export, &mut sent, Some(&doc)).unwrap();
        assert_eq!(sent, doc);
        let err = restore(Kind::Export, &mut m.clone(), None).unwrap_err();
        assert_eq!(err.0[0].field, "webhook.password");
    }
}
