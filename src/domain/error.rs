//! The errors a use case can end in. The HTTP adapter maps each variant to a status and the
//! contract's message in one place.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::domain::access::AccessDenied;

/// Validation messages per request field, rendered as `{"errors": {"<field>": [..]}}`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// 404; `None` renders the generic `Not Found`.
    #[error("not found: {}", .0.as_deref().unwrap_or("Not Found"))]
    NotFound(Option<String>),
    /// 401 with the access rule's message.
    #[error("access denied: {0}")]
    Denied(AccessDenied),
    /// 422 with per-field messages.
    #[error("invalid fields: {0:?}")]
    Invalid(FieldErrors),
    /// 422 with a message.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    /// 400 with a message.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 413: the body is larger than `MAX_UPLOAD_BYTES`.
    #[error("payload too large (limit {limit} bytes)")]
    TooLarge { limit: u64 },
    /// 503: a service Jade depends on for every request (token verification) is down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request is well formed but does not apply to what it names (400, the message as
    /// it is): e.g. retrying a run that did not fail.
    #[error("not applicable: {0}")]
    NotApplicable(String),
    /// The caller may read but not do this (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Another service refused the request on the caller's behalf (Airflow's API): its
    /// status and reason are passed on.
    #[error("refused ({status}): {detail}")]
    Refused { status: u16, message: String, detail: String },
    /// 500. The fault is logged with its causes, never sent.
    #[error("internal error")]
    Internal(#[source] Fault),
}

/// What failed inside Jade or a service behind it, for logs only: what was being done, and
/// the error that caused it with its own causes. Never holds a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{context}")]
pub struct Fault {
    context: String,
    #[source]
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// The service is down, unreachable or did not answer in time (it may come back by
    /// itself), as opposed to a bug or an answer Jade cannot use.
    unavailable: bool,
}

/// The contract's 503 message for a database Jade needs failing or timing out.
pub const SERVICE_UNAVAILABLE: &str = "Service temporarily unavailable. Please retry.";

impl Fault {
    pub fn new(context: impl Into<String>) -> Self {
        Fault { context: context.into(), cause: None, unavailable: false }
    }

    pub fn caused_by(context: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Fault { context: context.into(), cause: Some(Arc::new(cause)), unavailable: false }
    }

    /// Marks the service as unavailable: down, unreachable, refusing, or too slow to answer
    /// (the adapter that talked to it decides).
    pub fn unavailable(mut self) -> Self {
        self.unavailable = true;
        self
    }

    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}

/// Faults are equal when they say the same thing (their causes are not comparable).
impl PartialEq for Fault {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
            && self.unavailable == other.unavailable
            && self.cause.as_ref().map(ToString::to_string) == other.cause.as_ref().map(ToString::to_string)
    }
}

impl Eq for Fault {}

impl Error {
    pub fn not_found() -> Self {
        Error::NotFound(None)
    }

    /// A 500 caused by `cause` while doing `context`.
    pub fn internal(context: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Internal(Fault::caused_by(context, cause))
    }

    pub fn not_found_with(message: impl Into<String>) -> Self {
        Error::NotFound(Some(message.into()))
    }

    /// One field, one message: `{"errors": {"tag": ["has already been taken"]}}`.
    pub fn invalid(field: &str, message: &str) -> Self {
        let mut errors = FieldErrors::new();
        errors.insert(field.to_owned(), vec![message.to_owned()]);
        Error::Invalid(errors)
    }
}

/// An error with its causes on one line, for logs (each cause once, even when an error
/// already repeats its source's text).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
