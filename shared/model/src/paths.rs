//! Paths into a record, as mappings, transformations and filter rules write them: `id`,
//! `customer.name`, `items[0].sku`, `items[*].sku`, `$.lines[*]`, or a field name with
//! spaces as it comes from a CSV header (`Customer Name`). Read as RFC 9535 JSONPath
//! (`serde_json_path`), compiled once, and known to be singular (one value at most) or
//! plural (a list of values) from the path alone.
//!
//! Invariant: [`RecordPath::get`] of a singular path is the value or nothing; of a plural
//! path always a list (empty when nothing matched), whatever the record holds.

use serde_json::Value;
use serde_json_path::JsonPath;
use std::borrow::Cow;

/// A compiled path into a record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPath {
    source: String,
    path: JsonPath,
    plural: bool,
}

impl RecordPath {
    /// `id` is `$.id`; `$...` is taken as written; text that is no JSONPath at all (a CSV
    /// header such as `Customer Name`) names one field of that name.
    pub fn compile(text: &str) -> Result<RecordPath, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("is empty".into());
        }
        let normalized = crate::validate::normalize_json_path(trimmed);
        let (normalized, path) = match JsonPath::parse(&normalized) {
            Ok(p) => (normalized, p),
            Err(e) if !trimmed.starts_with('$') && !trimmed.contains(['[', '.']) => {
                let quoted = format!("$[{}]", serde_json::to_string(trimmed).unwrap_or_default());
                let p = JsonPath::parse(&quoted).map_err(|_| format!("Invalid path: {e}"))?;
                (quoted, p)
            }
            Err(e) => return Err(format!("Invalid path: {e}")),
        };
        Ok(RecordPath {
            source: text.to_string(),
            plural: !is_singular(&normalized),
            path,
        })
    }

    /// Does the path select a list (`[*]`, `..`, a slice, a filter)?
    pub fn is_plural(&self) -> bool {
        self.plural
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The value at the path: for a singular path the value (none when absent), for a
    /// plural path the list of every value it selects.
    pub fn get<'a>(&self, record: &'a Value) -> Option<Cow<'a, Value>> {
        let nodes = self.path.query(record);
        if self.plural {
            Some(Cow::Owned(Value::Array(
                nodes.all().into_iter().cloned().collect(),
            )))
        } else {
            nodes.first().map(Cow::Borrowed)
        }
    }
}

/// RFC 9535 defines singular queries as exactly those allowed in a filter comparison, so a
/// path is singular if the parser takes it there.
fn is_singular(normalized: &str) -> bool {
    let relative = normalized.replacen('$', "@", 1);
    JsonPath::parse(&format!("$[?{relative} == 1]")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_fields_lists_and_headers_with_spaces() {
        let r = json!({"id": 7, "customer": {"name": "Ann"}, "Customer Name": "Bo",
                       "items": [{"sku": "a"}, {"sku": "b"}]});
        let get = |p: &str| RecordPath::compile(p).unwrap().get(&r).map(Cow::into_owned);
        assert_eq!(get("id"), Some(json!(7)));
        assert_eq!(get("customer.name"), Some(json!("Ann")));
        assert_eq!(get("$.items[1].sku"), Some(json!("b")));
        assert_eq!(get("items[*].sku"), Some(json!(["a", "b"])));
        assert_eq!(get("Customer Name"), Some(json!("Bo")));
        assert_eq!(get("missing"), None);
        assert_eq!(
            get("missing[*]"),
            Some(json!([])),
            "a plural path is always a list"
        );
    }

    #[test]
    fn knows_singular_from_plural_and_refuses_broken_paths() {
        let plural = |p: &str| RecordPath::compile(p).unwrap().is_plural();
        assert!(!plural("a.b[0]"));
        assert!(!plural("$['x y']"));
        assert!(plural("items[*].sku"));
        assert!(plural("$..sku"));
        assert!(plural("items[0:2]"));
        assert!(RecordPath::compile("items[").is_err());
        assert!(RecordPath::compile(" ").is_err());
    }
}
