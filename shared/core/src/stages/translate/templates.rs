//! Handlebars templates, compiled once per process and rendered with a prebuilt context.
//!
//! Invariant: a plain `{{value}}` can only ever be data where it lands. In a URI it is one
//! percent-encoded path segment or query value, in a JSON body the inside of a JSON string;
//! only `{{{value}}}` writes raw text, on purpose. Helpers whose output is already encoded
//! (`json`, `urlencode`) write straight to the output so it is not encoded twice.

use handlebars::{
    handlebars_helper, Context, Handlebars, Helper, HelperResult, Output, RenderContext,
};
use serde_json::Value;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::RwLock;

/// Where a rendered value lands, which decides how `{{value}}` is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Headers, file names, CSV, non-JSON bodies: values as they are.
    None,
    /// URIs (`relativeURI`): `{{value}}` is percent-encoded as one path segment or query
    /// value (everything but letters, digits and `-._~`), so a value such as
    /// `../../admin?x=1#` cannot add segments, a query or a fragment.
    UriComponent,
    /// JSON bodies: `{{value}}` is escaped as the inside of a JSON string, so a value placed in
    /// quotes (`"{{record.name}}"`) cannot close them and add keys. `{{json value}}` writes
    /// whole JSON values; `{{{value}}}` writes raw text on purpose.
    JsonString,
    /// XML files (`file.template.escape: xml`): `{{value}}` with `&`, `<`, `>`, `"` and `'`
    /// as entities, so a value is text or an attribute's value and cannot add markup.
    Xml,
}

/// Compiled templates, keyed by their source text; compiled once per process. One registry
/// per escaping, and a second set in handlebars strict mode (a missing field is an error)
/// for imports that ask for it (`strictTemplates`).
pub struct TemplateCache {
    plain: Registry,
    uri: Registry,
    json: Registry,
    xml: Registry,
    strict: [Registry; 4],
}

struct Registry(RwLock<Handlebars<'static>>);

impl Registry {
    fn new(escape: Escape) -> Self {
        Self::with_strictness(escape, false)
    }

    fn with_strictness(escape: Escape, strict: bool) -> Self {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(strict);
        // Output is JSON, CSV and URLs, never HTML: no HTML escaping.
        match escape {
            Escape::None => hb.register_escape_fn(handlebars::no_escape),
            Escape::UriComponent => hb.register_escape_fn(uri_component),
            Escape::JsonString => hb.register_escape_fn(json_string_escape),
            Escape::Xml => hb.register_escape_fn(xml_escape),
        }
        hb.register_helper("json", Box::new(json_helper));
        hb.register_helper("urlencode", Box::new(urlencode_helper));
        hb.register_helper("lowercase", Box::new(lowercase_helper));
        hb.register_helper("uppercase", Box::new(uppercase_helper));
        hb.register_helper("default", Box::new(default_helper));
        crate::helpers::register(&mut hb);
        Registry(RwLock::new(hb))
    }

    fn render(&self, source: &str, context: &Context) -> Result<String, String> {
        let name = name_of(source);
        {
            let hb = self.0.read().unwrap();
            if hb.has_template(&name) {
                return render_named(&hb, &name, context);
            }
        }
        {
            let mut hb = self.0.write().unwrap();
            if !hb.has_template(&name) {
                hb.register_template_string(&name, source)
                    .map_err(|e| format!("invalid template: {e}"))?;
            }
        }
        let hb = self.0.read().unwrap();
        render_named(&hb, &name, context)
    }
}

/// Renders into a buffer that grows with the output. (`render_with_context` hands back its
/// 8 KiB output buffer whole: a rendered request lives in its page until deliver is done, so
/// pages in flight held 8 KiB per URI and body.)
fn render_named(hb: &Handlebars<'static>, name: &str, context: &Context) -> Result<String, String> {
    let mut out = Vec::new();
    hb.render_with_context_to_write(name, context, &mut out)
        .map_err(describe)?;
    String::from_utf8(out).map_err(|e| format!("the template rendered invalid UTF-8: {e}"))
}

/// What RFC 3986 leaves unencoded in a path segment or query value: its unreserved set.
const URI_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` percent-encoded as one URI path segment or query value.
pub fn uri_component(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, URI_COMPONENT).to_string()
}

/// The inside of a JSON string literal: `"`, `\` and control characters escaped.
fn json_string_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}

/// Text safe in XML content and in quoted attribute values.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

