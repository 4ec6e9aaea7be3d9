//! Errors of the EPCIS REST binding: RFC 7807 `application/problem+json` with the GS1
//! exception types of the EPCIS 2.0 OpenAPI as `type`, and rxledger's stable `code` beside.

use poem::Response;
use poem::http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::headers;

/// The EPCIS exception a problem reports (its `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    Validation,
    QueryParameter,
    Security,
    NoSuchResource,
    QueryTooLarge,
    CaptureLimitExceeded,
    NotAcceptable,
    UnsupportedMediaType,
    ResourceAlreadyExists,
    /// A subscription's controls (`stream`, schedule, `initialRecordTime`) are refused.
    SubscriptionControls,
    Implementation,
    /// Not an EPCIS exception: the caller's rate-limit bucket is empty (429).
    RateLimited,
}

impl Exception {
    pub fn uri(self) -> &'static str {
        match self {
            Exception::Validation => "epcisException:ValidationException",
            Exception::QueryParameter => "epcisException:QueryParameterException",
            Exception::Security => "epcisException:SecurityException",
            Exception::NoSuchResource => "epcisException:NoSuchResourceException",
            Exception::QueryTooLarge => "epcisException:QueryTooLargeException",
            Exception::CaptureLimitExceeded => "epcisException:CaptureLimitExceededException",
            Exception::NotAcceptable => "epcisException:NotAcceptableException",
            Exception::UnsupportedMediaType => "epcisException:UnsupportedMediaTypeException",
            Exception::ResourceAlreadyExists => "epcisException:ResourceAlreadyExistsException",
            Exception::SubscriptionControls => "epcisException:SubscriptionControlsException",
            Exception::Implementation => "epcisException:ImplementationException",
            Exception::RateLimited => "about:blank",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Exception::Validation => "The EPCIS document or event is not valid",
            Exception::QueryParameter => "A query parameter is not valid",
            Exception::Security => "Not allowed",
            Exception::NoSuchResource => "No such resource",
            Exception::QueryTooLarge => "The query result is too large",
            Exception::CaptureLimitExceeded => "The capture payload is too large",
            Exception::NotAcceptable => "Cannot answer in the requested format or version",
            Exception::UnsupportedMediaType => "Unsupported media type",
            Exception::ResourceAlreadyExists => "The resource already exists",
            Exception::SubscriptionControls => "The subscription cannot be made",
            Exception::Implementation => "Temporarily unavailable",
            Exception::RateLimited => "Too many requests",
        }
    }
}

/// One refusal: what the client gets, and nothing internal.
#[derive(Clone, Debug, PartialEq)]
pub struct EpcisProblem {
    pub status: StatusCode,
    pub exception: Exception,
    /// rxledger's stable code (`INVALID_IDENTIFIER`, `RATE_LIMITED`, ...).
    pub code: String,
    pub detail: String,
    pub retry_after: Option<u64>,
}

impl EpcisProblem {
    pub fn new(
        status: StatusCode,
        exception: Exception,
        code: &str,
        detail: impl Into<String>,
    ) -> EpcisProblem {
        EpcisProblem {
            status,
            exception,
            code: code.to_string(),
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn validation(code: &str, detail: impl Into<String>) -> EpcisProblem {
        EpcisProblem::new(StatusCode::BAD_REQUEST, Exception::Validation, code, detail)
    }

    pub fn parameter(detail: impl Into<String>) -> EpcisProblem {
        EpcisProblem::new(
            StatusCode::BAD_REQUEST,
            Exception::QueryParameter,
            "BAD_QUERY_PARAMETER",
            detail,
        )
    }

    /// A subscription refused as asked (400), or for want of room (429).
    pub fn subscription(status: StatusCode, code: &str, detail: impl Into<String>) -> EpcisProblem {
        EpcisProblem::new(status, Exception::SubscriptionControls, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> EpcisProblem {
        EpcisProblem::new(
            StatusCode::NOT_FOUND,
            Exception::NoSuchResource,
            "NOT_FOUND",
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> EpcisProblem {
        EpcisProblem::new(
            StatusCode::FORBIDDEN,
            Exception::Security,
            "FORBIDDEN",
            detail,
        )
    }

    /// An internal failure: the cause goes to the operator's log, the client gets a code.
    pub fn internal(cause: impl std::fmt::Display) -> EpcisProblem {
        tracing::error!(error = %cause, "EPCIS request failed");
        EpcisProblem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Exception::Implementation,
            "INTERNAL",
            "internal error; the operator's log has the details",
        )
    }

    /// An error poem itself raised under `/epcis` (no such path, wrong method, a path
    /// parameter it could not read) in EPCIS terms.
    pub fn from_poem(e: &poem::Error, path: &str) -> EpcisProblem {
        match e.status() {
            StatusCode::NOT_FOUND => {
                EpcisProblem::not_found(format!("nothing is served at {path}"))
            }
            StatusCode::METHOD_NOT_ALLOWED => EpcisProblem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Exception::Validation,
                "BAD_REQUEST",
                format!("{path} does not take this method; OPTIONS lists those it does"),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => EpcisProblem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Exception::CaptureLimitExceeded,
                "TOO_LARGE",
                "the request body is too large",
            ),
            s if s.is_server_error() => EpcisProblem::internal(e),
            s => EpcisProblem::new(s, Exception::Validation, "BAD_REQUEST", e.to_string()),
        }
    }

    /// The problem as a JSON object, also how a capture job lists its errors.
    pub fn body(&self) -> Value {
        json!({
            "type": self.exception.uri(),
            "title": self.exception.title(),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        })
    }

    pub fn respond(&self) -> Response {
        let mut r = Response::builder()
            .status(self.status)
            .content_type("application/problem+json")
            .body(self.body().to_string());
        if let Some(after) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        headers::standard(r.headers_mut());
        if self.exception == Exception::CaptureLimitExceeded {
            headers::capture_limits(r.headers_mut());
        }
        r
    }
}

/// A web-layer refusal (authentication, rate limit) in EPCIS terms.
impl From<crate::Problem> for EpcisProblem {
    fn from(p: crate::Problem) -> EpcisProblem {
        let exception = match p.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Exception::Security,
            StatusCode::TOO_MANY_REQUESTS => Exception::RateLimited,
            StatusCode::NOT_FOUND => Exception::NoSuchResource,
            StatusCode::PAYLOAD_TOO_LARGE => Exception::CaptureLimitExceeded,
            s if s.is_server_error() => Exception::Implementation,
            _ => Exception::Validation,
        };
        EpcisProblem {
            status: p.status,
            exception,
            code: p.code,
            detail: p.message,
            retry_after: p.retry_after,
        }
    }
}

/// A GraphQL-side refusal (a store error, a bad filter value) in EPCIS terms.
impl From<rxledger_graphql::ApiError> for EpcisProblem {
    fn from(e: rxledger_graphql::ApiError) -> EpcisProblem {
        use rxledger_graphql::Code;
        match e.code {
            // Already logged where it was turned into an opaque message.
            Code::Internal => EpcisProblem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Exception::Implementation,
                e.code.as_str(),
                e.message,
            ),
            Code::Unauthenticated => EpcisProblem::new(
                StatusCode::UNAUTHORIZED,
                Exception::Security,
                e.code.as_str(),
                e.message,
            ),
            Code::Forbidden => EpcisProblem::forbidden(e.message),
            _ => EpcisProblem::new(
                StatusCode::BAD_REQUEST,
                Exception::QueryParameter,
                e.code.as_str(),
                e.message,
            ),
        }
    }
}
