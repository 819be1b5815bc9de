//! `hash` and `hmac` over the RustCrypto digests (sha2, sha1, md-5, hmac), written as hex
//! or base64.

use super::Args;
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde_json::Value;
use sha2::Digest;

fn digest(algorithm: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    Ok(match algorithm.to_ascii_lowercase().as_str() {
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        "sha512" => sha2::Sha512::digest(data).to_vec(),
        "sha1" => sha1::Sha1::digest(data).to_vec(),
        "md5" => md5::Md5::digest(data).to_vec(),
        other => return Err(unknown(other)),
    })
}

fn mac(algorithm: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    Ok(match algorithm.to_ascii_lowercase().as_str() {
        "sha256" => run::<hmac::Hmac<sha2::Sha256>>(key, data),
        "sha512" => run::<hmac::Hmac<sha2::Sha512>>(key, data),
        "sha1" => run::<hmac::Hmac<sha1::Sha1>>(key, data),
        "md5" => run::<hmac::Hmac<md5::Md5>>(key, data),
        other => return Err(unknown(other)),
    })
}

fn unknown(algorithm: &str) -> String {
    format!("unknown algorithm '{algorithm}' (use sha256, sha512, sha1 or md5)")
}

fn encode(bytes: &[u8], encoding: &str) -> Result<Value, String> {
    Ok(Value::String(
        match encoding.to_ascii_lowercase().as_str() {
            "hex" | "" => hex::encode(bytes),
            "base64" => base64::engine::general_purpose::STANDARD.encode(bytes),
            other => return Err(format!("unknown encoding '{other}' (use hex or base64)")),
        },
    ))
}

/// `{{hash algorithm encoding value}}`, e.g. `{{hash "sha256" "hex" record.id}}`.
pub fn hash(a: &Args) -> Result<Value, String> {
    encode(&digest(&a.text(0), a.text(2).as_bytes())?, &a.text(1))
}

/// `{{hmac algorithm key encoding value [keyEncoding]}}`; `keyEncoding` `utf8` (default)
/// or `base64`.
pub fn hmac(a: &Args) -> Result<Value, String> {
    let key = match a.opt_text(4).as_deref() {
        None | Some("utf8") => a.text(1).into_bytes(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(a.text(1))
            .map_err(|e| format!("the key is not base64: {e}"))?,
        Some(other) => {
            return Err(format!(
                "unknown key encoding '{other}' (use utf8 or base64)"
            ))
        }
    };
    encode(&mac(&a.text(0), &key, a.text(3).as_bytes())?, &a.text(2))
}
