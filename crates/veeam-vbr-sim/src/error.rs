//! The spec's `Error` body (`errorCode`, `message`, `resourceId`) and its HTTP statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer. `code` must be one of the spec's `Error.errorCode` values.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub resource_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), resource_id: None }
    }

    /// 400: the request body or a parameter is malformed or invalid.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "UnexpectedContent", message)
    }

    /// 404 for an object named in the path.
    pub fn not_found(what: &str, id: impl ToString) -> ApiError {
        let id = id.to_string();
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "NotFound",
            message: format!("{what} {id} was not found"),
            resource_id: Some(id),
        }
    }

    /// 403: the user's role is not among the operation's "Available to" roles.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// The `errorCode` that best fits an arbitrary status (for `status` faults).
    pub fn code_for(status: StatusCode) -> &'static str {
        match status.as_u16() {
            400 => "UnexpectedContent",
            401 => "ExpiredToken",
            403 => "AccessDenied",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            501 => "NotImplemented",
            503 => "ServiceUnavailable",
            _ => "UnknownError",
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let mut v = json!({ "errorCode": self.code, "message": self.message });
        if let Some(r) = &self.resource_id {
            v["resourceId"] = json!(r);
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
