//! Scripts (JavaScript that hooks, script filters and script transforms call) and the hook
//! references definitions carry (`hooks.<name> = {_scriptId, function}`), as integrator.io
//! writes them.
//!
//! Invariant: a [`HookRef`] that passed validation names a safe script id and a function name
//! that is a plain JavaScript identifier, so the engine can look it up without evaluating
//! anything the user wrote outside the script itself.

use crate::{validate, ValidationErrors};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Scripts larger than this are refused: they are compiled in every process that runs them.
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;

/// JavaScript source holding one or more functions (top-level `function name(options) {..}`),
/// named by hooks, filters and transforms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"_id": "order-hooks", "name": "Order hooks",
    "content": "function preMap(options) {\n  return options.data.map(d => ({data: {...d, total: d.qty * d.price}}));\n}"}))]
pub struct Script {
    /// The id; generated on create when absent. Letters, digits, `_`, `-`, `.`; at most 128.
    #[serde(rename = "_id", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Shown in lists and messages; required.
    // serde default: a missing name gets validate()'s message naming the field.
    #[serde(default)]
    #[schema(required = true)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JavaScript source (ES2020). Functions are declared at its top level; each hook
    /// names the one it calls. No file system, network or process access; `console.log`
    /// writes to the job's logs.
    // serde default: a missing content gets validate()'s message naming the field.
    #[serde(default)]
    #[schema(required = true)]
    pub content: String,
    /// The integration this belongs to.
    #[serde(
        rename = "_integrationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub integration_id: Option<String>,
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

impl Script {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        validate::identity(&mut e, &self.id, &self.name);
        if self.content.trim().is_empty() {
            e.add("content", "is required: the script's JavaScript source");
        } else if self.content.len() > MAX_SCRIPT_BYTES {
            e.add(
                "content",
                format!(
                    "is {} bytes; a script may have at most {MAX_SCRIPT_BYTES}",
                    self.content.len()
                ),
            );
        }
        e.into_result()
    }
}

/// One function of one script, as a hook, filter or transform names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"_scriptId": "order-hooks", "function": "preMap"}))]
pub struct HookRef {
    /// The script's `_id`.
    #[serde(rename = "_scriptId")]
    pub script_id: String,
    /// The name of a function declared at the top level of the script.
    pub function: String,
}

impl HookRef {
    /// Problems are added under `field` (`hooks.preMap`, ...).
    pub fn validate_into(&self, e: &mut ValidationErrors, field: &str) {
        if self.script_id.is_empty() {
            e.add(format!("{field}._scriptId"), "is required");
        } else if let Some(why) = validate::id_problem(&self.script_id) {
            e.add(format!("{field}._scriptId"), why);
        }
        if !is_identifier(&self.function) {
            e.add(
                format!("{field}.function"),
                format!(
                    "'{}' is not a function name (letters, digits, `_` or `$`, not starting with a digit)",
                    self.function
                ),
            );
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// The hook an export runs (as a page generator).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportHooks {
    /// Called with each page before it is saved: `{data, errors, pageIndex,
    /// lastExportDateTime, currentExportDateTime, _exportId, _flowId, settings}`; returns
    /// `{data, errors, abort}`. Records it drops count as ignored; `abort` stops new pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_save_page: Option<HookRef>,
}

/// The hooks an import runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportHooks {
    /// Before the request is built: `{data, settings}`; returns one `{data}`, `{errors}`,
    /// `{data, errors}` or `{}` (ignore) per record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_map: Option<HookRef>,
    /// After the mapping, on what the templates render: `{preMapData, postMapData}`;
    /// returns as preMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_map: Option<HookRef>,
    /// After the reply is judged: `{preMapData, postMapData, responseData}`, each
    /// `responseData` `{statusCode, errors, ignored, id, _json}`; returns the responseData,
    /// same length (clearing `errors` makes a success, `ignored: true` an ignore; a changed
    /// `_json` or `statusCode` is what the responseMapping maps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_submit: Option<HookRef>,
}

/// The hook a flow's page processor runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessorHooks {
    /// After the responseMapping: `{postResponseMapData, responseData}`; returns the
    /// postResponseMapData, same length, which the next processor reads as its records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_response_map: Option<HookRef>,
}

/// Where a script is called, for messages and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum HookPoint {
    PreSavePage,
    PreMap,
    PostMap,
    PostSubmit,
    PostResponseMap,
    Filter,
    Transform,
}

impl HookPoint {
    /// The field name: `preSavePage`, `preMap`, ...
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::PreSavePage => "preSavePage",
            HookPoint::PreMap => "preMap",
            HookPoint::PostMap => "postMap",
            HookPoint::PostSubmit => "postSubmit",
            HookPoint::PostResponseMap => "postResponseMap",
            HookPoint::Filter => "filter",
            HookPoint::Transform => "transform",
        }
    }
}

