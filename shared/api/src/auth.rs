//! Bearer keys: every route but the open ones needs `Authorization: Bearer <key>`.

use crate::errors::ApiError;
use crate::ApiConfig;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The name of the key that made the request (the audit log's actor).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// Compares in time that depends only on the length of `given`, so a wrong key leaks
/// nothing about how much of it matched.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = (given.len() != expected.len()) as u8;
    for (i, b) in given.iter().enumerate() {
        let e = expected.get(i).copied().unwrap_or(0);
        diff |= b ^ e;
    }
    diff == 0
}

/// The name of the configured key matching `token`, checking every key.
pub fn key_name(config: &ApiConfig, token: &str) -> Option<String> {
    let mut found = None;
    for (name, key) in &config.api_keys {
        if constant_time_eq(token.as_bytes(), key.as_bytes()) && !key.is_empty() {
            found = Some(name.clone());
        }
    }
    found
}

pub async fn require_key(
    State(config): State<Arc<ApiConfig>>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = match header.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    }) {
        Some(t) => t.trim(),
        None => {
            return ApiError::unauthorized("Missing Authorization: Bearer <key> header")
                .into_response()
        }
    };
    match key_name(&config, token) {
        Some(name) => {
            req.extensions_mut().insert(Caller(name));
            next.run(req).await
        }
        None => ApiError::unauthorized("Invalid API key").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_keys() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }

    #[test]
    fn names_the_matching_key_and_never_matches_empty() {
        let config = ApiConfig::parse("ci:one,ops:two");
        assert_eq!(key_name(&config, "two").as_deref(), Some("ops"));
        assert_eq!(key_name(&config, "three"), None);
        let empty = ApiConfig {
            api_keys: vec![("blank".into(), String::new())],
        };
        assert_eq!(key_name(&empty, ""), None);
    }
}
