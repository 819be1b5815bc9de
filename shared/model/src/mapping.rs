//! Import mappings in integrator.io's shape (`mapping.fields[]`, `mapping.lists[]`): how an
//! import builds the record it sends from the record it gets.
//!
//! [`Mapping::compile`] turns the definition into a [`CompiledMapping`] once: every
//! `extract` is a parsed path, a handlebars expression or a constant, every `generate` a
//! split output path, every conversion (dates with their formats and zones) resolved. So a
//! mapping that validated cannot fail to compile at run time, and its errors name the field
//! (`mapping.fields[2].extractDateFormat`). Applying it is `sluice_core::mapping`.

use crate::moment::{self, DateFormat};
use crate::paths::RecordPath;
use crate::{validate, ValidationErrors};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// integrator.io's import mapping: `fields` build the output record, `lists` build arrays
/// in it (line items) from lists in the input. The mapped record is what the body template
/// sees as `record` (or, without a body template, the JSON body itself); the URI and the
/// headers are rendered from the record before mapping.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mapping {
    /// One output field each.
    #[serde(default)]
    pub fields: Vec<FieldMapping>,
    /// One output array each, one element per value of the list its fields read.
    #[serde(default)]
    pub lists: Vec<ListMapping>,
}

/// One output field: where its value comes from (`extract` or `hardCodedValue`), where it
/// goes (`generate`) and how it is converted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldMapping {
    /// A path into the input record (`customer.email`, `lines[0].sku`, `lines[*].sku` for
    /// every element, `Customer Name` for a CSV column), or a handlebars expression over
    /// `record` (`{{record.first}} {{record.last}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "customer.email")]
    pub extract: Option<String>,
    /// The output field, dotted for nesting (`customer.email`).
    #[schema(example = "email")]
    pub generate: String,
    /// A constant written instead of an extracted value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_coded_value: Option<Value>,
    /// How the value is converted (default: kept as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<DataType>,
    /// The value used when `extract` finds nothing, null or "".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Leave the field out when its value is empty (null, "", [] or {}).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discard_if_empty: bool,
    /// moment.js format the input date is written in (`MM/DD/YYYY`); default ISO 8601, or a
    /// number of milliseconds since 1970.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "MM/DD/YYYY")]
    pub extract_date_format: Option<String>,
    /// IANA zone of an input date that has no offset (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "America/New_York")]
    pub extract_date_timezone: Option<String>,
    /// moment.js format the date is written in (default ISO 8601 with milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "YYYY-MM-DD")]
    pub generate_date_format: Option<String>,
    /// IANA zone the date is written in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_date_timezone: Option<String>,
}

/// An output array (`generate`) whose elements are built by `fields`: an `extract` with
/// `[*]` (`lines[*].sku`) gives element i its i-th value, any other `extract` the same
/// value in every element. As many elements as the longest such list (one when no field
/// reads a list).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListMapping {
    /// The output array, dotted for nesting (`order.lines`).
    #[schema(example = "lines")]
    pub generate: String,
    /// The fields of each element; their `generate` is inside the element.
    #[serde(default)]
    pub fields: Vec<FieldMapping>,
}

/// What a mapped value is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// Text: numbers and booleans written out, objects and lists as JSON.
    String,
    /// A number: numeric text is read (`"12.50"` is 12.5); other text is an error.
    Number,
    /// true/false: also `"true"`/`"false"`, `"yes"`/`"no"`, `"y"`/`"n"`, `1`/`0`.
    Boolean,
    /// A date read with `extractDateFormat` in `extractDateTimezone`, written with
    /// `generateDateFormat` in `generateDateTimezone`.
    Date,
}

/// A mapping ready to apply.
#[derive(Debug, Clone)]
pub struct CompiledMapping {
    pub fields: Vec<CompiledField>,
    pub lists: Vec<CompiledList>,
}

#[derive(Debug, Clone)]
pub struct CompiledField {
    /// Where it was defined (`mapping.fields[2]`), for record errors.
    pub at: String,
    pub generate: OutputPath,
    pub source: Source,
    pub convert: Option<Conversion>,
    pub default: Option<Value>,
    pub discard_if_empty: bool,
}

#[derive(Debug, Clone)]
pub struct CompiledList {
    pub at: String,
    pub generate: OutputPath,
    pub fields: Vec<CompiledField>,
}

/// Where a field's value comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Path(RecordPath),
    /// A handlebars expression, rendered over `record` (and `index` in a list).
    Template(String),
    Constant(Value),
}

