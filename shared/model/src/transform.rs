//! Export transformations in integrator.io's rule shape (Transformation 1.0):
//! `transform: {type: "expression", expression: {version: "1", rules: [[{extract,
//! generate}, ...]]}}`. Applied by trigger to each record before the output filter.
//!
//! As in integrator.io, the transformed record holds only what the rules generate: a rule
//! renames (`name` → `fullName`) or moves (`address.city` → `city`) a field, a field no rule
//! names is removed, an `extract` with `[*]` collects a list (`lines[*].sku` → `skus`), and
//! (Sluice's addition) an `extract` that is a handlebars expression computes a value
//! (`{{multiply record.qty record.price}}`) or splits one (`{{split record.name " " 0}}`).
//! Each group of rules is applied to the output of the one before.

use crate::mapping::{compile_fields, CompiledMapping, FieldMapping};
use crate::ValidationErrors;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// integrator.io's `transform` of an export: rules, or a script function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TransformDoc", into = "TransformDoc")]
pub enum Transform {
    /// Transformation 1.0 rules.
    Expression(TransformExpression),
    /// A script function called per record with `{record, settings}`; what it returns is
    /// the record.
    Script(crate::HookRef),
}

/// A transform as written: `type` says which of `expression` and `script` it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Transform)]
pub struct TransformDoc {
    /// `expression` (rules) or `script`.
    #[serde(rename = "type")]
    pub kind: TransformType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<TransformExpression>,
    /// The script function of a `script` transform: `{_scriptId, function}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<crate::HookRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransformType {
    /// Rules of extract/generate pairs.
    Expression,
    /// A script function.
    Script,
}

impl TryFrom<TransformDoc> for Transform {
    type Error = String;
    fn try_from(doc: TransformDoc) -> Result<Self, String> {
        match (doc.kind, doc.expression, doc.script) {
            (TransformType::Expression, Some(e), None) => Ok(Transform::Expression(e)),
            (TransformType::Script, None, Some(s)) => Ok(Transform::Script(s)),
            (TransformType::Expression, _, _) => {
                Err("type \"expression\" takes expression: {version, rules}, and no script".into())
            }
            (TransformType::Script, _, _) => Err(
                "type \"script\" takes script: {\"_scriptId\", \"function\"}, and no expression"
                    .into(),
            ),
        }
    }
}

impl From<Transform> for TransformDoc {
    fn from(t: Transform) -> Self {
        match t {
            Transform::Expression(e) => TransformDoc {
                kind: TransformType::Expression,
                expression: Some(e),
                script: None,
            },
            Transform::Script(s) => TransformDoc {
                kind: TransformType::Script,
                expression: None,
                script: Some(s),
            },
        }
    }
}

impl utoipa::PartialSchema for Transform {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        TransformDoc::schema()
    }
}
impl ToSchema for Transform {
    fn name() -> std::borrow::Cow<'static, str> {
        "Transform".into()
    }
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        TransformDoc::schemas(schemas);
    }
}

/// Transformation 1.0 rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransformExpression {
    /// Only `1`.
    #[serde(default = "version_one")]
    pub version: String,
    /// Groups of rules; each group builds a new record from the output of the one before.
    pub rules: Vec<Vec<TransformRule>>,
}
fn version_one() -> String {
    "1".into()
}

/// One rule: the value at `extract` written to `generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransformRule {
    /// A path into the record (`address.city`, `lines[*].sku`) or a handlebars expression.
    #[schema(example = "address.city")]
    pub extract: String,
    /// The field it is written to, dotted for nesting.
    #[schema(example = "city")]
    pub generate: String,
    /// integrator.io's editor key for the rule; kept, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Transform {
    /// One compiled mapping per group of rules; errors name the rule under `at`.
    pub fn compile(&self, at: &str) -> Result<Vec<CompiledMapping>, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let expr = match self {
            Transform::Expression(expr) => expr,
            // Scripts run in the engine, page by page (sluice-core's `hooks::shaping`).
            Transform::Script(h) => {
                e.add(
                    format!("{at}.script"),
                    format!("script {}.{} is not rules", h.script_id, h.function),
                );
                return Err(e);
            }
        };
        if expr.version != "1" {
            e.add(
                format!("{at}.expression.version"),
                format!("'{}' is not 1", expr.version),
            );
        }
        let mut groups = Vec::new();
        for (i, group) in expr.rules.iter().enumerate() {
            let fields: Vec<FieldMapping> = group
                .iter()
                .map(|r| FieldMapping {
                    extract: Some(r.extract.clone()),
                    generate: r.generate.clone(),
                    ..FieldMapping::default()
                })
                .collect();
            let at = format!("{at}.expression.rules[{i}]");
            groups.push(CompiledMapping {
                fields: compile_fields(&fields, &at, &mut e),
                lists: Vec::new(),
            });
        }
        e.into_result()?;
        Ok(groups)
    }

    pub fn validate_into(&self, e: &mut ValidationErrors, at: &str) {
        if let Transform::Script(h) = self {
            return h.validate_into(e, &format!("{at}.script"));
        }
        if let Err(errors) = self.compile(at) {
            e.0.extend(errors.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_integrator_io_rules_and_names_a_bad_one() {
        let t: Transform = serde_json::from_value(json!({"type": "expression", "expression":
            {"version": "1", "rules": [[{"extract": "a", "generate": "b", "key": "k1"},
                                        {"extract": "c[", "generate": "d"}]]}}))
        .unwrap();
        let e = t.compile("transform").unwrap_err();
        assert_eq!(
            e.0[0].field, "transform.expression.rules[0][1].extract",
            "{e}"
        );
        let e = serde_json::from_value::<Transform>(
            json!({"type": "script", "expression": {"rules": []}}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("type \"script\" takes script"),
            "{e}"
        );
        let t: Transform = serde_json::from_value(
            json!({"type": "script", "script": {"_scriptId": "s", "function": "transform"}}),
        )
        .unwrap();
        assert!(matches!(t, Transform::Script(_)));
    }
}
