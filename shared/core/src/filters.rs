//! Record filters, both forms: CEL conditions (through [`ConditionCache`]) and
//! integrator.io's rule expressions (`sluice_model::filter::Rule`, compiled once per process
//! here and evaluated by [`evaluate`]). Used by trigger (the export's output filter),
//! translate (the import's filter) and routers' branch filters.
//!
//! Invariant: a filter decides each record one of three ways, never silently: it holds
//! (the record goes on), it does not (the record is ignored and counted, with the reason),
//! or it cannot be decided (text where the rule needs a number, a CEL error): a record error
//! naming the filter.

use crate::compiled::{key_of, CompiledCache};
use crate::conditions::ConditionCache;
use crate::values::{is_empty, loose_eq, number_of, number_value, order, text_of, truthy};
use serde_json::Value;
use sluice_model::filter::{Comparison, Function, Operand, Rule, RuleExpression, TextTest};
use sluice_model::{FailureCode, Filter, PageRecord, RecordState};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::Arc;

/// Compiled rule expressions keyed by their JSON text.
#[derive(Default)]
pub struct FilterCache {
    rules: CompiledCache<Rule>,
}

impl FilterCache {
    /// The compiled rule of `expression` (compiled on first use).
    pub fn rule(&self, expression: &RuleExpression) -> Result<Arc<Rule>, String> {
        self.rules.get(&key_of(&expression.rules), || {
            Rule::compile(&expression.rules)
                .map_err(|e| format!("invalid filter rules at {}: {}", e.at, e.message))
        })
    }

    /// `filter` ready to judge records: looked up once per page, not per record.
    pub fn compile<'a>(&self, filter: &'a Filter) -> Result<Compiled<'a>, String> {
        Ok(match filter {
            Filter::Cel(expression) => Compiled::Cel(expression),
            Filter::Rules(expression) => Compiled::Rules(self.rule(expression)?),
            // Scripts run in the engine, page by page (`crate::hooks::shaping`), not here.
            Filter::Script(h) => {
                return Err(format!(
                    "script filter {}.{} cannot be checked record by record here",
                    h.script_id, h.function
                ))
            }
        })
    }

    /// Does `filter` hold for `record`? CEL conditions come from `cel`.
    pub fn check(
        &self,
        cel: &ConditionCache,
        filter: &Filter,
        record: &Value,
    ) -> Result<bool, String> {
        self.compile(filter)?.check(cel, record)
    }
}

/// A filter as the stages apply it.
pub enum Compiled<'a> {
    /// CEL programs are cached by their text in [`ConditionCache`].
    Cel(&'a str),
    Rules(Arc<Rule>),
}

impl Compiled<'_> {
    pub fn check(&self, cel: &ConditionCache, record: &Value) -> Result<bool, String> {
        match self {
            Compiled::Cel(expression) => cel.check(expression, &[("record", record)]),
            Compiled::Rules(rule) => evaluate(rule, record),
        }
    }
}

/// How a filter reads in a message: the CEL text, or `rules [...]`.
pub fn describe(filter: &Filter) -> String {
    match filter {
        Filter::Cel(expression) => format!("`{expression}`"),
        Filter::Rules(r) => format!(
            "rules `{}`",
            serde_json::to_string(&r.rules).unwrap_or_default()
        ),
        Filter::Script(h) => format!("script {}, function {}", h.script_id, h.function),
    }
}

/// Applies `filter` to the active records: the ones it rejects are ignored, the ones it
/// cannot decide fail with `code`. `whose` names the filter in the reason
/// ("the export's filter").
pub(crate) fn apply<'a>(
    sluice: &crate::Sluice,
    filter: &Filter,
    (whose, code): (&str, FailureCode),
    records: impl Iterator<Item = &'a mut PageRecord>,
) {
    let active = records.filter(|r| r.is_active());
    let compiled = match sluice.caches.filters.compile(filter) {
        Ok(c) => c,
        Err(e) => {
            active.for_each(|r| r.fail(code, e.clone()));
            return;
        }
    };
    let reason = format!("filtered out by {whose} {}", describe(filter));
    for r in active {
        match compiled.check(&sluice.caches.conditions, &r.data) {
            Ok(true) => {}
            Ok(false) => {
                r.state = RecordState::Ignored {
                    reason: reason.clone(),
                }
            }
            Err(e) => r.fail(code, e),
        }
    }
}

impl crate::Sluice {
    /// Does `filter` hold for `record`? (Compiled once per process.)
    pub fn filter_passes(&self, filter: &Filter, record: &Value) -> Result<bool, String> {
        self.caches
            .filters
            .check(&self.caches.conditions, filter, record)
    }
}

