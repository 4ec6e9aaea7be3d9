//! Client-facing errors: a stable code and a safe message.

use async_graphql::ErrorExtensions as _;
use rxledger_core::pack::RuleCode;
use rxledger_store::StoreError;

/// Stable error codes, in `extensions.code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    NotFound,
    Forbidden,
    Unauthenticated,
    /// A scanned code or identifier that cannot be read; the message says where and why.
    InvalidCode,
    /// A business rule refused the change (UNKNOWN_SERIAL, STATUS_ALREADY_SET, UNDO_WINDOW_PASSED, ...).
    Rule(RuleCode),
    /// The alert case is closed: nothing more happens to it.
    CaseClosed,
    /// The case rules do not let this caller make this transition now.
    CaseNotAllowed,
    Internal,
}

impl Code {
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "BAD_REQUEST",
            Code::NotFound => "NOT_FOUND",
            Code::Forbidden => "FORBIDDEN",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::InvalidCode => "INVALID_CODE",
            Code::Rule(code) => code.as_str(),
            Code::CaseClosed => "CASE_CLOSED",
            Code::CaseNotAllowed => "CASE_NOT_ALLOWED",
            Code::Internal => "INTERNAL",
        }
    }
}

/// An error a client may see.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::NotFound(m) => ApiError::new(Code::NotFound, format!("not found: {m}")),
            StoreError::Proof(p) => ApiError::bad_request(p.to_string()),
            other => {
                // The cause goes to the log; the client gets an opaque message.
                tracing::error!(error = %other, "internal error");
                ApiError::new(
                    Code::Internal,
                    "internal error; the operator's log has the details",
                )
            }
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        async_graphql::Error::new(e.message).extend_with(|_, ext| ext.set("code", e.code.as_str()))
    }
}
