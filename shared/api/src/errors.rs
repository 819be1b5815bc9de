//! The one error shape of the API: `{"errors":[{"code","message","field"?}]}` (the model's
//! [`ErrorBody`]); the status follows from the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sluice_core::Error;
pub use sluice_model::api::{ErrorBody, ErrorCode, ErrorEntry};

/// An error answer: one or more entries of one code.
#[derive(Debug)]
pub struct ApiError {
    pub errors: Vec<ErrorEntry>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>, field: Option<String>) -> Self {
        ApiError {
            errors: vec![ErrorEntry {
                code,
                message: message.into(),
                field,
            }],
        }
    }
    pub fn validation(field: Option<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message, field)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message, None)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message, None)
    }
    pub fn not_found(kind: &'static str, id: &str) -> Self {
        Error::not_found(kind, id).into()
    }
    /// Every problem found, each naming its field.
    pub fn fields(errors: sluice_model::ValidationErrors) -> Self {
        ApiError {
            errors: errors
                .0
                .into_iter()
                .map(|f| ErrorEntry {
                    code: ErrorCode::ValidationError,
                    message: f.message,
                    field: (!f.field.is_empty()).then_some(f.field),
                })
                .collect(),
        }
    }
    pub fn code(&self) -> ErrorCode {
        self.errors.first().map_or(ErrorCode::Internal, |e| e.code)
    }
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound { .. } => Self::new(ErrorCode::NotFound, e.to_string(), None),
            Error::Validation(v) => Self::fields(v),
            Error::Conflict(m) => Self::conflict(m),
            Error::Unauthorized(m) => Self::unauthorized(m),
            Error::Internal(detail) => {
                // The detail may name tables, hosts or keys: log it, answer generically.
                tracing::error!(error = %format!("{detail:#}"), "internal error in the API");
                Self::new(
                    ErrorCode::Internal,
                    "Internal error; see the service logs",
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

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        anyhow::Error::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            errors: self.errors,
        };
        (status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