/// Evaluates a compiled rule over a record.
pub fn evaluate(rule: &Rule, record: &Value) -> Result<bool, String> {
    Ok(match rule {
        Rule::All(rules) => {
            for r in rules {
                if !evaluate(r, record)? {
                    return Ok(false);
                }
            }
            true
        }
        Rule::Any(rules) => {
            for r in rules {
                if evaluate(r, record)? {
                    return Ok(true);
                }
            }
            false
        }
        Rule::Not(r) => !evaluate(r, record)?,
        Rule::Compare(c, a, b) => compare(*c, &*value(a, record)?, &*value(b, record)?),
        Rule::Text(t, a, b) => {
            let (s, part) = (text_of(&*value(a, record)?), text_of(&*value(b, record)?));
            match t {
                TextTest::Contains => s.contains(&part),
                TextTest::DoesNotContain => !s.contains(&part),
                TextTest::StartsWith => s.starts_with(&part),
                TextTest::EndsWith => s.ends_with(&part),
            }
        }
        Rule::Matches(a, re) => re.is_match(&text_of(&*value(a, record)?)),
        Rule::Empty(a, empty) => is_empty(&*value(a, record)?) == *empty,
        Rule::AnyOf(a, list) => {
            let v = value(a, record)?;
            match &*value(list, record)? {
                Value::Array(items) => items.iter().any(|i| loose_eq(&v, i)),
                other => loose_eq(&v, other),
            }
        }
        Rule::Truthy(a) => truthy(&*value(a, record)?),
    })
}

fn compare(c: Comparison, a: &Value, b: &Value) -> bool {
    let o = order(a, b);
    match c {
        Comparison::Equals => loose_eq(a, b),
        Comparison::NotEquals => !loose_eq(a, b),
        Comparison::Greater => o == Some(Ordering::Greater),
        Comparison::GreaterOrEqual => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
        Comparison::Less => o == Some(Ordering::Less),
        Comparison::LessOrEqual => matches!(o, Some(Ordering::Less | Ordering::Equal)),
    }
}

/// An operand's value; a field the record lacks is null.
fn value<'a>(o: &'a Operand, record: &'a Value) -> Result<Cow<'a, Value>, String> {
    Ok(match o {
        Operand::Literal(v) => Cow::Borrowed(v),
        Operand::Extract(path) => path.get(record).unwrap_or(Cow::Owned(Value::Null)),
        Operand::Apply(f, inner) => Cow::Owned(apply_function(*f, &*value(inner, record)?)?),
    })
}

