//! File content for sftp/s3 imports: one file per page, CSV (default), JSON array, NDJSON,
//! or the import's own template over the page's records (XML, fixed-width, any text).
//!
//! A content template renders in the same template cache as every other template (the
//! helpers `validate::template` knows, no partials, no file access), with `{{value}}`
//! escaped as the template asks: as it is, or as XML.

use super::templates::{Escape, TemplateCache};
use serde_json::{Map, Value};
use sluice_model::{ContentEscape, CsvOptions, FileFormat, FileTemplate, FileType};

/// The content of a page's file: `records` (as the import's mapping makes them) in the
/// import's format; a template sees them as `records` beside `base` (job, flow, page, ...).
pub fn render_content(
    cache: &TemplateCache,
    base: &Map<String, Value>,
    records: &[&Value],
    format: Option<&FileFormat>,
) -> Result<String, String> {
    match format.map(|f| (f.kind, &f.template)) {
        Some((FileType::Template, Some(t))) => render_template(cache, base, records, t),
        _ => render_file(records, format),
    }
}

fn render_template(
    cache: &TemplateCache,
    base: &Map<String, Value>,
    records: &[&Value],
    template: &FileTemplate,
) -> Result<String, String> {
    let mut ctx = base.clone();
    ctx.insert(
        "records".into(),
        Value::Array(records.iter().map(|r| (*r).clone()).collect()),
    );
    let escape = match template.escape {
        ContentEscape::None => Escape::None,
        ContentEscape::Xml => Escape::Xml,
    };
    cache.render_value_escaped(&template.content, &Value::Object(ctx), escape)
}

/// Renders `records` as a file body in a data format (csv when none is given).
pub fn render_file(records: &[&Value], format: Option<&FileFormat>) -> Result<String, String> {
    let format = format
        .cloned()
        .unwrap_or_else(|| FileFormat::of(FileType::Csv));
    match format.kind {
        FileType::Json => serde_json::to_string_pretty(&records).map_err(|e| e.to_string()),
        FileType::Ndjson => {
            let mut out = String::new();
            for r in records {
                out.push_str(&serde_json::to_string(r).map_err(|e| e.to_string())?);
                out.push('\n');
            }
            Ok(out)
        }
        FileType::Csv => render_csv(records, &format.csv.unwrap_or_default()),
        FileType::Template => Err("type template needs file.template.content".into()),
    }
}

fn render_csv(records: &[&Value], opts: &CsvOptions) -> Result<String, String> {
    let columns: Vec<String> = if !opts.columns.is_empty() {
        opts.columns.clone()
    } else {
        match records.first() {
            Some(Value::Object(m)) => m.keys().cloned().collect(),
            _ => vec!["value".into()],
        }
    };
    let mut w = csv::WriterBuilder::new()
        .delimiter(
            opts.column_delimiter
                .as_bytes()
                .first()
                .copied()
                .unwrap_or(b','),
        )
        .from_writer(Vec::new());
    if opts.has_header_row {
        w.write_record(&columns).map_err(|e| e.to_string())?;
    }
    for r in records {
        let row: Vec<String> = columns
            .iter()
            .map(|c| match r {
                Value::Object(m) => cell(lookup(m, c)),
                other if c == "value" => cell(Some(other)),
                _ => String::new(),
            })
            .collect();
        w.write_record(&row).map_err(|e| e.to_string())?;
    }
    String::from_utf8(w.into_inner().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

/// A column may name a nested field with dots (`customer.name`).
fn lookup<'a>(m: &'a serde_json::Map<String, Value>, column: &str) -> Option<&'a Value> {
    if let Some(v) = m.get(column) {
        return Some(v);
    }
    let mut parts = column.split('.');
    let mut cur = m.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    Some(cur)
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}
