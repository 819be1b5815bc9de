//! `docs/reference.md`: a field reference for every definition kind, written from the same
//! component schemas as `/openapi.json` (so from the model's serde types and their doc
//! comments). A test compares the file with [`markdown`], so it cannot go stale.

use crate::schemas::document_json;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write;

/// The kinds documented, in order, with what each is.
const KINDS: [(&str, &str); 6] = [
    ("Connection", "`POST /connections`; `connections[]` of a bundle"),
    ("Export", "`POST /exports`; `exports[]` of a bundle"),
    ("Import", "`POST /imports`; `imports[]` of a bundle"),
    ("Flow", "`POST /flows`; `flows[]` of a bundle"),
    ("Integration", "`POST /integrations`"),
    ("Bundle", "`sluice run`, `sluice validate`, `POST /flows/import-template`, `GET /flows/{id}/template`"),
];

fn schema(name: &str) -> &'static Value {
    &document_json()["components"]["schemas"][name]
}

fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")?
        .as_str()?
        .strip_prefix("#/components/schemas/")
}

/// A property's schema without the `null` of an `Option` (`oneOf [null, X]`).
fn unwrap_nullable(p: &Value) -> &Value {
    if let Some(Value::Array(list)) = p.get("oneOf") {
        let rest: Vec<&Value> = list.iter().filter(|b| b["type"] != "null").collect();
        if rest.len() == 1 {
            return rest[0];
        }
    }
    p
}

/// How a type reads in the table, and the object schemas it leads to.
fn type_of(p: &Value, nested: &mut Vec<String>) -> String {
    let p = unwrap_nullable(p);
    if let Some(name) = ref_name(p) {
        let target = schema(name);
        if let Some(Value::Array(values)) = target.get("enum") {
            return one_of(values);
        }
        // An untagged enum (a filter's `expression`: text or rules) reads as its choices.
        if let Some(Value::Array(choices)) = target.get("oneOf") {
            let choices: Vec<String> = choices.iter().map(|c| type_of(c, nested)).collect();
            return choices.join(" or ");
        }
        nested.push(name.to_string());
        return format!("[{name}](#{})", name.to_lowercase());
    }
    if let Some(Value::Array(values)) = p.get("enum") {
        return one_of(values);
    }
    let types: Vec<&str> = match &p["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => vec![],
    };
    match types.first().copied() {
        Some("array") => format!("array of {}", type_of(&p["items"], nested)),
        Some("integer") => "whole number".into(),
        Some("string") if p["format"] == "date-time" => "time (RFC 3339)".into(),
        Some(t) => t.into(),
        None => "any JSON".into(),
    }
}

fn one_of(values: &[Value]) -> String {
    let names: Vec<String> = values
        .iter()
        .filter_map(Value::as_str)
        .map(|v| format!("`{v}`"))
        .collect();
    format!("one of {}", names.join(", "))
}

/// A table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn description(p: &Value) -> String {
    let own = p.get("description").and_then(Value::as_str);
    let inner = unwrap_nullable(p)
        .get("description")
        .and_then(Value::as_str);
    cell(own.or(inner).unwrap_or(""))
}

fn section(out: &mut String, name: &str, intro: Option<&str>, todo: &mut Vec<String>) {
    let s = schema(name);
    let _ = writeln!(out, "\n## {name}\n");
    if let Some(d) = s.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", cell(d));
    }
    if let Some(used) = intro {
        let _ = writeln!(out, "Used in: {used}.\n");
    }
    let required: BTreeSet<&str> = s["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let _ = writeln!(out, "| field | type | required | description |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (field, p) in s["properties"].as_object().into_iter().flatten() {
        let ty = type_of(p, todo);
        let req = if required.contains(field.as_str()) {
            "yes"
        } else {
            ""
        };
        let _ = writeln!(out, "| `{field}` | {ty} | {req} | {} |", description(p));
    }
    if s["additionalProperties"] == false {
        let _ = writeln!(out, "\nNo other fields are accepted.");
    }
}

/// The whole reference, as written to `docs/reference.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Definition field reference\n\n\
         Every field of every definition kind, generated from the schemas the API publishes at\n\
         `/openapi.json` (which are derived from the types Sluice reads), so it says what Sluice\n\
         accepts. Regenerate with `SLUICE_BLESS=1 cargo test -p sluice-api --test reference`.\n\
         Field names follow integrator.io's; see the README for what carries over from it.\n",
    );
    let mut done = BTreeSet::new();
    for (kind, used) in KINDS {
        let mut todo = Vec::new();
        section(&mut out, kind, Some(used), &mut todo);
        done.insert(kind.to_string());
        // The kind's nested objects follow it, each once, in the order first met.
        while !todo.is_empty() {
            let name = todo.remove(0);
            if KINDS.iter().any(|(k, _)| *k == name) || !done.insert(name.clone()) {
                continue;
            }
            let mut more = Vec::new();
            section(&mut out, &name, None, &mut more);
            todo.splice(0..0, more);
        }
    }
    out
}
