//! Record filters: a CEL condition (`{"type": "cel", "expression": "record.total > 100"}`) or
//! integrator.io's rule form (`{"type": "expression", "expression": {"version": "1",
//! "rules": ["and", ["equals", ["extract", "status"], "open"], ...]}}`), the prefix-notation
//! arrays its filter editor saves.
//!
//! [`Rule::compile`] reads the rule arrays into a typed tree once (operators known, arity
//! checked, regular expressions compiled, paths parsed), so a filter that validated cannot
//! fail to compile at run time; the stages evaluate the tree (`sluice_core::filters`).

use crate::paths::RecordPath;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Which records go on: those for which the filter holds. The others are ignored (counted
/// in numIgnore), never dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FilterDoc", into = "FilterDoc")]
pub enum Filter {
    /// A CEL condition over `record`, e.g. `record.total > 100`.
    Cel(String),
    /// integrator.io's rule expression.
    Rules(RuleExpression),
    /// A script function called per record with `{record, settings}`: the record goes on
    /// when it returns true (truthy), is ignored when false.
    Script(crate::HookRef),
}

/// A filter as written: `type` says how `expression` is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Filter)]
pub struct FilterDoc {
    /// `cel` (the default): `expression` is a CEL condition; `expression`: it is
    /// integrator.io's `{version, rules}`; `script`: `script` names the function.
    #[serde(rename = "type", default)]
    pub kind: FilterType,
    /// The CEL condition (`record.total > 100`), or the rules. Rule operators: `and`,
    /// `or`, `not`, `equals`, `notequals`, `greaterthan`, `greaterthanequals`, `lessthan`,
    /// `lessthanequals`, `contains`, `doesnotcontain`, `startswith`, `endswith`, `matches`,
    /// `isempty`/`empty`, `isnotempty`/`notempty`, `anyof`; values: `extract`, `string`,
    /// `number`, `boolean`, `epochtime`, `lowercase`, `uppercase`, `ceiling`, `floor`, `abs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<FilterExpression>,
    /// The script function of a `script` filter: `{_scriptId, function}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<crate::HookRef>,
}

/// How a filter is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FilterType {
    /// A CEL condition.
    #[default]
    Cel,
    /// integrator.io's rule expression (prefix-notation arrays).
    Expression,
    /// A script function.
    Script,
}

/// A CEL condition (text) or a rule expression (object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum FilterExpression {
    /// A CEL condition over `record`.
    #[schema(example = "record.total > 100")]
    Cel(String),
    Rules(RuleExpression),
}

/// integrator.io's filter rules: `rules` is one expression in prefix notation, an operator
/// followed by its operands, which may be expressions themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleExpression {
    /// Only `1`.
    #[serde(default = "version_one")]
    pub version: String,
    /// e.g. `["and", ["equals", ["extract", "status"], "open"], ["greaterthan", ["number",
    /// ["extract", "total"]], 100]]`.
    pub rules: Vec<Value>,
}
fn version_one() -> String {
    "1".into()
}

impl TryFrom<FilterDoc> for Filter {
    type Error = String;
    fn try_from(doc: FilterDoc) -> Result<Self, String> {
        match (doc.kind, doc.expression, doc.script) {
            (FilterType::Script, None, Some(script)) => Ok(Filter::Script(script)),
            (FilterType::Script, _, None) => {
                Err("type \"script\" takes script: {\"_scriptId\", \"function\"}".into())
            }
            (FilterType::Script, Some(_), Some(_)) => {
                Err("a script filter takes script, not expression".into())
            }
            (_, _, Some(_)) => Err("script is read only when type is \"script\"".into()),
            (_, None, None) => Err("expression is required (or type \"script\" with script)".into()),
            (FilterType::Cel, Some(FilterExpression::Cel(s)), None) => Ok(Filter::Cel(s)),
            (FilterType::Expression, Some(FilterExpression::Rules(r)), None) => Ok(Filter::Rules(r)),
            (FilterType::Cel, Some(FilterExpression::Rules(_)), None) => Err(
                "expression is a rule expression ({version, rules}): set type to \"expression\""
                    .into(),
            ),
            (FilterType::Expression, Some(FilterExpression::Cel(_)), None) => Err(
                "type \"expression\" takes {\"version\": \"1\", \"rules\": [...]}; a text expression is type \"cel\""
                    .into(),
            ),
        }
    }
}

