use crate::flow::{chain_cycle, chain_loop_message};
use crate::{
    Connection, Export, Flow, Import, ProcessorType, Script, UsesScripts, ValidationErrors,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use utoipa::ToSchema;

/// A set of definitions that belong together: what `sluice run` and `sluice validate` read,
/// and what `GET /flows/{id}/template` returns (with secrets removed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "connections": [{"_id": "orders-api", "name": "Orders API", "type": "http",
                     "http": {"baseURI": "https://api.example.com/v1"}}],
    "exports": [{"_id": "incoming", "name": "Orders posted to the run", "type": "webhook"}],
    "imports": [{"_id": "post-order", "name": "Create each order", "type": "http",
                 "_connectionId": "orders-api", "http": {"relativeURI": "/orders"}}],
    "flows": [{"_id": "orders", "name": "Orders to the API",
               "pageGenerators": [{"_exportId": "incoming"}],
               "pageProcessors": [{"type": "import", "_importId": "post-order"}]}]}))]
pub struct Bundle {
    /// Every definition in a bundle needs its `_id`: the others refer to it.
    #[serde(default)]
    pub connections: Vec<Connection>,
    #[serde(default)]
    pub exports: Vec<Export>,
    #[serde(default)]
    pub imports: Vec<Import>,
    #[serde(default)]
    pub flows: Vec<Flow>,
    /// The scripts the hooks of the exports, imports and flows call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<Script>,
}

impl Bundle {
    /// Checks every definition and every reference between them.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        unique_ids(
            &mut e,
            "connections",
            self.connections.iter().map(|x| &x.id),
        );
        unique_ids(&mut e, "exports", self.exports.iter().map(|x| &x.id));
        unique_ids(&mut e, "imports", self.imports.iter().map(|x| &x.id));
        unique_ids(&mut e, "flows", self.flows.iter().map(|x| &x.id));
        unique_ids(&mut e, "scripts", self.scripts.iter().map(|x| &x.id));
        self.validate_scripts(&mut e);
        let conns: HashSet<&str> = self.connections.iter().map(|c| c.id.as_str()).collect();
        let exports: HashSet<&str> = self.exports.iter().map(|x| x.id.as_str()).collect();
        let imports: HashSet<&str> = self.imports.iter().map(|x| x.id.as_str()).collect();
        let flows: HashSet<&str> = self.flows.iter().map(|x| x.id.as_str()).collect();
        for (i, c) in self.connections.iter().enumerate() {
            let at = format!("connections[{i}]");
            if c.id.is_empty() {
                e.add(format!("{at}._id"), "is required in a bundle");
            }
            if let Err(err) = c.validate() {
                e.nest(&at, err);
            }
        }
        for (i, x) in self.exports.iter().enumerate() {
            let at = format!("exports[{i}]");
            if x.id.is_empty() {
                e.add(format!("{at}._id"), "is required in a bundle");
            }
            if let Err(err) = x.validate() {
                e.nest(&at, err);
            }
            if let Some(c) = &x.connection_id {
                if !conns.contains(c.as_str()) {
                    e.add(
                        format!("{at}._connectionId"),
                        format!("Connection not found: {c}"),
                    );
                }
            }
        }
        for (i, x) in self.imports.iter().enumerate() {
            let at = format!("imports[{i}]");
            if x.id.is_empty() {
                e.add(format!("{at}._id"), "is required in a bundle");
            }
            if let Err(err) = x.validate() {
                e.nest(&at, err);
            }
            if !x.connection_id.is_empty() && !conns.contains(x.connection_id.as_str()) {
                e.add(
                    format!("{at}._connectionId"),
                    format!("Connection not found: {}", x.connection_id),
                );
            }
        }
        for (i, f) in self.flows.iter().enumerate() {
            let at = format!("flows[{i}]");
            if f.id.is_empty() {
                e.add(format!("{at}._id"), "is required in a bundle");
            }
            if let Err(err) = f.validate() {
                e.nest(&at, err);
            }
            for (j, g) in f.page_generators.iter().enumerate() {
                if !g.export_id.is_empty() && !exports.contains(g.export_id.as_str()) {
                    e.add(
                        format!("{at}.pageGenerators[{j}]._exportId"),
                        format!("Export not found: {}", g.export_id),
                    );
                }
            }
            for step in f.steps().iter() {
                let p = step.processor;
                let known = match p.kind {
                    ProcessorType::Import => &imports,
                    ProcessorType::Export => &exports,
                };
                match p.target_id() {
                    Some(id) if !id.is_empty() && !known.contains(id) => e.add(
                        format!("{at}.{}.{}", step.field, p.target_field()),
                        match p.kind {
                            ProcessorType::Import => format!("Import not found: {id}"),
                            ProcessorType::Export => format!("Export not found: {id}"),
                        },
                    ),
                    _ => {}
                }
            }
            for (j, id) in f.run_next_flow_ids.iter().enumerate() {
                if !flows.contains(id.as_str()) {
                    e.add(
                        format!("{at}._runNextFlowIds[{j}]"),
                        format!("Flow not found: {id}"),
                    );
                }
            }
            if !f.id.is_empty() {
                let next = |id: &str| self.flow(id).map(|f| f.run_next_flow_ids.as_slice());
                if let Some(cycle) = chain_cycle(&f.id, next) {
                    e.add(format!("{at}._runNextFlowIds"), chain_loop_message(&cycle));
                }
            }
        }
        e.into_result()
    }

    /// Each script valid, and every script a definition names present.
    fn validate_scripts(&self, e: &mut ValidationErrors) {
        for (i, s) in self.scripts.iter().enumerate() {
            let at = format!("scripts[{i}]");
            if s.id.is_empty() {
                e.add(format!("{at}._id"), "is required in a bundle");
            }
            if let Err(err) = s.validate() {
                e.nest(&at, err);
            }
        }
        let scripts: HashSet<&str> = self.scripts.iter().map(|s| s.id.as_str()).collect();
        let users = (self.exports.iter().enumerate())
            .map(|(i, x)| (format!("exports[{i}]"), x.script_refs()))
            .chain(
                (self.imports.iter().enumerate())
                    .map(|(i, x)| (format!("imports[{i}]"), x.script_refs())),
            )
            .chain(
                (self.flows.iter().enumerate())
                    .map(|(i, x)| (format!("flows[{i}]"), x.script_refs())),
            );
        for (at, refs) in users {
            for (field, r) in refs {
                if !r.script_id.is_empty() && !scripts.contains(r.script_id.as_str()) {
                    e.add(
                        format!("{at}.{field}._scriptId"),
                        format!("Script not found: {}", r.script_id),
                    );
                }
            }
        }
    }

    pub fn flow(&self, id: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.id == id)
    }

    /// Every `secret:NAME` written in the bundle, with the field it is in
    /// (`connections[0].http.auth.token.token`), in order.
    pub fn secret_references(&self) -> Vec<(String, String)> {
        let mut found = Vec::new();
        let doc = serde_json::to_value(self).unwrap_or(Value::Null);
        collect_secret_references(&doc, String::new(), &mut found);
        found
    }
}

