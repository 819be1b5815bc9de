//! The handlebars helpers integrator.io users expect, with integrator.io's names and
//! argument order: dates, math, strings, encoding, hashing and logic. Registered into every
//! template registry by [`register`]; the names are `sluice_model::validate::TEMPLATE_HELPERS`
//! (so `sluice validate` knows them) and the table in docs/helpers.md.
//!
//! Each helper is a plain function over its arguments' JSON values returning a JSON value
//! (or, for logic helpers, a bool that also works as a block: `{{#and a b}}..{{else}}..{{/and}}`).
//! Invariant: a helper's output goes through the registry's escaping like any `{{value}}`,
//! so no helper can break out of a JSON string or a URI segment; a helper that cannot do its
//! work (text where a number is needed, a bad regular expression) fails the render with a
//! message naming the helper, which makes the record an error. In strict mode a missing
//! argument is an error too, except for helpers that exist to test for missing values.

mod dates;
mod encoding;
mod hashing;
mod logic;
mod math;
mod strings;
#[cfg(test)]
mod tests;

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, Renderable, ScopedJson,
};
use serde_json::Value;

pub(crate) use crate::values::{number_of, number_value, text_of};

/// A helper that computes a value.
type ValueFn = fn(&Args) -> Result<Value, String>;
/// A helper that decides; inline it writes true/false, as a block it picks its branch.
type LogicFn = fn(&Args) -> Result<bool, String>;

/// Every helper of this module: (name, function, takes missing arguments in strict mode).
const VALUE_HELPERS: &[(&str, ValueFn, bool)] = &[
    ("dateFormat", dates::date_format, false),
    ("dateAdd", dates::date_add, false),
    ("timestamp", dates::timestamp, false),
    ("add", math::add, false),
    ("subtract", math::subtract, false),
    ("multiply", math::multiply, false),
    ("divide", math::divide, false),
    ("modulo", math::modulo, false),
    ("round", math::round, false),
    ("floor", math::floor, false),
    ("ceil", math::ceil, false),
    ("abs", math::abs, false),
    ("toFixed", math::to_fixed, false),
    ("sum", math::sum, false),
    ("avg", math::avg, false),
    ("replace", strings::replace, false),
    ("split", strings::split, false),
    ("join", strings::join, false),
    ("substring", strings::substring, false),
    ("trim", strings::trim, false),
    ("trimLeft", strings::trim_left, false),
    ("trimRight", strings::trim_right, false),
    ("padLeft", strings::pad_left, false),
    ("padRight", strings::pad_right, false),
    ("capitalize", strings::capitalize, false),
    ("capitalizeAll", strings::capitalize_all, false),
    ("truncate", strings::truncate, false),
    ("truncateWords", strings::truncate_words, false),
    ("regexMatch", strings::regex_match, false),
    ("regexReplace", strings::regex_replace, false),
    ("regexSearch", strings::regex_search, false),
    ("base64Encode", encoding::base64_encode, false),
    ("base64Decode", encoding::base64_decode, false),
    ("encodeURI", encoding::encode_uri, false),
    ("decodeURI", encoding::decode_uri, false),
    ("jsonParse", encoding::json_parse, false),
    ("jsonSerialize", encoding::json_serialize, false),
    ("hash", hashing::hash, false),
    ("hmac", hashing::hmac, false),
];

const LOGIC_HELPERS: &[(&str, LogicFn, bool)] = &[
    ("compare", logic::compare, false),
    ("contains", logic::contains, false),
    ("isEmpty", logic::is_empty, true),
    ("and", logic::and, true),
    ("or", logic::or, true),
    ("not", logic::not, true),
];

/// Registers every helper of this module (replacing handlebars' own `and`, `or`, `not`,
/// which cannot be blocks).
pub fn register(hb: &mut Handlebars<'static>) {
    for &(name, f, missing_ok) in VALUE_HELPERS {
        hb.register_helper(
            name,
            Box::new(ValueHelper {
                name,
                f,
                missing_ok,
            }),
        );
    }
    for &(name, f, missing_ok) in LOGIC_HELPERS {
        hb.register_helper(
            name,
            Box::new(LogicHelper {
                name,
                f,
                missing_ok,
            }),
        );
    }
}

