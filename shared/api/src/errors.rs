//! The one error shape of the API: `{"errors":[{"code","message","field"?}]}`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_core::Error;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorEntry {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer: a status and one or more entries.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub errors: Vec<ErrorEntry>,
}

impl ApiError {
    fn one(status: StatusCode, code: &'static str, message: String, field: Option<String>) -> Self {
        ApiError {
            status,
            errors: vec![ErrorEntry {
                code,
                message,
                field,
            }],
        }
    }
    pub fn validation(field: Option<String>, message: impl Into<String>) -> Self {
        Self::one(
            StatusCode::BAD_REQUEST,
            "validation_error",
            message.into(),
            field,
        )
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::one(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message.into(),
            None,
        )
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::one(StatusCode::CONFLICT, "conflict", message.into(), None)
    }
    pub fn not_found(kind: &'static str, id: &str) -> Self {
        Error::not_found(kind, id).into()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => {
                Self::one(StatusCode::NOT_FOUND, "not_found", e.to_string(), None)
            }
            Error::Validation(v) => ApiError {
                status: StatusCode::BAD_REQUEST,
                errors: v
                    .0
                    .into_iter()
                    .map(|f| ErrorEntry {
                        code: "validation_error",
                        message: f.message,
                        field: (!f.field.is_empty()).then_some(f.field),
                    })
                    .collect(),
            },
            Error::Conflict(m) => Self::conflict(m),
            Error::Unauthorized(m) => Self::unauthorized(m),
            Error::Internal(detail) => {
                // The detail may name tables, hosts or keys: log it, answer generically.
                tracing::error!(error = %format!("{detail:#}"), "internal error in the API");
                Self::one(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error; see the service logs".into(),
                    None,
                )
            }
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Error::Internal(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "errors": self.errors });
        (self.status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The raw request body, with the size limit answered in the API's error shape.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                let mut e = ApiError::validation(None, "Request body too large");
                e.status = StatusCode::PAYLOAD_TOO_LARGE;
                Err(e)
            }
            Err(r) => Err(ApiError::validation(None, r.body_text())),
        }
    }
}

impl Body {
    pub fn is_blank(&self) -> bool {
        self.0.iter().all(|b| b.is_ascii_whitespace())
    }
    /// Parses the body as JSON, naming the field on a type or unknown-field error.
    pub fn parse<T: DeserializeOwned>(&self) -> ApiResult<T> {
        let de = &mut serde_json::Deserializer::from_slice(&self.0);
        let parsed: T = serde_path_to_error::deserialize(de).map_err(path_error)?;
        Ok(parsed)
    }
    /// The body as a JSON object (what PUT merges into the stored document).
    pub fn object(&self) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
        match self.parse::<serde_json::Value>()? {
            serde_json::Value::Object(m) => Ok(m),
            _ => Err(ApiError::validation(None, "The body must be a JSON object")),
        }
    }
}

/// Reads a JSON value (a merged document) into a definition, naming the failing field.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> ApiResult<T> {
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
