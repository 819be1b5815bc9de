//! `sluice validate`: every problem of a bundle or definition, by field.

use anyhow::Context;
use serde_json::Value;
use sluice_model::{Bundle, Connection, Export, Flow, Import, ValidationErrors};
use std::path::Path;
use std::process::ExitCode;

/// Reads a JSON file, with line and column on syntax errors.
pub fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: invalid JSON at line {} column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

/// Parses a bundle, naming the definition a shape error is in.
pub fn parse_bundle(path: &Path) -> anyhow::Result<Bundle> {
    let v = read_json(path)?;
    for key in ["connections", "exports", "imports", "flows"] {
        if let Some(items) = v.get(key).and_then(Value::as_array) {
            for (i, item) in items.iter().enumerate() {
                let check = match key {
                    "connections" => serde_json::from_value::<Connection>(item.clone()).map(|_| ()),
                    "exports" => serde_json::from_value::<Export>(item.clone()).map(|_| ()),
                    "imports" => serde_json::from_value::<Import>(item.clone()).map(|_| ()),
                    _ => serde_json::from_value::<Flow>(item.clone()).map(|_| ()),
                };
                check.map_err(|e| anyhow::anyhow!("{key}[{i}]: {e}"))?;
            }
        }
    }
    serde_json::from_value(v).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn print_errors(errors: &ValidationErrors) {
    for e in &errors.0 {
        println!("{}: {}", e.field, e.message);
    }
}

pub fn run(path: &Path, kind: Option<&str>) -> anyhow::Result<ExitCode> {
    let v = read_json(path)?;
    let kind = kind.map(str::to_string).unwrap_or_else(|| {
        if v.get("pageGenerators").is_some() {
            "flow".into()
        } else {
            "bundle".into()
        }
    });
    let shape = |r: Result<(), serde_json::Error>| {
        r.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    };
    let result = match kind.as_str() {
        "bundle" => {
            let b = parse_bundle(path)?;
            let r = b.validate();
            if r.is_ok() {
                println!(
                    "ok: {} connections, {} exports, {} imports, {} flows",
                    b.connections.len(),
                    b.exports.len(),
                    b.imports.len(),
                    b.flows.len()
                );
            }
            r
        }
        "flow" => {
            let f: Flow = serde_json::from_value(v.clone())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            f.validate()
        }
        "export" => {
            let x: Export = serde_json::from_value(v.clone())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            x.validate()
        }
        "import" => {
            let x: Import = serde_json::from_value(v.clone())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            x.validate()
        }
        "connection" => {
            let x: Connection = serde_json::from_value(v.clone())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            x.validate()
        }
        other => {
            shape(Ok(()))?;
            anyhow::bail!(
                "--kind must be bundle, flow, export, import or connection, not '{other}'"
            )
        }
    };
    match result {
        Ok(()) => {
            if kind != "bundle" {
                println!("ok: {kind}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            print_errors(&errors);
            Ok(ExitCode::from(1))
        }
    }
}