fn apply_function(f: Function, v: &Value) -> Result<Value, String> {
    // Missing stays missing through every function but `string` and `boolean`.
    let numeric = |op: fn(f64) -> f64| -> Result<Value, String> {
        match v {
            Value::Null => Ok(Value::Null),
            Value::String(s) if s.trim().is_empty() => Ok(Value::Null),
            v => number_value(op(number_of(v)?)),
        }
    };
    match f {
        Function::String => Ok(Value::String(text_of(v))),
        Function::Number => numeric(|n| n),
        Function::Boolean => Ok(Value::Bool(match v {
            Value::String(s) => {
                !matches!(s.trim().to_ascii_lowercase().as_str(), "" | "false" | "0")
            }
            v => truthy(v),
        })),
        Function::EpochTime => match v {
            Value::Null => Ok(Value::Null),
            v => sluice_model::moment::parse_any(v, chrono_tz::Tz::UTC)
                .map(|d| Value::from(d.timestamp_millis())),
        },
        Function::Lowercase => Ok(Value::String(text_of(v).to_lowercase())),
        Function::Uppercase => Ok(Value::String(text_of(v).to_uppercase())),
        Function::Ceiling => numeric(f64::ceil),
        Function::Floor => numeric(f64::floor),
        Function::Abs => numeric(f64::abs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(rules: Value, record: &Value) -> Result<bool, String> {
        let rule = Rule::compile(rules.as_array().unwrap()).unwrap();
        evaluate(&rule, record)
    }

    fn order_record() -> Value {
        json!({"status": "Open", "total": "120.50", "qty": 3, "email": "ann@example.com",
               "tags": ["vip"], "note": "", "placed": "2026-03-01T10:00:00Z", "neg": -2.5,
               "active": true, "country": "DE"})
    }

    #[test]
    fn comparisons() {
        let r = order_record();
        let t = |rules: Value| holds(rules, &r).unwrap();
        assert!(t(json!(["equals", ["extract", "status"], "Open"])));
        assert!(!t(json!(["equals", ["extract", "status"], "open"])));
        assert!(
            t(json!(["equals", ["extract", "qty"], "3"])),
            "numbers equal numeric text"
        );
        assert!(t(json!(["notequals", ["extract", "status"], "Closed"])));
        assert!(t(json!([
            "greaterthan",
            ["number", ["extract", "total"]],
            100
        ])));
        assert!(!t(json!(["greaterthan", ["extract", "qty"], 3])));
        assert!(t(json!(["greaterthanequals", ["extract", "qty"], 3])));
        assert!(
            t(json!(["lessthan", ["extract", "qty"], 10])),
            "3 < 10 as numbers, not text"
        );
        assert!(t(json!(["lessthanequals", ["extract", "qty"], 3])));
        assert!(t(json!([
            "greaterthan",
            ["extract", "placed"],
            "2026-01-01T00:00:00Z"
        ])));
        assert!(
            !t(json!(["greaterthan", ["extract", "missing"], 0])),
            "missing is not more"
        );
        assert!(
            !t(json!(["lessthan", ["extract", "missing"], 0])),
            "nor less"
        );
    }

    #[test]
    fn text_tests() {
        let r = order_record();
        let t = |rules: Value| holds(rules, &r).unwrap();
        assert!(t(json!(["contains", ["extract", "email"], "@example"])));
        assert!(t(json!(["doesnotcontain", ["extract", "email"], "@other"])));
        assert!(t(json!(["startswith", ["extract", "email"], "ann"])));
        assert!(t(json!(["endswith", ["extract", "email"], ".com"])));
        assert!(t(json!([
            "matches",
            ["extract", "email"],
            "^[a-z]+@example\\.com$"
        ])));
        assert!(!t(json!(["matches", ["extract", "status"], "^open$"])));
        assert!(t(json!([
            "contains",
            ["lowercase", ["extract", "status"]],
            "open"
        ])));
        assert!(t(json!([
            "equals",
            ["uppercase", ["extract", "country"]],
            "DE"
        ])));
    }

    #[test]
    fn emptiness_lists_and_logic() {
        let r = order_record();
        let t = |rules: Value| holds(rules, &r).unwrap();
        assert!(t(json!(["isempty", ["extract", "note"]])));
        assert!(t(json!(["empty", ["extract", "missing"]])));
        assert!(t(json!(["isnotempty", ["extract", "tags"]])));
        assert!(!t(json!(["notempty", ["extract", "note"]])));
        assert!(t(json!(["anyof", ["extract", "country"], ["DE", "AT"]])));
        assert!(!t(json!(["anyof", ["extract", "country"], ["FR"]])));
        assert!(t(json!([
            "and",
            ["equals", ["extract", "status"], "Open"],
            [
                "or",
                ["equals", ["extract", "country"], "FR"],
                ["not", ["isempty", ["extract", "email"]]]
            ]
        ])));
        assert!(!t(json!([
            "and",
            ["boolean", ["extract", "active"]],
            ["boolean", ["extract", "note"]]
        ])));
        assert!(t(json!(["boolean", ["extract", "active"]])));
    }

    #[test]
    fn conversions() {
        let r = order_record();
        let t = |rules: Value| holds(rules, &r).unwrap();
        assert!(t(json!(["equals", ["string", ["extract", "qty"]], "3"])));
        assert!(t(json!(["equals", ["ceiling", ["extract", "total"]], 121])));
        assert!(t(json!(["equals", ["floor", ["extract", "total"]], 120])));
        assert!(t(json!(["equals", ["abs", ["extract", "neg"]], 2.5])));
        assert!(t(json!([
            "greaterthan",
            ["epochtime", ["extract", "placed"]],
            1767225600000u64
        ])));
        assert!(t(json!(["equals", ["boolean", "false"], false])));
        // What a rule cannot decide is an error, not a silent false.
        let e = holds(
            json!(["greaterthan", ["number", ["extract", "status"]], 1]),
            &r,
        )
        .unwrap_err();
        assert!(e.contains("'Open' is not a number"), "{e}");
    }

    #[test]
    fn both_forms_compile_once_per_process() {
        let cache = FilterCache::default();
        let cel = ConditionCache::default();
        let rules: Filter = serde_json::from_value(json!({"type": "expression",
            "expression": {"rules": ["equals", ["extract", "status"], "Open"]}}))
        .unwrap();
        let r = order_record();
        for _ in 0..3 {
            assert!(cache.check(&cel, &rules, &r).unwrap());
        }
        assert_eq!(cache.rules.len(), 1);
        let c = Filter::Cel("record.qty > 2".into());
        assert!(cache.check(&cel, &c, &r).unwrap());
        assert_eq!(describe(&c), "`record.qty > 2`");
    }
}