impl From<Filter> for FilterDoc {
    fn from(f: Filter) -> Self {
        let (kind, expression, script) = match f {
            Filter::Cel(s) => (FilterType::Cel, Some(FilterExpression::Cel(s)), None),
            Filter::Rules(r) => (
                FilterType::Expression,
                Some(FilterExpression::Rules(r)),
                None,
            ),
            Filter::Script(h) => (FilterType::Script, None, Some(h)),
        };
        FilterDoc {
            kind,
            expression,
            script,
        }
    }
}

impl utoipa::PartialSchema for Filter {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        FilterDoc::schema()
    }
}
impl ToSchema for Filter {
    fn name() -> std::borrow::Cow<'static, str> {
        "Filter".into()
    }
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        FilterDoc::schemas(schemas);
    }
}

impl Filter {
    /// Checks the filter compiles, naming `field` (and the rule's place in `rules`).
    pub fn validate_into(&self, e: &mut crate::ValidationErrors, field: &str) {
        match self {
            Filter::Cel(expr) => {
                crate::validate::condition(e, &format!("{field}.expression"), expr)
            }
            Filter::Rules(r) => {
                let at = format!("{field}.expression");
                if r.version != "1" {
                    e.add(format!("{at}.version"), format!("'{}' is not 1", r.version));
                }
                if let Err(err) = Rule::compile(&r.rules) {
                    e.add(format!("{at}.{}", err.at), err.message);
                }
            }
            Filter::Script(h) => h.validate_into(e, &format!("{field}.script")),
        }
    }
}

/// Where in `rules` a rule is wrong, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    /// `rules`, `rules[2]`, `rules[2][1]`, ...
    pub at: String,
    pub message: String,
}

/// A rule: something true or false of a record.
#[derive(Debug, Clone)]
pub enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Compare(Comparison, Operand, Operand),
    Text(TextTest, Operand, Operand),
    Matches(Operand, regex::Regex),
    /// `isempty` (true) / `isnotempty` (false): null, missing, "", [] or {}.
    Empty(Operand, bool),
    /// The value is one of a list.
    AnyOf(Operand, Operand),
    /// An operand in place of a rule (`["boolean", ["extract", "active"]]`): its truth.
    Truthy(Operand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Equals,
    NotEquals,
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextTest {
    Contains,
    DoesNotContain,
    StartsWith,
    EndsWith,
}

/// A value a rule looks at.
#[derive(Debug, Clone)]
pub enum Operand {
    Literal(Value),
    Extract(RecordPath),
    Apply(Function, Box<Operand>),
}

/// What an operand does to the value inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    String,
    Number,
    Boolean,
    /// A date (ISO 8601 text or epoch milliseconds) as milliseconds since 1970.
    EpochTime,
    Lowercase,
    Uppercase,
    Ceiling,
    Floor,
    Abs,
}

impl Rule {
    /// Compiles integrator.io's rule array (`rules`).
    pub fn compile(rules: &[Value]) -> Result<Rule, RuleError> {
        rule(rules, "rules")
    }
}

fn fail<T>(at: &str, message: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError {
        at: at.to_string(),
        message: message.into(),
    })
}

