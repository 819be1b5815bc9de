//! Encoding helpers: base64 (the `base64` crate), URI percent-encoding as JavaScript's
//! `encodeURI` does it (`percent-encoding`), JSON text in and out.

use super::Args;
use base64::Engine;
use serde_json::Value;

/// `{{base64Encode s}}`: the UTF-8 bytes of `s`, standard alphabet with padding.
pub fn base64_encode(a: &Args) -> Result<Value, String> {
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(a.text(0)),
    ))
}

/// `{{base64Decode s}}`: the text `s` encodes (standard or URL-safe alphabet); bytes that
/// are not UTF-8 are an error.
pub fn base64_decode(a: &Args) -> Result<Value, String> {
    let s = a.text(0);
    let s = s.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .map_err(|e| format!("'{s}' is not base64: {e}"))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| "the decoded bytes are not UTF-8 text".into())
}

/// What JavaScript's `encodeURI` leaves alone: letters, digits, `-_.!~*'()` and the
/// characters that give a URI its shape (`;,/?:@&=+$#`).
const ENCODE_URI: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b';')
    .remove(b',')
    .remove(b'/')
    .remove(b'?')
    .remove(b':')
    .remove(b'@')
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b'#');

/// `{{encodeURI s}}`: as JavaScript's `encodeURI` (`a b` → `a%20b`). In a `relativeURI`
/// use it with `{{{ }}}`: a plain `{{value}}` there is percent-encoded already.
pub fn encode_uri(a: &Args) -> Result<Value, String> {
    Ok(Value::String(
        percent_encoding::utf8_percent_encode(&a.text(0), ENCODE_URI).to_string(),
    ))
}

/// `{{decodeURI s}}`: percent-escapes decoded; ones that are not UTF-8 are an error.
pub fn decode_uri(a: &Args) -> Result<Value, String> {
    percent_encoding::percent_decode_str(&a.text(0))
        .decode_utf8()
        .map(|s| Value::String(s.into_owned()))
        .map_err(|_| "the decoded bytes are not UTF-8 text".into())
}

/// `{{jsonParse s}}`: the JSON value `s` holds (for subexpressions: `(jsonParse x)`).
pub fn json_parse(a: &Args) -> Result<Value, String> {
    match a.get(0) {
        Value::String(s) => serde_json::from_str(s).map_err(|e| format!("not JSON: {e}")),
        other => Ok(other.clone()),
    }
}

/// `{{jsonSerialize v}}`: `v` as JSON text. In a JSON body write it inside quotes
/// (`"{{jsonSerialize v}}"`, a string holding JSON) or use `{{json v}}` for the value.
pub fn json_serialize(a: &Args) -> Result<Value, String> {
    Ok(Value::String(a.get(0).to_string()))
}
