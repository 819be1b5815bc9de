//! Applying import mappings (and the transformations built from the same parts): a
//! [`CompiledMapping`] over one record gives the record to send. Compiled once per process
//! ([`MappingCache`], keyed by the definition's JSON); applying is a plain function.
//!
//! Invariant: a mapped record holds exactly what the mapping generates. A value that cannot
//! be converted as the field asks is a record error naming the field
//! (`mapping.fields[2] (total): 'abc' is not a number`), never a value left as it was.

use crate::compiled::{key_of, CompiledCache};
use crate::stages::translate::{Escape, TemplateCache};
use crate::values::is_empty;
use serde_json::{Map, Value};
use sluice_model::mapping::{CompiledField, CompiledMapping, Conversion, OutputPath, Source};
use sluice_model::moment;
use sluice_model::Mapping;
use std::borrow::Cow;
use std::sync::Arc;

/// Compiled mappings keyed by their JSON text.
pub type MappingCache = CompiledCache<CompiledMapping>;

/// The compiled form of `mapping` (compiled on first use; a stored mapping was validated,
/// so an error here means it was stored by something that did not validate).
pub fn compiled(cache: &MappingCache, mapping: &Mapping) -> Result<Arc<CompiledMapping>, String> {
    cache.get(&key_of(mapping), || {
        mapping.compile("mapping").map_err(|e| e.to_string())
    })
}

/// What a mapping's handlebars expressions render with.
#[derive(Clone, Copy)]
pub struct Templates<'a> {
    pub cache: &'a TemplateCache,
    /// Handlebars strict mode: a field the record lacks fails the record.
    pub strict: bool,
    /// What `{{timestamp}}` and `{{now}}` give: the page's time (translate's `now`), so a
    /// mapping renders the same when a page is rendered again.
    pub now: Option<&'a Value>,
}

impl crate::Sluice {
    /// `record` mapped by `mapping` (compiled once per process).
    pub fn map_record(
        &self,
        mapping: &Mapping,
        record: &Value,
        strict: bool,
    ) -> Result<Value, String> {
        let compiled = compiled(&self.caches.mappings, mapping)?;
        apply(&compiled, record, self.templates(strict, None))
    }

    pub(crate) fn templates<'a>(&'a self, strict: bool, now: Option<&'a Value>) -> Templates<'a> {
        Templates {
            cache: &self.caches.templates,
            strict,
            now,
        }
    }
}

/// The record `mapping` builds from `record`.
pub fn apply(mapping: &CompiledMapping, record: &Value, t: Templates) -> Result<Value, String> {
    let mut out = Map::new();
    let mut context = None;
    for f in &mapping.fields {
        let raw = match &f.source {
            Source::Template(source) => Some(Cow::Owned(
                render(source, record, None, &mut context, t).map_err(|m| fail(f, &m))?,
            )),
            source => extract(source, record),
        };
        if let Some(v) = finish(f, raw)? {
            set(&mut out, &f.generate, v).map_err(|m| fail(f, &m))?;
        }
    }
    for list in &mapping.lists {
        // Each field's value once per record; a list's length is its longest list value.
        let values: Vec<Option<Cow<Value>>> = list
            .fields
            .iter()
            .map(|f| extract(&f.source, record))
            .collect();
        let len = list
            .fields
            .iter()
            .zip(&values)
            .filter(|(f, _)| matches!(&f.source, Source::Path(p) if p.is_plural()))
            .filter_map(|(_, v)| v.as_ref().and_then(|v| v.as_array()).map(Vec::len))
            .max()
            .unwrap_or(1);
        let mut elements = Vec::with_capacity(len);
        for i in 0..len {
            let mut element = Map::new();
            let mut context = None;
            for (f, v) in list.fields.iter().zip(&values) {
                let raw = match &f.source {
                    Source::Template(source) => {
                        let v = render(source, record, Some(i), &mut context, t);
                        Some(Cow::Owned(v.map_err(|m| fail(f, &m))?))
                    }
                    Source::Path(p) if p.is_plural() => v
                        .as_ref()
                        .and_then(|v| v.as_array())
                        .and_then(|a| a.get(i))
                        .map(Cow::Borrowed),
                    _ => v.as_ref().map(|v| Cow::Borrowed(&**v)),
                };
                if let Some(v) = finish(f, raw)? {
                    set(&mut element, &f.generate, v).map_err(|m| fail(f, &m))?;
                }
            }
            elements.push(Value::Object(element));
        }
        set(&mut out, &list.generate, Value::Array(elements))
            .map_err(|m| format!("{} ({}): {m}", list.at, list.generate.dotted()))?;
    }
    Ok(Value::Object(out))
}