fn rule(items: &[Value], at: &str) -> Result<Rule, RuleError> {
    let Some(Value::String(op)) = items.first() else {
        return fail(
            at,
            "a rule is [operator, operands...]: the first element must be an operator name",
        );
    };
    let args = &items[1..];
    let operand_at = |i: usize| format!("{at}[{}]", i + 1);
    let arity = |n: usize| -> Result<(), RuleError> {
        if args.len() == n {
            Ok(())
        } else {
            fail(
                at,
                format!("'{op}' takes {n} operand(s), got {}", args.len()),
            )
        }
    };
    let two = |a: &[Value]| -> Result<(Operand, Operand), RuleError> {
        Ok((
            operand(&a[0], &operand_at(0))?,
            operand(&a[1], &operand_at(1))?,
        ))
    };
    let comparison = |c: Comparison| -> Result<Rule, RuleError> {
        arity(2)?;
        let (a, b) = two(args)?;
        Ok(Rule::Compare(c, a, b))
    };
    let text = |t: TextTest| -> Result<Rule, RuleError> {
        arity(2)?;
        let (a, b) = two(args)?;
        Ok(Rule::Text(t, a, b))
    };
    let nested = |i: usize, v: &Value| -> Result<Rule, RuleError> {
        match v {
            Value::Array(inner) => rule(inner, &operand_at(i)),
            _ => fail(&operand_at(i), format!("'{op}' takes rules, got {v}")),
        }
    };
    match op.as_str() {
        "and" | "or" => {
            if args.is_empty() {
                return fail(at, format!("'{op}' takes at least one rule"));
            }
            let rules = args
                .iter()
                .enumerate()
                .map(|(i, v)| nested(i, v))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "and" {
                Rule::All(rules)
            } else {
                Rule::Any(rules)
            })
        }
        "not" => {
            arity(1)?;
            Ok(Rule::Not(Box::new(nested(0, &args[0])?)))
        }
        "equals" => comparison(Comparison::Equals),
        "notequals" => comparison(Comparison::NotEquals),
        "greaterthan" => comparison(Comparison::Greater),
        "greaterthanequals" => comparison(Comparison::GreaterOrEqual),
        "lessthan" => comparison(Comparison::Less),
        "lessthanequals" => comparison(Comparison::LessOrEqual),
        "contains" => text(TextTest::Contains),
        "doesnotcontain" => text(TextTest::DoesNotContain),
        "startswith" => text(TextTest::StartsWith),
        "endswith" => text(TextTest::EndsWith),
        "matches" => {
            arity(2)?;
            let Value::String(pattern) = &args[1] else {
                return fail(
                    &operand_at(1),
                    "'matches' takes a regular expression as text",
                );
            };
            let re = regex::Regex::new(pattern).map_err(|e| RuleError {
                at: operand_at(1),
                message: format!("Invalid regular expression: {e}"),
            })?;
            Ok(Rule::Matches(operand(&args[0], &operand_at(0))?, re))
        }
        "isempty" | "empty" | "isnotempty" | "notempty" => {
            arity(1)?;
            let empty = matches!(op.as_str(), "isempty" | "empty");
            Ok(Rule::Empty(operand(&args[0], &operand_at(0))?, empty))
        }
        "anyof" => {
            arity(2)?;
            let (a, b) = two(args)?;
            Ok(Rule::AnyOf(a, b))
        }
        "extract" | "string" | "number" | "boolean" | "epochtime" | "lowercase" | "uppercase"
        | "ceiling" | "floor" | "abs" | "settings" => {
            Ok(Rule::Truthy(operand(&Value::Array(items.to_vec()), at)?))
        }
        _ => fail(
            at,
            format!("unknown operator '{op}' (rules use {OPERATORS})"),
        ),
    }
}

/// Every operator a rule may use, for messages and docs.
pub const OPERATORS: &str = "and, or, not, equals, notequals, greaterthan, greaterthanequals, \
lessthan, lessthanequals, contains, doesnotcontain, startswith, endswith, matches, isempty, \
isnotempty, anyof; values: extract, string, number, boolean, epochtime, lowercase, \
uppercase, ceiling, floor, abs";

