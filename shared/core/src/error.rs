use sluice_model::ValidationErrors;

/// What can go wrong in stage logic and the API, sorted by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A definition or job that does not exist ("Export not found: exp123").
    #[error("{kind} not found: {id}")]
    NotFound { kind: &'static str, id: String },
    /// Bad input, naming the fields.
    #[error("{0}")]
    Validation(ValidationErrors),
    /// The request clashes with current state ("Flow is currently running").
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    /// Infrastructure failed (store, queue, network to AWS): worth a retry.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(ValidationErrors::single(field, message))
    }
}

impl From<ValidationErrors> for Error {
    fn from(e: ValidationErrors) -> Self {
        Error::Validation(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
