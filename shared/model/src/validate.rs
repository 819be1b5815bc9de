//! Checks shared by the definitions: templates parse, conditions compile, paths parse,
//! cron expressions and time zones are real.

use crate::ValidationErrors;

/// The helpers a template may call: handlebars' own and Sluice's. The template cache
/// (`sluice_core::stages::translate::TemplateCache`) registers Sluice's; a test there checks
/// that every name here renders and one not here does not.
pub const TEMPLATE_HELPERS: &[&str] = &[
    "json",
    "urlencode",
    "lowercase",
    "uppercase",
    "default",
    "if",
    "unless",
    "each",
    "with",
    "lookup",
    "raw",
    "log",
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "and",
    "or",
    "not",
    "len",
    // integrator.io's helpers (sluice_core::helpers; docs/helpers.md)
    "dateFormat",
    "dateAdd",
    "timestamp",
    "add",
    "subtract",
    "multiply",
    "divide",
    "modulo",
    "round",
    "floor",
    "ceil",
    "abs",
    "toFixed",
    "sum",
    "avg",
    "replace",
    "split",
    "join",
    "substring",
    "trim",
    "trimLeft",
    "trimRight",
    "padLeft",
    "padRight",
    "capitalize",
    "capitalizeAll",
    "truncate",
    "truncateWords",
    "regexMatch",
    "regexReplace",
    "regexSearch",
    "base64Encode",
    "base64Decode",
    "encodeURI",
    "decodeURI",
    "jsonParse",
    "jsonSerialize",
    "hash",
    "hmac",
    "compare",
    "contains",
    "isEmpty",
];

/// Does `template` parse as a handlebars template, calling only helpers that exist? (An
/// unknown helper parses, then fails every record at run time with "Helper not found".)
pub fn template(errors: &mut ValidationErrors, field: &str, template: &str) {
    match handlebars::Template::compile(template) {
        Err(e) => errors.add(field, format!("Invalid template: {e}")),
        Ok(t) => {
            let mut unknown = Vec::new();
            unknown_helpers(&t, &mut unknown);
            unknown.dedup();
            for name in unknown {
                errors.add(
                    field,
                    format!(
                        "Unknown helper '{name}' (templates can use {})",
                        TEMPLATE_HELPERS.join(", ")
                    ),
                );
            }
        }
    }
}

/// The names called as helpers in `t` that are not [`TEMPLATE_HELPERS`]. A name alone
/// (`{{record.id}}`) is a value unless it names a helper; with parameters, as a block
/// (`{{#x}}`) or as a subexpression (`(x y)`) it must be a helper.
fn unknown_helpers(t: &handlebars::template::Template, out: &mut Vec<String>) {
    use handlebars::template::TemplateElement as E;
    for element in &t.elements {
        match element {
            E::Expression(ht) | E::HtmlExpression(ht) | E::HelperBlock(ht) => {
                let called = ht.block || !ht.params.is_empty() || !ht.hash.is_empty();
                if called {
                    check_helper_name(&ht.name, out);
                }
                for p in ht.params.iter().chain(ht.hash.values()) {
                    check_parameter(p, out);
                }
                for inner in [&ht.template, &ht.inverse].into_iter().flatten() {
                    unknown_helpers(inner, out);
                }
            }
            E::DecoratorBlock(dt) | E::PartialBlock(dt) => {
                if let Some(inner) = &dt.template {
                    unknown_helpers(inner, out);
                }
            }
            _ => {}
        }
    }
}

fn check_parameter(p: &handlebars::template::Parameter, out: &mut Vec<String>) {
    use handlebars::template::{Parameter, TemplateElement as E};
    if let Parameter::Subexpression(sub) = p {
        if let E::Expression(ht) = sub.as_element() {
            check_helper_name(&ht.name, out);
            for p in ht.params.iter().chain(ht.hash.values()) {
                check_parameter(p, out);
            }
        }
    }
}

fn check_helper_name(name: &handlebars::template::Parameter, out: &mut Vec<String>) {
    if let Some(name) = name.as_name() {
        if !TEMPLATE_HELPERS.contains(&name) {
            out.push(name.to_string());
        }
    }
}

/// Does `expression` compile as a CEL condition?
pub fn condition(errors: &mut ValidationErrors, field: &str, expression: &str) {
    if expression.trim().is_empty() {
        errors.add(field, "Condition is empty");
        return;
    }
    if let Err(e) = cel::Program::compile(expression) {
        errors.add(field, format!("Invalid condition: {e}"));
    }
}