/// The names [`register`] adds.
pub fn names() -> impl Iterator<Item = &'static str> {
    VALUE_HELPERS
        .iter()
        .map(|h| h.0)
        .chain(LOGIC_HELPERS.iter().map(|h| h.0))
}

/// A helper's arguments as JSON values (null for one not given), and the template's `now`.
pub(crate) struct Args<'a> {
    values: Vec<&'a Value>,
    now: Option<&'a Value>,
}

static NULL: Value = Value::Null;

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn get(&self, i: usize) -> &'a Value {
        self.values.get(i).copied().unwrap_or(&NULL)
    }
    pub fn all(&self) -> &[&'a Value] {
        &self.values
    }
    /// Argument `i` as text (a number written out, null as "").
    pub fn text(&self, i: usize) -> String {
        text_of(self.get(i))
    }
    /// Argument `i` as text, or `None` when not given, null or "".
    pub fn opt_text(&self, i: usize) -> Option<String> {
        Some(self.text(i)).filter(|s| !s.is_empty())
    }
    pub fn number(&self, i: usize) -> Result<f64, String> {
        number_of(self.get(i))
    }
    /// Argument `i` as a whole number, `default` when not given.
    pub fn count(&self, i: usize, default: i64) -> Result<i64, String> {
        match self.get(i) {
            Value::Null => Ok(default),
            v => {
                let n = number_of(v)?;
                if n.fract() != 0.0 {
                    return Err(format!("{n} is not a whole number"));
                }
                Ok(n as i64)
            }
        }
    }
    pub fn now(&self) -> Option<&'a Value> {
        self.now
    }
}

fn args_of<'a, 'rc: 'a>(
    name: &str,
    h: &'a Helper<'rc>,
    r: &Handlebars,
    ctx: &'a Context,
    missing_ok: bool,
) -> Result<Args<'a>, RenderError> {
    if r.strict_mode() && !missing_ok {
        if let Some(p) = h.params().iter().find(|p| p.is_value_missing()) {
            let path = p.relative_path().map(String::as_str).unwrap_or("a value");
            return Err(failed(
                name,
                format!("{path} is missing (strict templates)"),
            ));
        }
    }
    Ok(Args {
        values: h.params().iter().map(|p| p.value()).collect(),
        now: ctx.data().get("now"),
    })
}

fn failed(name: &str, message: String) -> RenderError {
    RenderErrorReason::Other(format!("{name}: {message}")).into()
}

struct ValueHelper {
    name: &'static str,
    f: ValueFn,
    missing_ok: bool,
}

impl HelperDef for ValueHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let args = args_of(self.name, h, r, ctx, self.missing_ok)?;
        (self.f)(&args)
            .map(ScopedJson::Derived)
            .map_err(|m| failed(self.name, m))
    }
}

struct LogicHelper {
    name: &'static str,
    f: LogicFn,
    missing_ok: bool,
}

impl LogicHelper {
    fn decide<'rc>(
        &self,
        h: &Helper<'rc>,
        r: &Handlebars,
        ctx: &'rc Context,
    ) -> Result<bool, RenderError> {
        let args = args_of(self.name, h, r, ctx, self.missing_ok)?;
        (self.f)(&args).map_err(|m| failed(self.name, m))
    }
}

impl HelperDef for LogicHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        Ok(ScopedJson::Derived(Value::Bool(self.decide(h, r, ctx)?)))
    }

    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let yes = self.decide(h, r, ctx)?;
        if !h.is_block() {
            out.write(if yes { "true" } else { "false" })?;
            return Ok(());
        }
        match if yes { h.template() } else { h.inverse() } {
            Some(t) => t.render(r, ctx, rc, out),
            None => Ok(()),
        }
    }
}

/// A process-wide cache of what helpers compile from their arguments (date formats,
/// regular expressions): templates are few, records many.
pub(crate) struct Compiled<T>(std::sync::LazyLock<crate::compiled::CompiledCache<T>>);

impl<T> Compiled<T> {
    pub const fn new() -> Self {
        Compiled(std::sync::LazyLock::new(Default::default))
    }

    pub fn get(
        &self,
        key: &str,
        compile: impl FnOnce() -> Result<T, String>,
    ) -> Result<std::sync::Arc<T>, String> {
        self.0.get(key, compile)
    }
}
