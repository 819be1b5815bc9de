//! Reading requests: the JSON body (size limit, `application/json` only, an object with a
//! leading byte order mark skipped, every unsupported field named at once, serde errors
//! naming the path), query strings and path ids (a safe character set and length, the
//! parameter named), each refused in the API's error shape.

use crate::errors::{ApiError, ApiResult, ErrorCode};
use crate::schemas;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// The raw request body.
pub struct Body(pub Bytes);

/// Is this Content-Type JSON (`application/json`, `application/merge-patch+json`, ...)?
pub(crate) fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("?").to_string());
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "Request body too large: at most {} bytes",
                        crate::MAX_BODY_BYTES
                    ),
                    None,
                ))
            }
            Err(r) => return Err(ApiError::validation(None, r.body_text())),
        };
        let body = Body(bytes);
        // No Content-Type is read as JSON; a declared other type is not guessed at.
        if let Some(ct) = content_type.filter(|ct| !is_json(ct)) {
            if !body.is_blank() {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("Content-Type '{ct}' is not supported: send JSON with Content-Type: application/json"),
                    None,
                ));
            }
        }
        Ok(body)
    }
}

impl Body {
    pub fn is_blank(&self) -> bool {
        self.0.iter().all(|b| b.is_ascii_whitespace())
    }

    /// The body as a JSON object (what PUT merges into the stored document). A UTF-8 byte
    /// order mark (some Windows editors save files with one) is skipped, as `sluice validate`
    /// skips it.
    pub fn object(&self) -> ApiResult<Map<String, Value>> {
        let json = self.0.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&self.0);
        let de = &mut serde_json::Deserializer::from_slice(json);
        let value: Value = serde_path_to_error::deserialize(de).map_err(path_error)?;
        match value {
            Value::Object(m) => Ok(m),
            other => Err(ApiError::validation(
                None,
                format!("The body must be a JSON object, not {}", kind_of(&other)),
            )),
        }
    }

    /// The body as `T`: an object, every field `T` does not have named at once, then read
    /// by serde naming the path of a wrong value.
    pub fn json<T: DeserializeOwned + ToSchema>(&self) -> ApiResult<T> {
        from_value(Value::Object(self.object()?))
    }

    /// Like [`Body::json`], with `T::default()` for an empty body.
    pub fn json_or_default<T: DeserializeOwned + ToSchema + Default>(&self) -> ApiResult<T> {
        if self.is_blank() {
            Ok(T::default())
        } else {
            self.json()
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Object(_) => "an object",
    }
}

/// Reads a JSON value (a body, a merged document) as `T`, first listing every field that
/// `T`'s schema does not have.
pub fn from_value<T: DeserializeOwned + ToSchema>(value: Value) -> ApiResult<T> {
    let unknown = schemas::unknown_fields(&T::name(), &value);
    if !unknown.is_empty() {
        return Err(ApiError::fields(unknown));
    }
    serde_path_to_error::deserialize(value).map_err(path_error)
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = e.inner();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::validation(None, format!("Malformed JSON: {inner}"));
    }
    let e = sluice_model::parse::field_error(e);
    ApiError::validation(Some(e.field).filter(|f| !f.is_empty()), e.message)
}

/// A query string read as `T`; a bad one is a validation_error.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|r| ApiError::validation(None, r.body_text()))
    }
}

/// The path's ids read as `T` (a `String`, or a tuple for two), each checked to be a safe id
/// (the parameter is named when not).
pub struct Ids<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Ids<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let reject =
            |r: axum::extract::rejection::PathRejection| ApiError::validation(None, r.body_text());
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(reject)?;
        for (name, value) in &params {
            if let Some(why) = sluice_model::validate::id_problem(value) {
                return Err(ApiError::validation(Some(name.clone()), why));
            }
        }
        let Path(ids) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(reject)?;
        Ok(Ids(ids))
    }
}