fn operand(v: &Value, at: &str) -> Result<Operand, RuleError> {
    let Value::Array(items) = v else {
        return Ok(Operand::Literal(v.clone()));
    };
    let Some(Value::String(op)) = items.first() else {
        return Ok(Operand::Literal(v.clone()));
    };
    let function = match op.as_str() {
        "extract" => {
            return match items.get(1..) {
                Some([Value::String(path)]) => RecordPath::compile(path)
                    .map(Operand::Extract)
                    .map_err(|m| RuleError { at: format!("{at}[1]"), message: m }),
                _ => fail(at, "'extract' takes one field path, e.g. [\"extract\", \"customer.email\"]"),
            };
        }
        "settings" => {
            return fail(at, "'settings' is not supported: Sluice has no flow or integration settings; write the value itself")
        }
        "string" => Function::String,
        "number" => Function::Number,
        "boolean" => Function::Boolean,
        "epochtime" => Function::EpochTime,
        "lowercase" => Function::Lowercase,
        "uppercase" => Function::Uppercase,
        "ceiling" => Function::Ceiling,
        "floor" => Function::Floor,
        "abs" => Function::Abs,
        "and" | "or" | "not" | "equals" | "notequals" | "greaterthan" | "greaterthanequals"
        | "lessthan" | "lessthanequals" | "contains" | "doesnotcontain" | "startswith"
        | "endswith" | "matches" | "isempty" | "empty" | "isnotempty" | "notempty" | "anyof" => {
            return fail(at, format!("'{op}' is a rule, not a value"));
        }
        // A list of values such as anyof's ["Urgent", "High"].
        _ => return Ok(Operand::Literal(v.clone())),
    };
    match items.get(1..) {
        Some([inner]) => Ok(Operand::Apply(
            function,
            Box::new(operand(inner, &format!("{at}[1]"))?),
        )),
        _ => fail(
            at,
            format!("'{op}' takes one operand, got {}", items.len() - 1),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(rules: Value) -> Result<Rule, RuleError> {
        Rule::compile(rules.as_array().unwrap())
    }

    #[test]
    fn reads_both_forms_and_refuses_a_mismatch() {
        let cel: Filter = serde_json::from_value(json!({"expression": "record.x > 1"})).unwrap();
        assert_eq!(cel, Filter::Cel("record.x > 1".into()));
        let rules: Filter = serde_json::from_value(json!({"type": "expression",
            "expression": {"version": "1", "rules": ["equals", ["extract", "a"], 1]}}))
        .unwrap();
        assert!(matches!(rules, Filter::Rules(_)));
        // Written back in the shape it was read.
        assert_eq!(serde_json::to_value(&rules).unwrap()["type"], "expression");
        let e = serde_json::from_value::<Filter>(json!({"type": "expression", "expression": "x"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("type \"expression\" takes"), "{e}");
    }

    #[test]
    fn compiles_every_operator() {
        let r = compile(json!([
            "and",
            ["equals", ["string", ["extract", "a"]], "x"],
            ["notequals", ["extract", "a"], "y"],
            [
                "or",
                ["greaterthan", ["number", ["extract", "n"]], 1],
                ["greaterthanequals", ["extract", "n"], 1],
                ["lessthan", ["abs", ["extract", "n"]], 1],
                ["lessthanequals", ["floor", ["extract", "n"]], 1]
            ],
            ["not", ["contains", ["lowercase", ["extract", "s"]], "x"]],
            ["doesnotcontain", ["uppercase", ["extract", "s"]], "X"],
            ["startswith", ["extract", "s"], "a"],
            ["endswith", ["extract", "s"], "z"],
            ["matches", ["extract", "s"], "^a.*z$"],
            ["isempty", ["extract", "e"]],
            ["notempty", ["extract", "s"]],
            ["anyof", ["extract", "c"], ["Urgent", "High"]],
            ["greaterthan", ["epochtime", ["extract", "d"]], 0],
            ["boolean", ["extract", "flag"]],
            ["equals", ["ceiling", ["extract", "n"]], 2]
        ]))
        .unwrap();
        let Rule::All(rules) = r else { panic!() };
        assert_eq!(rules.len(), 14);
    }

    #[test]
    fn names_where_a_rule_is_wrong() {
        let at = |rules: Value| compile(rules).unwrap_err();
        let e = at(json!(["and", ["equals", ["extract", "a"]]]));
        assert_eq!(e.at, "rules[1]");
        assert!(e.message.contains("'equals' takes 2 operand(s), got 1"));
        let e = at(json!(["matches", ["extract", "a"], "("]));
        assert_eq!(e.at, "rules[2]");
        assert!(e.message.contains("Invalid regular expression"));
        let e = at(json!(["equals", ["extract", "a["], 1]));
        assert_eq!(e.at, "rules[1][1]");
        assert!(at(json!(["equals", ["settings", "flow.x"], 1]))
            .message
            .contains("not supported"));
        assert!(at(json!([1, 2])).message.contains("operator name"));
        assert!(at(json!(["and", "x"])).message.contains("takes rules"));
        assert!(at(json!(["frobnicate", 1]))
            .message
            .contains("unknown operator 'frobnicate'"));
        assert!(at(json!(["equals", ["and", ["isempty", 1]], true]))
            .message
            .contains("is a rule"));
    }
}