#[derive(Debug, Clone)]
pub enum Conversion {
    String,
    Number,
    Boolean,
    Date(DateConversion),
}

#[derive(Debug, Clone)]
pub struct DateConversion {
    pub read: Option<DateFormat>,
    pub read_zone: Tz,
    pub write: Option<DateFormat>,
    pub write_zone: Tz,
}

/// A dotted output path, split once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPath(pub Vec<String>);

impl OutputPath {
    pub fn parse(text: &str) -> Result<OutputPath, String> {
        let segments: Vec<String> = text.split('.').map(|s| s.trim().to_string()).collect();
        if text.trim().is_empty() {
            return Err("is required".into());
        }
        if segments.iter().any(|s| s.is_empty()) {
            return Err(format!("'{text}' has an empty part (write a.b.c)"));
        }
        Ok(OutputPath(segments))
    }

    pub fn dotted(&self) -> String {
        self.0.join(".")
    }
}

impl Mapping {
    /// Compiles the mapping; errors name the field under `at` (`mapping`).
    pub fn compile(&self, at: &str) -> Result<CompiledMapping, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let fields = compile_fields(&self.fields, &format!("{at}.fields"), &mut e);
        let mut lists = Vec::new();
        for (i, l) in self.lists.iter().enumerate() {
            let list_at = format!("{at}.lists[{i}]");
            let generate = OutputPath::parse(&l.generate)
                .map_err(|m| e.add(format!("{list_at}.generate"), m))
                .ok();
            let fields = compile_fields(&l.fields, &format!("{list_at}.fields"), &mut e);
            if let Some(generate) = generate {
                lists.push(CompiledList {
                    at: list_at,
                    generate,
                    fields,
                });
            }
        }
        e.into_result()?;
        Ok(CompiledMapping { fields, lists })
    }

    pub fn validate_into(&self, e: &mut ValidationErrors, at: &str) {
        if let Err(errors) = self.compile(at) {
            e.0.extend(errors.0);
        }
    }
}

pub(crate) fn compile_fields(
    fields: &[FieldMapping],
    at: &str,
    e: &mut ValidationErrors,
) -> Vec<CompiledField> {
    let mut out: Vec<CompiledField> = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let field_at = format!("{at}[{i}]");
        if let Some(c) = compile_field(f, &field_at, e) {
            if let Some(first) = out.iter().find(|o| o.generate == c.generate) {
                e.add(
                    format!("{field_at}.generate"),
                    format!("'{}' is generated by {} already", f.generate, first.at),
                );
            }
            out.push(c);
        }
    }
    out
}

fn compile_field(f: &FieldMapping, at: &str, e: &mut ValidationErrors) -> Option<CompiledField> {
    let before = e.0.len();
    let generate = OutputPath::parse(&f.generate).map_err(|m| e.add(format!("{at}.generate"), m));
    let source = match (&f.extract, &f.hard_coded_value) {
        (Some(_), Some(_)) => {
            e.add(at, "give extract or hardCodedValue, not both");
            None
        }
        (None, None) => {
            e.add(
                at,
                "give extract (a path or a {{template}}) or hardCodedValue",
            );
            None
        }
        (None, Some(v)) => Some(Source::Constant(v.clone())),
        (Some(x), None) if x.contains("{{") => {
            validate::template(e, &format!("{at}.extract"), x);
            Some(Source::Template(x.clone()))
        }
        (Some(x), None) => RecordPath::compile(x)
            .map(Source::Path)
            .map_err(|m| e.add(format!("{at}.extract"), m))
            .ok(),
    };
    let convert = conversion(f, at, e);
    if e.0.len() > before {
        return None;
    }
    Some(CompiledField {
        at: at.to_string(),
        generate: generate.ok()?,
        source: source?,
        convert,
        default: f.default.clone(),
        discard_if_empty: f.discard_if_empty,
    })
}