impl ExportHooks {
    /// Each hook set, with the field it sits under.
    pub fn refs(&self) -> impl Iterator<Item = (HookPoint, &HookRef)> {
        [(HookPoint::PreSavePage, &self.pre_save_page)]
            .into_iter()
            .filter_map(|(p, r)| r.as_ref().map(|r| (p, r)))
    }
}

impl ImportHooks {
    pub fn refs(&self) -> impl Iterator<Item = (HookPoint, &HookRef)> {
        [
            (HookPoint::PreMap, &self.pre_map),
            (HookPoint::PostMap, &self.post_map),
            (HookPoint::PostSubmit, &self.post_submit),
        ]
        .into_iter()
        .filter_map(|(p, r)| r.as_ref().map(|r| (p, r)))
    }
}

impl ProcessorHooks {
    pub fn refs(&self) -> impl Iterator<Item = (HookPoint, &HookRef)> {
        [(HookPoint::PostResponseMap, &self.post_response_map)]
            .into_iter()
            .filter_map(|(p, r)| r.as_ref().map(|r| (p, r)))
    }
}

/// Where a definition names scripts: each reference with its field (`hooks.preMap`), so
/// reference checks (bundles, the API), dependencies and "still used by" read one list.
pub trait UsesScripts {
    fn script_refs(&self) -> Vec<(String, &HookRef)>;

    fn uses_script(&self, id: &str) -> bool {
        self.script_refs().iter().any(|(_, r)| r.script_id == id)
    }
}

fn refs_under<'a>(
    field: &str,
    refs: impl Iterator<Item = (HookPoint, &'a HookRef)>,
) -> impl Iterator<Item = (String, &'a HookRef)> {
    let field = field.to_string();
    refs.map(move |(p, r)| (format!("{field}.{}", p.name()), r))
}

impl UsesScripts for crate::Export {
    fn script_refs(&self) -> Vec<(String, &HookRef)> {
        let mut out: Vec<_> = (self.hooks.iter())
            .flat_map(|h| refs_under("hooks", h.refs()))
            .collect();
        if let Some(crate::Transform::Script(h)) = &self.transform {
            out.push(("transform.script".into(), h));
        }
        out.extend(filter_ref(self.filter.as_ref()));
        out
    }
}

impl UsesScripts for crate::Import {
    fn script_refs(&self) -> Vec<(String, &HookRef)> {
        let mut out: Vec<_> = (self.hooks.iter())
            .flat_map(|h| refs_under("hooks", h.refs()))
            .collect();
        out.extend(filter_ref(self.filter.as_ref()));
        out
    }
}

fn filter_ref(filter: Option<&crate::Filter>) -> Option<(String, &HookRef)> {
    match filter {
        Some(crate::Filter::Script(h)) => Some(("filter.script".into(), h)),
        _ => None,
    }
}

impl UsesScripts for crate::Flow {
    fn script_refs(&self) -> Vec<(String, &HookRef)> {
        let mut out = Vec::new();
        for step in self.steps().iter() {
            if let Some(h) = &step.processor.hooks {
                out.extend(refs_under(&format!("{}.hooks", step.field), h.refs()));
            }
        }
        for (i, r) in self.routers.iter().enumerate() {
            for (j, b) in r.branches.iter().enumerate() {
                if let Some(crate::Filter::Script(h)) = &b.input_filter {
                    out.push((format!("routers[{i}].branches[{j}].inputFilter.script"), h));
                }
            }
        }
        out
    }
}

/// Validates each hook of a set under `field` (`hooks`).
pub(crate) fn validate_hooks<'a>(
    e: &mut ValidationErrors,
    field: &str,
    refs: impl Iterator<Item = (HookPoint, &'a HookRef)>,
) {
    for (point, r) in refs {
        r.validate_into(e, &format!("{field}.{}", point.name()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_names_a_script_and_a_plain_function_name() {
        let mut e = ValidationErrors::new();
        HookRef {
            script_id: "s1".into(),
            function: "preMap".into(),
        }
        .validate_into(&mut e, "hooks.preMap");
        assert!(e.is_empty(), "{e}");
        HookRef {
            script_id: "".into(),
            function: "x); evil(".into(),
        }
        .validate_into(&mut e, "hooks.preMap");
        let fields: Vec<&str> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["hooks.preMap._scriptId", "hooks.preMap.function"]);
    }

    #[test]
    fn a_script_needs_content() {
        let s = Script {
            id: "s1".into(),
            name: "S".into(),
            description: None,
            content: "  ".into(),
            integration_id: None,
            created_at: None,
            last_modified: None,
        };
        let e = s.validate().unwrap_err();
        assert_eq!(e.0[0].field, "content");
    }
}
