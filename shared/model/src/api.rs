//! The API's own wire shapes that are not definitions: the one error answer
//! `{"errors":[{code, message, field?}]}` and its codes, and list pages with a cursor.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a request failed. Each code has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a field is missing, malformed or refers to nothing; `field` names it.
    ValidationError,
    /// 401: no `Authorization: Bearer <key>` header, or an unknown key.
    Unauthorized,
    /// 404: no such resource (or route).
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the resource is busy or still in use (a running flow, a definition in use).
    Conflict,
    /// 413: the body is larger than the API accepts.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 500: something failed inside the service; its logs say what.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ValidationError => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Internal => 500,
        }
    }
}

/// One thing wrong with a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorEntry {
    pub code: ErrorCode,
    /// What went wrong and, where it helps, what to do about it.
    pub message: String,
    /// The field at fault, as a path into the request (`pageProcessors[1]._importId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Every error answer of the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"errors": [{"code": "validation_error",
    "message": "Invalid cron expression: expected 5 fields (minute hour day month weekday), got 3",
    "field": "schedule"}]}))]
pub struct ErrorBody {
    pub errors: Vec<ErrorEntry>,
}

/// One page of a list; pass `nextCursor` as `cursor` to read the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