/// Does `path` parse as an RFC 9535 JSONPath query? A path without a leading `$` is
/// read as relative to the root (`id` means `$.id`), as integrator.io users write them.
pub fn json_path(errors: &mut ValidationErrors, field: &str, path: &str) {
    if let Err(e) = serde_json_path::JsonPath::parse(&normalize_json_path(path)) {
        errors.add(field, format!("Invalid JSONPath: {e}"));
    }
}

/// `id` -> `$.id`, `data.items` -> `$.data.items`, `$.x` stays, `$` stays.
pub fn normalize_json_path(path: &str) -> String {
    let p = path.trim();
    if p.starts_with('$') {
        p.to_string()
    } else if p.starts_with('[') {
        format!("${p}")
    } else {
        format!("$.{p}")
    }
}

/// A schedule is a 5-field cron expression, or integrator.io's 6-field form whose first
/// field (seconds) is `?` or `0`.
pub fn parse_schedule(expr: &str) -> Result<croner::Cron, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let five = match fields.len() {
        5 => fields.join(" "),
        6 if fields[0] == "?" || fields[0] == "0" => fields[1..].join(" "),
        6 => return Err("the seconds field of a 6-field schedule must be ? or 0".into()),
        n => {
            return Err(format!(
                "expected 5 fields (minute hour day month weekday), got {n}"
            ))
        }
    };
    croner::parser::CronParser::builder()
        .build()
        .parse(&five)
        .map_err(|e| e.to_string())
}

pub fn schedule(errors: &mut ValidationErrors, field: &str, expr: &str) {
    if let Err(why) = parse_schedule(expr) {
        errors.add(field, format!("Invalid cron expression: {why}"));
    }
}

pub fn timezone(errors: &mut ValidationErrors, field: &str, tz: &str) {
    if tz.parse::<chrono_tz::Tz>().is_err() {
        errors.add(
            field,
            format!("Unknown time zone '{tz}' (use an IANA name such as Europe/Berlin)"),
        );
    }
}

pub fn required(errors: &mut ValidationErrors, field: &str, value: &str) {
    if value.trim().is_empty() {
        errors.add(field, "is required");
    }
}

/// Is `name` an HTTP header name (an RFC 9110 token)?
pub fn header_name(errors: &mut ValidationErrors, field: &str, name: &str) {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        errors.add(
            field,
            format!("'{name}' is not a header name (letters, digits and -, no spaces)"),
        );
    }
}

/// The longest `_id` accepted.
pub const MAX_ID_LEN: usize = 128;

/// Is `id` a safe identifier: 1 to [`MAX_ID_LEN`] characters of letters, digits, `_`, `-`
/// and `.`, starting with a letter or digit? Ids end up in URL paths, store keys and file
/// names, so `a/b`, `..` or a 5,000-character id is refused wherever one is given.
pub fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Some(format!(
            "is {} characters long; at most {MAX_ID_LEN} are allowed",
            id.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) || !id.chars().all(allowed) {
        return Some(format!(
            "'{id}' is not a valid id: use letters, digits, '_', '-' and '.', starting with a letter or digit"
        ));
    }
    None
}

/// Adds an error naming `field` when `id` is set but not a safe identifier.
pub fn id(errors: &mut ValidationErrors, field: &str, id: &str) {
    if !id.is_empty() {
        if let Some(why) = id_problem(id) {
            errors.add(field, why);
        }
    }
}

/// What every definition checks about itself: a safe `_id` (when given) and a `name`.
pub fn identity(errors: &mut ValidationErrors, id_value: &str, name: &str) {
    id(errors, "_id", id_value);
    required(errors, "name", name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_limited_to_a_safe_set_and_length() {
        for good in [
            "exp1",
            "orders-to-warehouse",
            "5f3a9c0e1b2d4e6f7a8b9c0d",
            "a.b_c-1",
        ] {
            assert_eq!(id_problem(good), None, "{good}");
        }
        for bad in ["a/b", "..", ".hidden", "a b", "ü", "x%2F", ""] {
            assert!(id_problem(bad).is_some(), "{bad}");
        }
        assert!(id_problem(&"x".repeat(5000)).unwrap().contains("5000"));
        assert_eq!(id_problem(&"x".repeat(MAX_ID_LEN)), None);
    }
}