fn conversion(f: &FieldMapping, at: &str, e: &mut ValidationErrors) -> Option<Conversion> {
    let dated = f.extract_date_format.is_some()
        || f.extract_date_timezone.is_some()
        || f.generate_date_format.is_some()
        || f.generate_date_timezone.is_some();
    match (f.data_type, dated) {
        (Some(DataType::Date), _) | (Some(DataType::String) | None, true) => {}
        (Some(t @ (DataType::Number | DataType::Boolean)), true) => {
            e.add(
                format!("{at}.dataType"),
                format!("'{}' takes no date formats (use date or string)", name(t)),
            );
            return None;
        }
        (Some(DataType::String), false) => return Some(Conversion::String),
        (Some(DataType::Number), false) => return Some(Conversion::Number),
        (Some(DataType::Boolean), false) => return Some(Conversion::Boolean),
        (None, false) => return None,
    }
    let format = |field: &str, v: &Option<String>, e: &mut ValidationErrors| {
        v.as_deref().and_then(|s| {
            DateFormat::compile(s)
                .map_err(|m| e.add(format!("{at}.{field}"), m))
                .ok()
        })
    };
    let zone = |field: &str, v: &Option<String>, e: &mut ValidationErrors| match v {
        None => Tz::UTC,
        Some(z) => moment::zone(z).unwrap_or_else(|m| {
            e.add(format!("{at}.{field}"), m);
            Tz::UTC
        }),
    };
    Some(Conversion::Date(DateConversion {
        read: format("extractDateFormat", &f.extract_date_format, e),
        read_zone: zone("extractDateTimezone", &f.extract_date_timezone, e),
        write: format("generateDateFormat", &f.generate_date_format, e),
        write_zone: zone("generateDateTimezone", &f.generate_date_timezone, e),
    }))
}

fn name(t: DataType) -> &'static str {
    match t {
        DataType::String => "string",
        DataType::Number => "number",
        DataType::Boolean => "boolean",
        DataType::Date => "date",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(v: Value) -> Mapping {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn compiles_paths_templates_constants_and_dates() {
        let m = mapping(json!({
            "fields": [
                {"extract": "customer.email", "generate": "email"},
                {"extract": "{{record.first}} {{record.last}}", "generate": "name"},
                {"hardCodedValue": "web", "generate": "source"},
                {"extract": "placed", "generate": "placedOn", "dataType": "date",
                 "extractDateFormat": "MM/DD/YYYY", "generateDateFormat": "YYYY-MM-DD",
                 "extractDateTimezone": "America/New_York"}
            ],
            "lists": [{"generate": "lines", "fields": [{"extract": "items[*].sku", "generate": "sku"}]}]
        }));
        let c = m.compile("mapping").unwrap();
        assert!(matches!(c.fields[0].source, Source::Path(_)));
        assert!(matches!(c.fields[1].source, Source::Template(_)));
        assert!(matches!(c.fields[2].source, Source::Constant(_)));
        assert!(matches!(c.fields[3].convert, Some(Conversion::Date(_))));
        assert_eq!(c.lists[0].generate, OutputPath(vec!["lines".into()]));
    }

    #[test]
    fn errors_name_the_field() {
        let m = mapping(json!({
            "fields": [
                {"extract": "a[", "generate": "a"},
                {"extract": "b", "hardCodedValue": 1, "generate": "b"},
                {"generate": "c"},
                {"extract": "d", "generate": "d..x"},
                {"extract": "e", "generate": "e", "dataType": "number", "generateDateFormat": "YYYY"},
                {"extract": "f", "generate": "f", "dataType": "date", "extractDateFormat": "LL",
                 "generateDateTimezone": "Mars/Olympus"},
                {"extract": "{{nope record.g}}", "generate": "g"},
                {"extract": "h", "generate": "h"},
                {"extract": "h2", "generate": "h"}
            ],
            "lists": [{"generate": "", "fields": [{"extract": "x[*]", "generate": ""}]}]
        }));
        let errors = m.compile("mapping").unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "mapping.fields[0].extract",
                "mapping.fields[1]",
                "mapping.fields[2]",
                "mapping.fields[3].generate",
                "mapping.fields[4].dataType",
                "mapping.fields[5].extractDateFormat",
                "mapping.fields[5].generateDateTimezone",
                "mapping.fields[6].extract",
                "mapping.fields[8].generate",
                "mapping.lists[0].generate",
                "mapping.lists[0].fields[0].generate",
            ],
            "{errors}"
        );
        assert!(errors
            .to_string()
            .contains("'h' is generated by mapping.fields[7] already"));
    }

    #[test]
    fn reads_integrator_io_field_names_and_refuses_unknown_ones() {
        let f: FieldMapping = serde_json::from_value(json!({"extract": "a", "generate": "b",
            "dataType": "string", "default": "x", "discardIfEmpty": true,
            "extractDateFormat": "YYYY", "extractDateTimezone": "UTC",
            "generateDateFormat": "YYYY", "generateDateTimezone": "UTC"}))
        .unwrap();
        assert!(f.discard_if_empty);
        let e = serde_json::from_value::<FieldMapping>(json!({"generate": "b", "lookupName": "x"}))
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `lookupName`"), "{e}");
    }
}
