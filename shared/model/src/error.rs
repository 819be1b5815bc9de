use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing wrong with a definition: which field (a dotted path such as
/// `pageProcessors[1]._importId`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Everything wrong with a definition, collected rather than stopping at the first problem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
    /// Adds the errors of a nested definition with their fields under `prefix`.
    pub fn nest(&mut self, prefix: &str, other: ValidationErrors) {
        for e in other.0 {
            let field = if e.field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", e.field)
            };
            self.0.push(FieldError { field, ..e });
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new();
        e.add(field, message);
        e
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            if e.field.is_empty() {
                write!(f, "{}", e.message)?;
            } else {
                write!(f, "{}: {}", e.field, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}
