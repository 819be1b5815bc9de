//! Handlebars templates, compiled once per process and rendered with a prebuilt context.

use handlebars::{
    handlebars_helper, Context, Handlebars, Helper, HelperResult, Output, RenderContext,
};
use serde_json::Value;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::RwLock;

/// Compiled templates, keyed by their source text; compiled once per process.
pub struct TemplateCache {
    registry: RwLock<Handlebars<'static>>,
}

impl Default for TemplateCache {
    fn default() -> Self {
        let mut hb = Handlebars::new();
        // Output is JSON, CSV and URLs, never HTML: no HTML escaping. JSON safety comes from
        // the `json` helper, URL safety from `urlencode`.
        hb.register_escape_fn(handlebars::no_escape);
        hb.register_helper("json", Box::new(json_helper));
        hb.register_helper("urlencode", Box::new(urlencode_helper));
        hb.register_helper("lowercase", Box::new(lowercase_helper));
        hb.register_helper("uppercase", Box::new(uppercase_helper));
        hb.register_helper("default", Box::new(default_helper));
        TemplateCache {
            registry: RwLock::new(hb),
        }
    }
}

fn name_of(source: &str) -> String {
    let mut h = DefaultHasher::new();
    source.hash(&mut h);
    format!("t{:016x}{}", h.finish(), source.len())
}

impl TemplateCache {
    /// Renders `source` with `context`, compiling it on first use.
    pub fn render(&self, source: &str, context: &Context) -> Result<String, String> {
        let name = name_of(source);
        {
            let hb = self.registry.read().unwrap();
            if hb.has_template(&name) {
                return hb.render_with_context(&name, context).map_err(describe);
            }
        }
        {
            let mut hb = self.registry.write().unwrap();
            if !hb.has_template(&name) {
                hb.register_template_string(&name, source)
                    .map_err(|e| format!("invalid template: {e}"))?;
            }
        }
        let hb = self.registry.read().unwrap();
        hb.render_with_context(&name, context).map_err(describe)
    }

    /// Renders with a JSON value as the context (builds the context once per call).
    pub fn render_value(&self, source: &str, data: &Value) -> Result<String, String> {
        let ctx = Context::wraps(data).map_err(describe)?;
        self.render(source, &ctx)
    }

    pub fn compiled(&self) -> usize {
        self.registry.read().unwrap().get_templates().len()
    }
}

fn describe(e: handlebars::RenderError) -> String {
    format!("template failed: {e}")
}

/// `{{json value}}`: the value as JSON text. A string comes out quoted and escaped, so a value
/// can never break out of a JSON body; a missing value is `null`.
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

// `{{urlencode value}}`: percent-encodes for a path segment or query value (form encoding
// writes spaces as '+', which is wrong in paths).
handlebars_helper!(urlencode_helper: |v: Json| {
    let encoded: String = url::form_urlencoded::byte_serialize(text_of(v).as_bytes()).collect();
    encoded.replace('+', "%20")
});
handlebars_helper!(lowercase_helper: |v: Json| text_of(v).to_lowercase());
handlebars_helper!(uppercase_helper: |v: Json| text_of(v).to_uppercase());
// `{{default value "fallback"}}`: the value, or the fallback when missing, null or "".
handlebars_helper!(default_helper: |v: Json, fallback: Json| {
    if v.is_null() || v.as_str() == Some("") { text_of(fallback) } else { text_of(v) }
});