impl Default for TemplateCache {
    fn default() -> Self {
        TemplateCache {
            plain: Registry::new(Escape::None),
            uri: Registry::new(Escape::UriComponent),
            json: Registry::new(Escape::JsonString),
            xml: Registry::new(Escape::Xml),
            strict: [
                Escape::None,
                Escape::UriComponent,
                Escape::JsonString,
                Escape::Xml,
            ]
            .map(|e| Registry::with_strictness(e, true)),
        }
    }
}

fn name_of(source: &str) -> String {
    let mut h = DefaultHasher::new();
    source.hash(&mut h);
    format!("t{:016x}{}", h.finish(), source.len())
}

impl TemplateCache {
    /// Renders `source` with `context` without escaping, compiling it on first use.
    pub fn render(&self, source: &str, context: &Context) -> Result<String, String> {
        self.render_escaped(source, context, Escape::None)
    }

    /// Renders `source` with `context`, escaping `{{value}}` output as `escape` says.
    pub fn render_escaped(
        &self,
        source: &str,
        context: &Context,
        escape: Escape,
    ) -> Result<String, String> {
        self.render_as(source, context, escape, false)
    }

    /// Renders `source`, escaping as `escape` says; in `strict` mode a missing field fails.
    pub fn render_as(
        &self,
        source: &str,
        context: &Context,
        escape: Escape,
        strict: bool,
    ) -> Result<String, String> {
        let registry = match (escape, strict) {
            (Escape::None, false) => &self.plain,
            (Escape::UriComponent, false) => &self.uri,
            (Escape::JsonString, false) => &self.json,
            (Escape::Xml, false) => &self.xml,
            (Escape::None, true) => &self.strict[0],
            (Escape::UriComponent, true) => &self.strict[1],
            (Escape::JsonString, true) => &self.strict[2],
            (Escape::Xml, true) => &self.strict[3],
        };
        registry.render(source, context)
    }

    /// Renders with a JSON value as the context (builds the context once per call).
    pub fn render_value(&self, source: &str, data: &Value) -> Result<String, String> {
        self.render_value_escaped(source, data, Escape::None)
    }

    /// Like [`render_value`](Self::render_value), escaping as `escape` says.
    pub fn render_value_escaped(
        &self,
        source: &str,
        data: &Value,
        escape: Escape,
    ) -> Result<String, String> {
        let ctx = Context::wraps(data).map_err(describe)?;
        self.render_escaped(source, &ctx, escape)
    }

    pub fn compiled(&self) -> usize {
        [&self.plain, &self.uri, &self.json, &self.xml]
            .into_iter()
            .chain(&self.strict)
            .map(|r| r.0.read().unwrap().get_templates().len())
            .sum()
    }
}

/// The escaping a request body needs: JSON-string escaping unless the request says its body
/// is something other than JSON (JSON is what Sluice sends when no Content-Type is given).
pub fn body_escape<'a>(mut headers: impl Iterator<Item = (&'a str, &'a str)>) -> Escape {
    match headers.find(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        Some((_, value)) if !value.to_ascii_lowercase().contains("json") => Escape::None,
        _ => Escape::JsonString,
    }
}

fn describe(e: handlebars::RenderError) -> String {
    format!("template failed: {e}")
}

/// `{{json value}}`: the value as JSON text. A string comes out quoted and escaped, so a value
/// can never break out of a JSON body; a missing value is `null`. Written straight to the
/// output, so the JSON-string escaping of `{{value}}` does not apply to it.
fn json_helper(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let v = h.param(0).map(|p| p.value().clone()).unwrap_or(Value::Null);
    out.write(&serde_json::to_string(&v).unwrap_or_else(|_| "null".into()))?;
    Ok(())
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `{{urlencode value}}`: the value percent-encoded as a path segment or query value, as a
/// plain `{{value}}` in a URI is. Written straight to the output, so it is not encoded again.
fn urlencode_helper(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let v = h.param(0).map(|p| text_of(p.value())).unwrap_or_default();
    out.write(&uri_component(&v))?;
    Ok(())
}
handlebars_helper!(lowercase_helper: |v: Json| text_of(v).to_lowercase());
handlebars_helper!(uppercase_helper: |v: Json| text_of(v).to_uppercase());
// `{{default value "fallback"}}`: the value, or the fallback when missing, null or "".
handlebars_helper!(default_helper: |v: Json, fallback: Json| {
    if v.is_null() || v.as_str() == Some("") { text_of(fallback) } else { text_of(v) }
});
