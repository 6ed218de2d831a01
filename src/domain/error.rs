//! The errors a use case can end in. The HTTP adapter maps each variant to a status and the
//! contract's message in one place.

use std::collections::BTreeMap;

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
    /// 500. The text is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn not_found() -> Self {
        Error::NotFound(None)
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
