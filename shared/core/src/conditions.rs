//! CEL conditions (output filters, evaluators), compiled once per process.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Compiled CEL programs keyed by their source text.
#[derive(Default)]
pub struct ConditionCache {
    programs: RwLock<HashMap<String, Arc<cel::Program>>>,
}

impl ConditionCache {
    fn program(&self, expression: &str) -> Result<Arc<cel::Program>, String> {
        if let Some(p) = self.programs.read().unwrap().get(expression) {
            return Ok(p.clone());
        }
        let program = Arc::new(
            cel::Program::compile(expression).map_err(|e| format!("invalid condition: {e}"))?,
        );
        self.programs
            .write()
            .unwrap()
            .insert(expression.to_string(), program.clone());
        Ok(program)
    }

    /// Evaluates `expression` with the given variables; it must yield a bool.
    pub fn check(&self, expression: &str, variables: &[(&str, &Value)]) -> Result<bool, String> {
        let program = self.program(expression)?;
        let mut ctx = cel::Context::default();
        for (name, value) in variables {
            let v = cel::to_value(value)
                .map_err(|e| format!("cannot pass {name} to the condition: {e}"))?;
            ctx.add_variable_from_value(*name, v);
        }
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "condition `{expression}` gave {other:?}, not true or false"
            )),
            Err(e) => Err(format!("condition `{expression}` failed: {e}")),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.programs.read().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_evaluator_judges_status() {
        let c = ConditionCache::default();
        let ok = json!({"status": 201, "headers": {}, "body": {}});
        let bad = json!({"status": 500, "headers": {}, "body": {}});
        let expr = sluice_model::DEFAULT_EVALUATOR;
        assert!(c.check(expr, &[("response", &ok)]).unwrap());
        assert!(!c.check(expr, &[("response", &bad)]).unwrap());
        assert_eq!(c.len(), 1, "compiled once");
    }

    #[test]
    fn conditions_over_records_and_errors() {
        let c = ConditionCache::default();
        let r = json!({"amount": 12.5, "country": "DE", "tags": ["a"]});
        assert!(c
            .check(
                "record.amount > 10.0 && record.country == 'DE'",
                &[("record", &r)]
            )
            .unwrap());
        assert!(!c
            .check("record.country in ['FR', 'US']", &[("record", &r)])
            .unwrap());
        assert!(c
            .check("record.amount", &[("record", &r)])
            .unwrap_err()
            .contains("not true or false"));
        assert!(c
            .check("record.(", &[("record", &r)])
            .unwrap_err()
            .contains("invalid condition"));
        assert!(
            c.check("record.missing == 1", &[("record", &r)]).is_err(),
            "a missing field is an error, not false"
        );
    }
}
