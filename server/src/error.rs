//! `ApiError`: the one error type of the HTTP layer, and its mapping to statuses and
//! the body `{"error": {"code", "message", "details"}}`.

use allot_engine::{Rejection, RejectionClass};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 400: the body is not JSON (or not UTF-8).
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// 422 naming the field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
            .with_details(json!({ "field": field }))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 with `Retry-After`: the shard's queue is full.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the shard queue is full",
        )
    }

    /// 503: the server is starting (replaying) or stopping.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 503: the shard's log failed; nothing more is acknowledged until a restart.
    pub fn shard_failed() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shard_failed",
            "the shard's log failed",
        )
    }

    /// 500, opaque; the cause is logged here.
    pub fn internal(cause: &str) -> Self {
        tracing::error!(cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// A business rejection. `path` says whether the codes the request names are in
    /// its path or query string (unknown → 404) or in its body (unknown → 422).
    pub fn rejection(rejection: &Rejection, path: bool) -> Self {
        let status = match rejection.class() {
            RejectionClass::Unknown if path => StatusCode::NOT_FOUND,
            RejectionClass::Unknown | RejectionClass::Validation => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            RejectionClass::Conflict => StatusCode::CONFLICT,
        };
        let mut details = serde_json::to_value(rejection).unwrap_or_else(|_| json!({}));
        if let Some(map) = details.as_object_mut() {
            map.remove("code");
        }
        Self {
            status,
            code: rejection.code(),
            message: rejection.to_string(),
            details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code, "message": self.message, "details": self.details }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.code == "overloaded" {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_are_404_in_the_path_and_422_in_the_body() {
        let r = Rejection::UnknownSku { sku: "X".into() };
        assert_eq!(ApiError::rejection(&r, true).status, StatusCode::NOT_FOUND);
        let e = ApiError::rejection(&r, false);
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.code, "unknown_sku");
        assert_eq!(e.details["sku"], "X");
    }

    #[test]
    fn conflicts_are_409() {
        let r = Rejection::CreditExceeded {
            needed: 5,
            available: 1,
        };
        assert_eq!(ApiError::rejection(&r, false).status, StatusCode::CONFLICT);
    }
}
