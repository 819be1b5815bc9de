//! Why a record failed: a closed set of codes, each with one serde name, that the stages
//! set, the store keeps with each job error, the API shows and filters on, and retries read.
//!
//! The code says which kind of failure it was, so that code (a retry, `proceedOnFailure`,
//! the errors API) can act on it; the message beside it says what happened and what the
//! user can do. A new kind of failure is a new variant here, never a string made up where
//! the failure happens.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// A part of an input that is not a record (a bad line). There is no record to retry:
    /// fix the input and run it again.
    Unreadable,
    /// The export's transform failed on the record.
    Transform,
    /// The export's output filter could not be evaluated on the record.
    OutputFilter,
    /// The import's filter could not be evaluated on the record.
    Filter,
    /// A router branch's input filter could not be evaluated on the record.
    InputFilter,
    /// A JavaScript hook, script filter or script transform threw, ran out of time or
    /// memory, or answered in the wrong shape.
    Script,
    /// A mapping or responseMapping failed on the record.
    Mapping,
    /// A handlebars template (URI, body, header, file name) failed to render.
    Template,
    /// The step cannot send the record as it is set up (a missing section, a bad setting).
    Config,
    /// The rendered URL is refused (not http or https, not a valid URL).
    UrlRefused,
    /// The URL's address is one the deployment does not let imports reach.
    AddressRefused,
    /// No reply after every attempt: the connection failed, or the request timed out or was
    /// cut off and the step sends again after that (`http.retryAmbiguous`, lookups,
    /// idempotent methods). Automatic retries send it again.
    Network,
    /// No reply after the request went out (timed out, or the connection dropped after it
    /// was sent): the target may have acted on it, and the import does not send again after
    /// that (`http.retryAmbiguous`). Never sent again by itself: check the target, then retry
    /// or resolve it.
    MaybeDelivered,
    /// No turn under the connection's limits (its shared slots or rate) could be taken.
    Limits,
    /// The ledger holds an answer for the record that cannot be read.
    Ledger,
    /// The record may have reached the target and no reply was recorded; it is not sent
    /// again by itself (check the target, then retry or resolve it).
    DeliveryUnknown,
    /// The import's evaluator judged the reply a failure.
    Evaluator,
    /// The import's evaluator could not be evaluated on the reply.
    EvaluatorError,
    /// The record's reply (its result, in a batch reply) holds an error message at the
    /// import's `http.response.errorPath`.
    ReplyError,
    /// The record was sent and evaluate found no reply recorded for it.
    NoReply,
    /// The record's page was dead-lettered after its redeliveries.
    DeadLetter,
    /// A file could not be written.
    #[serde(rename = "upload_error")]
    Upload,
    /// The SFTP server could not be reached or refused the file (after a second attempt).
    #[serde(rename = "sftp_error")]
    Sftp,
    /// The SFTP server's host key is not the one the connection pins.
    HostKeyMismatch,
    /// The file exists and the import's overwrite policy is `fail`.
    FileExists,
    /// The export could not be read (the job failed).
    Export,
}

impl FailureCode {
    /// Failed before any step (unreadable, or the export's shaping): such a record never
    /// goes on past a step with `proceedOnFailure`, since that step did not fail it.
    pub fn is_source_failure(self) -> bool {
        matches!(
            self,
            FailureCode::Unreadable | FailureCode::Transform | FailureCode::OutputFilter
        )
    }

    /// Failed in the trigger's shaping (the export's transform or output filter): the
    /// record still holds its data as read, so a retry shapes it again.
    pub fn reshapes_on_retry(self) -> bool {
        matches!(self, FailureCode::Transform | FailureCode::OutputFilter)
    }

    /// The evaluator's judgment of a reply (so the record was sent).
    pub fn is_judgment(self) -> bool {
        matches!(
            self,
            FailureCode::Evaluator | FailureCode::EvaluatorError | FailureCode::ReplyError
        )
    }
}

/// The serde name: `evaluator`, `delivery_unknown`, ...
impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => f.write_str(&name),
            _ => unreachable!("a unit variant serializes as its name"),
        }
    }
}

/// A failure as a stage hands it on: its kind and a message for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: FailureCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: FailureCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_the_names_stored_errors_carry() {
        for (code, name) in [
            (FailureCode::Evaluator, "evaluator"),
            (FailureCode::DeliveryUnknown, "delivery_unknown"),
            (FailureCode::Upload, "upload_error"),
            (FailureCode::OutputFilter, "output_filter"),
        ] {
            assert_eq!(code.to_string(), name);
            let back: FailureCode = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(back, code);
        }
        assert!(serde_json::from_value::<FailureCode>(serde_json::json!("http_500")).is_err());
    }
}