fn extract<'a>(source: &'a Source, record: &'a Value) -> Option<Cow<'a, Value>> {
    match source {
        Source::Path(p) => p.get(record),
        Source::Constant(v) => Some(Cow::Borrowed(v)),
        Source::Template(_) => None,
    }
}

/// Renders a mapping's handlebars expression over `record` (and `index` in a list); the
/// context is built once per record (or list element) and only if a template needs it.
fn render(
    source: &str,
    record: &Value,
    index: Option<usize>,
    context: &mut Option<handlebars::Context>,
    t: Templates,
) -> Result<Value, String> {
    if context.is_none() {
        let mut m = Map::new();
        m.insert("record".into(), record.clone());
        if let Some(i) = index {
            m.insert("index".into(), i.into());
        }
        if let Some(now) = t.now {
            m.insert("now".into(), now.clone());
        }
        *context = Some(handlebars::Context::wraps(Value::Object(m)).map_err(|e| e.to_string())?);
    }
    let ctx = context.as_ref().expect("built above");
    t.cache
        .render_as(source, ctx, Escape::None, t.strict)
        .map(Value::String)
        .map_err(|e| format!("extract {source}: {e}"))
}

fn fail(f: &CompiledField, message: &str) -> String {
    format!("{} ({}): {message}", f.at, f.generate.dotted())
}

/// The field's value after its default, conversion and `discardIfEmpty`; `None`: not written.
fn finish(f: &CompiledField, raw: Option<Cow<Value>>) -> Result<Option<Value>, String> {
    let raw = match raw {
        Some(v) if !matches!(&*v, Value::Null) && v.as_str() != Some("") => Some(v),
        _ => f.default.as_ref().map(Cow::Borrowed).or(raw),
    };
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = match &f.convert {
        None => raw.into_owned(),
        Some(c) => match &*raw {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| convert(c, v))
                    .collect::<Result<_, _>>()
                    .map_err(|m| fail(f, &m))?,
            ),
            v => convert(c, v).map_err(|m| fail(f, &m))?,
        },
    };
    Ok((!(f.discard_if_empty && is_empty(&value))).then_some(value))
}

fn convert(c: &Conversion, v: &Value) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    match c {
        Conversion::String => Ok(Value::String(crate::values::text_of(v))),
        Conversion::Number => match v {
            Value::Number(_) => Ok(v.clone()),
            Value::String(s) if s.trim().is_empty() => Ok(Value::Null),
            other => crate::values::number_value(crate::values::number_of(other)?),
        },
        Conversion::Boolean => match v {
            Value::Bool(_) => Ok(v.clone()),
            Value::Number(n) if n.as_f64() == Some(0.0) => Ok(false.into()),
            Value::Number(n) if n.as_f64() == Some(1.0) => Ok(true.into()),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "1" => Ok(true.into()),
                "false" | "no" | "n" | "0" => Ok(false.into()),
                "" => Ok(Value::Null),
                _ => Err(format!("'{s}' is not true or false")),
            },
            other => Err(format!("{other} is not true or false")),
        },
        Conversion::Date(d) => {
            let date = match &d.read {
                Some(f) => f.parse(&crate::values::text_of(v), d.read_zone)?,
                None => moment::parse_any(v, d.read_zone)?,
            };
            Ok(Value::String(moment::write(
                date,
                d.write.as_ref(),
                d.write_zone,
            )))
        }
    }
}

/// Writes `value` at `path` in `out`, making the objects on the way.
fn set(out: &mut Map<String, Value>, path: &OutputPath, value: Value) -> Result<(), String> {
    let (last, parents) = path.0.split_last().expect("an output path has a segment");
    let mut here = out;
    for (i, segment) in parents.iter().enumerate() {
        let slot = here
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        here = match slot {
            Value::Object(m) => m,
            _ => {
                return Err(format!(
                    "'{}' is a value already, so nothing can go inside it",
                    path.0[..=i].join(".")
                ))
            }
        };
    }
    here.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests;
