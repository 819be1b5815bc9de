//! Checks shared by the definitions: templates parse, conditions compile, paths parse,
//! cron expressions and time zones are real.

use crate::ValidationErrors;

/// Does `template` parse as a handlebars template?
pub fn template(errors: &mut ValidationErrors, field: &str, template: &str) {
    if let Err(e) = handlebars::Template::compile(template) {
        errors.add(field, format!("Invalid template: {e}"));
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
