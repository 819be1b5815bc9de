//! CEL conditions (output filters, evaluators), compiled once per process, and what a
//! condition reads of a variable ([`ConditionCache::reads`]), so that only that needs to be
//! kept of a big value.

use cel::common::ast::{operators, EntryExpr, Expr, IdedExpr, LiteralValue};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

/// One step of a member path: a field (`.name`, `["name"]`) or a list index (`[3]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Field(String),
    Index(u64),
}

/// What a condition reads of one variable.
#[derive(Debug, Clone, PartialEq)]
pub enum Reads {
    /// All of it (it is used as a whole, or indexed by something only known when it runs).
    Whole,
    /// Only the values at these member paths (and whatever lies below them); none at all
    /// when empty. A path may not exist in a given value: the condition then reads that it
    /// does not.
    Paths(BTreeSet<Vec<Step>>),
}

impl Reads {
    fn add(&mut self, path: Vec<Step>) {
        match self {
            Reads::Whole => {}
            Reads::Paths(_) if path.is_empty() => *self = Reads::Whole,
            Reads::Paths(paths) => {
                paths.insert(path);
            }
        }
    }
}

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

    /// What `expression` reads of the variable `var`: the longest member paths of constant
    /// fields and indexes it follows from `var` (`response.body.items[0].id`); a path whose
    /// value is passed on whole (`size(response.body.items)`) reads all below it.
    pub fn reads(&self, expression: &str, var: &str) -> Result<Reads, String> {
        let program = self.program(expression)?;
        let mut reads = Reads::Paths(BTreeSet::new());
        reads_of(program.expression(), var, &mut reads);
        Ok(reads)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.programs.read().unwrap().len()
    }
}

fn reads_of(expr: &IdedExpr, var: &str, reads: &mut Reads) {
    if let Some(path) = member_path(expr, var) {
        reads.add(path);
        return;
    }
    let mut visit = |e: &IdedExpr| reads_of(e, var, reads);
    match &expr.expr {
        Expr::Select(s) => visit(&s.operand),
        Expr::Call(c) => {
            if let Some(target) = &c.target {
                visit(target);
            }
            c.args.iter().for_each(visit);
        }
        Expr::Comprehension(c) => {
            // A loop variable named like `var` hides it: read all of it rather than guess.
            let hides = [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)]
                .into_iter()
                .flatten()
                .any(|v| v == var);
            if hides {
                *reads = Reads::Whole;
                return;
            }
            for e in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                visit(e);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(visit),
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(e) = &entry.expr {
                    visit(&e.key);
                    visit(&e.value);
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    visit(&f.value);
                }
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// The path when `expr` is `var` followed by constant fields and indexes only.
fn member_path(expr: &IdedExpr, var: &str) -> Option<Vec<Step>> {
    match &expr.expr {
        Expr::Ident(name) if name == var => Some(Vec::new()),
        Expr::Select(s) => {
            let mut path = member_path(&s.operand, var)?;
            path.push(Step::Field(s.field.clone()));
            Some(path)
        }
        Expr::Call(c)
            if c.func_name == operators::INDEX && c.target.is_none() && c.args.len() == 2 =>
        {
            let step = match &c.args[1].expr {
                Expr::Literal(LiteralValue::Int(i)) if **i >= 0 => Step::Index(**i as u64),
                Expr::Literal(LiteralValue::UInt(u)) => Step::Index(**u),
                Expr::Literal(LiteralValue::String(s)) => Step::Field(s.to_string()),
                _ => return None,
            };
            let mut path = member_path(&c.args[0], var)?;
            path.push(step);
            Some(path)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(expression: &str) -> Reads {
        ConditionCache::default()
            .reads(expression, "response")
            .unwrap()
    }

    fn field(names: &[&str]) -> Vec<Step> {
        names.iter().map(|n| Step::Field(n.to_string())).collect()
    }

    #[test]
    fn what_a_condition_reads_of_a_variable() {
        let Reads::Paths(p) = paths(sluice_model::DEFAULT_EVALUATOR) else {
            panic!()
        };
        assert_eq!(p, BTreeSet::from([field(&["status"])]));
        let Reads::Paths(p) = paths(
            "response.body.result.ok == true && has(response.body.meta.next) && response.body['x-y'][2].id != record.id && size(response.body.items) > 0",
        ) else {
            panic!()
        };
        let mut indexed = field(&["body", "x-y"]);
        indexed.extend([Step::Index(2), Step::Field("id".into())]);
        assert_eq!(
            p,
            BTreeSet::from([
                field(&["body", "result", "ok"]),
                field(&["body", "meta", "next"]),
                indexed,
                field(&["body", "items"]),
            ])
        );
        // Indexed by a value only known when it runs: the list is read whole.
        let Reads::Paths(p) = paths("response.body.items[record.i].ok") else {
            panic!()
        };
        assert_eq!(p, BTreeSet::from([field(&["body", "items"])]));
        let Reads::Paths(p) = paths("response.body.items.exists(i, i.ok)") else {
            panic!()
        };
        assert_eq!(p, BTreeSet::from([field(&["body", "items"])]));
        assert_eq!(paths("'ok' in response.body || response.status == 200"), {
            let mut r = Reads::Paths(BTreeSet::new());
            r.add(field(&["body"]));
            r.add(field(&["status"]));
            r
        });
        assert_eq!(paths("size(response) > 2"), Reads::Whole);
        assert_eq!(paths("[1].exists(response, response > 0)"), Reads::Whole);
        let Reads::Paths(p) = paths("record.n > 1") else {
            panic!()
        };
        assert!(p.is_empty());
    }

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
