//! `sluice validate`: every problem of a bundle or definition, by field, and a warning for
//! each `secret:NAME` whose variable is not set here.

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice_core::ports::secrets::{env_var, EnvSecrets, Secrets};
use sluice_model::{parse, Bundle, Connection, Export, Flow, Import, ValidationErrors};
use std::path::Path;
use std::process::ExitCode;

/// Reads a JSON file, with line and column on syntax errors. A UTF-8 byte order mark (which
/// some Windows editors write) is skipped.
pub fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}: invalid JSON at line {} column {}: {}",
            path.display(),
            e.line(),
            e.column(),
            parse::in_words(&e.to_string())
        )
    })
}

/// Reads one definition (`what`: "a bundle", "a flow", ...), naming the field a shape error
/// is in.
fn read_definition<T: DeserializeOwned>(path: &Path, what: &str, v: Value) -> anyhow::Result<T> {
    parse::definition(what, v).map_err(|e| {
        if e.field.is_empty() {
            anyhow::anyhow!("{}: {}", path.display(), e.message)
        } else {
            anyhow::anyhow!("{}: {}: {}", path.display(), e.field, e.message)
        }
    })
}

/// Parses a bundle, naming the definition and field a shape error is in.
pub fn parse_bundle(path: &Path) -> anyhow::Result<Bundle> {
    read_definition(path, "a bundle", read_json(path)?)
}

/// A bundle that validates and the id of its flow `flow` (default: its first), for a
/// command that `does` something with it ("run", "previewed"): its problems are printed,
/// with nothing done.
pub fn valid_bundle(
    path: &Path,
    flow: Option<&str>,
    does: &str,
) -> anyhow::Result<(Bundle, String)> {
    let bundle = parse_bundle(path)?;
    if let Err(errors) = bundle.validate() {
        for e in &errors.0 {
            eprintln!("{}: {}", e.field, e.message);
        }
        anyhow::bail!(
            "{} is not valid ({} problem(s)); nothing was {does}",
            path.display(),
            errors.0.len()
        );
    }
    let flow_id = match flow {
        Some(id) => bundle
            .flow(id)
            .map(|f| f.id.clone())
            .with_context(|| format!("no flow '{id}' in {}", path.display()))?,
        None => bundle
            .flows
            .first()
            .map(|f| f.id.clone())
            .with_context(|| format!("{} has no flows", path.display()))?,
    };
    Ok((bundle, flow_id))
}

fn print_errors(errors: &ValidationErrors) {
    for e in &errors.0 {
        println!("{}: {}", e.field, e.message);
    }
}

/// `secret:NAME` references whose variable is not set in this environment: the run would
/// fail there. Only a warning: the deployment that runs the flow may well have them.
fn warn_unset_secrets(bundle: &Bundle) {
    for (field, name) in bundle.secret_references() {
        if EnvSecrets.get(&name).is_none() {
            eprintln!(
                "warning: {field}: secret:{name} is not set here ({} is empty)",
                env_var(&name)
            );
        }
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
    let result = match kind.as_str() {
        "bundle" => {
            let b: Bundle = read_definition(path, "a bundle", v)?;
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
            warn_unset_secrets(&b);
            r
        }
        "flow" => read_definition::<Flow>(path, "a flow", v)?.validate(),
        "export" => read_definition::<Export>(path, "an export", v)?.validate(),
        "import" => read_definition::<Import>(path, "an import", v)?.validate(),
        "connection" => read_definition::<Connection>(path, "a connection", v)?.validate(),
        other => anyhow::bail!(
            "--kind must be bundle, flow, export, import or connection, not '{other}'"
        ),
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