/// Two definitions of one kind with the same `_id`: storing the bundle would keep only the
/// last, silently.
fn unique_ids<'a>(e: &mut ValidationErrors, kind: &str, ids: impl Iterator<Item = &'a String>) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.enumerate() {
        if id.is_empty() {
            continue;
        }
        if let Some(j) = first.get(id.as_str()) {
            e.add(
                format!("{kind}[{i}]._id"),
                format!("'{id}' is already the _id of {kind}[{j}]; ids must be unique"),
            );
        } else {
            first.insert(id, i);
        }
    }
}

fn collect_secret_references(v: &Value, at: String, found: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) if crate::is_secret_reference(s) => {
            found.push((at, s["secret:".len()..].to_string()));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_secret_references(item, format!("{at}[{i}]"), found);
            }
        }
        Value::Object(fields) => {
            for (k, item) in fields {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                collect_secret_references(item, path, found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::Bundle;
    use serde_json::json;

    #[test]
    fn a_bundle_whose_chains_loop_is_invalid_naming_the_loop() {
        let flow = |id: &str, next: &[&str]| json!({"_id": id, "name": id, "pageGenerators": [{"_exportId": "e"}], "_runNextFlowIds": next});
        let bundle = |flows: Vec<serde_json::Value>| -> Bundle {
            serde_json::from_value(
                json!({"exports": [{"_id": "e", "name": "e", "type": "webhook"}], "flows": flows}),
            )
            .unwrap()
        };
        let ok = bundle(vec![flow("a", &["b"]), flow("b", &["c"]), flow("c", &[])]);
        assert!(ok.validate().is_ok());
        let looping = bundle(vec![
            flow("a", &["b"]),
            flow("b", &["c"]),
            flow("c", &["a"]),
        ]);
        let errors = looping.validate().unwrap_err().0;
        assert_eq!(
            errors.len(),
            3,
            "each flow on the loop is named: {errors:?}"
        );
        assert_eq!(errors[0].field, "flows[0]._runNextFlowIds");
        assert!(
            errors[0].message.contains("a → b → c → a"),
            "{}",
            errors[0].message
        );
    }
}
