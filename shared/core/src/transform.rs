//! Applying an export's `transform` (integrator.io's Transformation 1.0 rules) to a record:
//! each group of rules is a mapping of fields, applied to the output of the one before
//! (`crate::mapping::apply`). Compiled once per process, keyed by the definition's JSON.
//!
//! Invariant: trigger transforms a record before the output filter sees it, so the filter
//! (and every later step) sees the transformed record; a rule that cannot be applied makes
//! the record an error (code `transform`, data as read, so a retry shapes it again), never a record half transformed.

use crate::compiled::{key_of, CompiledCache};
use crate::mapping::{self, Templates};
use serde_json::Value;
use sluice_model::mapping::CompiledMapping;
use sluice_model::{PageRecord, Transform};
use std::sync::Arc;

/// Compiled transformations (one mapping per group of rules) keyed by their JSON text.
pub type TransformCache = CompiledCache<Vec<CompiledMapping>>;

fn compiled(
    cache: &TransformCache,
    transform: &Transform,
) -> Result<Arc<Vec<CompiledMapping>>, String> {
    cache.get(&key_of(transform), || {
        transform.compile("transform").map_err(|e| e.to_string())
    })
}

/// `record` after every group of rules.
pub fn apply(groups: &[CompiledMapping], record: &Value, t: Templates) -> Result<Value, String> {
    let mut groups = groups.iter();
    let Some(first) = groups.next() else {
        return Ok(record.clone());
    };
    let mut out = mapping::apply(first, record, t)?;
    for g in groups {
        out = mapping::apply(g, &out, t)?;
    }
    Ok(out)
}

impl crate::Sluice {
    /// `record` transformed by `transform` (compiled once per process).
    pub fn transform_record(&self, transform: &Transform, record: &Value) -> Result<Value, String> {
        let groups = compiled(&self.caches.transforms, transform)?;
        apply(&groups, record, self.templates(false, None))
    }

    /// Transforms the active records in place; one that cannot be transformed fails.
    pub(crate) fn transform_records<'a>(
        &self,
        transform: &Transform,
        records: impl Iterator<Item = &'a mut PageRecord>,
    ) {
        let groups = match compiled(&self.caches.transforms, transform) {
            Ok(g) => g,
            Err(e) => {
                for r in records.filter(|r| r.is_active()) {
                    r.fail(sluice_model::FailureCode::Transform, e.clone());
                }
                return;
            }
        };
        for r in records.filter(|r| r.is_active()) {
            match apply(&groups, &r.data, self.templates(false, None)) {
                Ok(data) => r.data = data,
                Err(e) => r.fail(sluice_model::FailureCode::Transform, e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::translate::TemplateCache;
    use serde_json::json;

    fn transform(rules: Value) -> Vec<CompiledMapping> {
        let t: Transform = serde_json::from_value(json!({"type": "expression",
            "expression": {"version": "1", "rules": rules}}))
        .unwrap();
        t.compile("transform").unwrap()
    }

    fn run(rules: Value, record: Value) -> Result<Value, String> {
        let cache = TemplateCache::default();
        apply(
            &transform(rules),
            &record,
            Templates {
                cache: &cache,
                strict: false,
                now: None,
            },
        )
    }

    #[test]
    fn renames_moves_and_removes() {
        let out = run(
            json!([[{"extract": "name", "generate": "fullName"},
                    {"extract": "address.city", "generate": "city"},
                    {"extract": "id", "generate": "meta.sourceId"}]]),
            json!({"id": 7, "name": "Ann", "address": {"city": "Bonn", "zip": "53111"}, "secret": "x"}),
        )
        .unwrap();
        // Only what the rules generate: `secret` and `address.zip` are gone.
        assert_eq!(
            out,
            json!({"fullName": "Ann", "city": "Bonn", "meta": {"sourceId": 7}})
        );
    }

    #[test]
    fn splits_and_computes() {
        let out = run(
            json!([[{"extract": "{{split record.name \" \" 0}}", "generate": "first"},
                    {"extract": "{{split record.name \" \" 1}}", "generate": "last"},
                    {"extract": "lines[*].sku", "generate": "skus"},
                    {"extract": "{{multiply record.qty record.price}}", "generate": "total"}]]),
            json!({"name": "Ann Lee", "qty": 3, "price": 19.99, "lines": [{"sku": "a"}, {"sku": "b"}]}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"first": "Ann", "last": "Lee", "skus": ["a", "b"], "total": "59.97"})
        );
    }

    #[test]
    fn groups_apply_in_turn_and_a_failure_names_the_rule() {
        let out = run(
            json!([[{"extract": "a", "generate": "b"}], [{"extract": "b", "generate": "c"}]]),
            json!({"a": 1}),
        )
        .unwrap();
        assert_eq!(out, json!({"c": 1}));
        let e = run(
            json!([[{"extract": "a", "generate": "x"}, {"extract": "b", "generate": "x.y"}]]),
            json!({"a": 1, "b": 2}),
        )
        .unwrap_err();
        assert!(
            e.starts_with("transform.expression.rules[0][1] (x.y):"),
            "{e}"
        );
    }
}
