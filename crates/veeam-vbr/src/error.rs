//! The one error type of the VBR client, with a small fixed vocabulary of reasons.
//!
//! The reason strings are the EM client's (`src/em/error.rs` in the exporter) wherever the
//! meaning is the same, so the exporter's `reason` label means one thing for both APIs.

use std::fmt;
use std::time::Duration;

/// VBR's `Error` body (`components/schemas/Error`: `errorCode`, `message`, `resourceId`), or
/// what could be read of an OAuth2-style error (`error`, `error_description`) on the token call.
///
/// `errorCode` is kept as a string: the spec lists ten values, but being liberal costs nothing
/// and a newer server may add more. Never holds a token or the password: it is built only
/// from the server's error fields, never from the request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiError {
    /// `errorCode` (e.g. `AccessDenied`, `NotImplemented`) or the OAuth2 `error` (`invalid_grant`).
    pub error_code: Option<String>,
    /// `message` or `error_description`; a short placeholder when the body had neither.
    pub message: String,
    /// `resourceId`, when the server named the object involved.
    pub resource_id: Option<String>,
}

impl ApiError {
    pub(crate) fn bare(message: impl Into<String>) -> ApiError {
        ApiError { error_code: None, message: message.into(), resource_id: None }
    }

    /// True when the code (case-insensitively) is `code`.
    pub fn code_is(&self, code: &str) -> bool {
        self.error_code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(code))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error_code {
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        if let Some(id) = &self.resource_id {
            write!(f, " (resource {id})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to VBR.
///
/// [`Error::reason`] maps each variant to a short, fixed string that is safe to use as a metric
/// label value; messages (which may contain anything VBR says) stay in `Display` only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token call refused the credentials: HTTP 401, or 400 with `invalid_grant` (OAuth2,
    /// RFC 6749 §5.2) or an `AccessDenied`/`InvalidToken`/`ExpiredToken` code.
    #[error("logon refused (HTTP {status}): {error}")]
    LogonFailed { status: u16, error: ApiError },
    /// HTTP 401 on any other call, after one token renewal and retry already failed.
    #[error("access token expired or unknown (HTTP 401): {error}")]
    SessionExpired { error: ApiError },
    /// HTTP 403: the account's VBR role lacks this operation (e.g. `serverInfo` is Backup
    /// Administrator only; FLR needs Backup Administrator or Restore Operator).
    #[error("forbidden (HTTP 403): {error}")]
    Forbidden { error: ApiError },
    /// HTTP 404, or an object the caller asked for that does not exist (no restore point).
    #[error("not found (HTTP 404): {error}")]
    NotFound { error: ApiError },
    /// Any other 4xx: VBR rejected the request as malformed or unsupported.
    #[error("request rejected (HTTP {status}): {error}")]
    Rejected { status: u16, error: ApiError },
    /// 5xx: VBR failed or is overloaded.
    #[error("server error (HTTP {status}): {error}")]
    ServerError { status: u16, error: ApiError },
    /// No complete answer within the per-request timeout.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// Connection, TLS or protocol failure before a complete answer arrived.
    #[error("transport error: {0}")]
    Transport(String),
    /// The answer arrived but is not what the spec says it is.
    #[error("cannot decode VBR response: {0}")]
    Decode(String),
    /// A body exceeded its cap (`max_body_bytes`, `max_download_bytes` or a ZIP limit).
    #[error("{what} larger than {limit} bytes")]
    TooLarge { what: &'static str, limit: u64 },
    /// A VBR task finished with `result` `Failed` or `Cancelled` (or stopped without success).
    #[error("task {operation} failed: {message}")]
    TaskFailed { operation: String, message: String },
    /// The client could not be built from its configuration (bad CA file and so on), or a
    /// request could not be formed from the caller's arguments.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The downloaded ZIP is corrupt, truncated, ambiguous or holds an unsafe entry name.
    #[error("bad download archive: {0}")]
    BadArchive(String),
    /// The server refused every `x-api-version` this client speaks (see [`crate::ApiVersion`]).
    #[error("server supports none of the API revisions this client speaks (tried {tried}): {error}")]
    UnsupportedVersion { tried: String, error: ApiError },
}

impl Error {
    /// Every value [`Error::reason`] can return.
    pub const REASONS: &'static [&'static str] = &[
        "logon_failed",
        "session_expired",
        "forbidden",
        "not_found",
        "rejected",
        "server_error",
        "timeout",
        "transport",
        "decode",
        "too_large",
        "task_failed",
        "config",
        "bad_archive",
        "unsupported_version",
    ];

    /// A short, bounded, label-safe name for the kind of failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::LogonFailed { .. } => "logon_failed",
            Error::SessionExpired { .. } => "session_expired",
            Error::Forbidden { .. } => "forbidden",
            Error::NotFound { .. } => "not_found",
            Error::Rejected { .. } => "rejected",
            Error::ServerError { .. } => "server_error",
            Error::Timeout(_) => "timeout",
            Error::Transport(_) => "transport",
            Error::Decode(_) => "decode",
            Error::TooLarge { .. } => "too_large",
            Error::TaskFailed { .. } => "task_failed",
            Error::Config(_) => "config",
            Error::BadArchive(_) => "bad_archive",
            Error::UnsupportedVersion { .. } => "unsupported_version",
        }
    }

    /// The HTTP status this error came with, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::LogonFailed { status, .. } | Error::Rejected { status, .. } | Error::ServerError { status, .. } => {
                Some(*status)
            }
            Error::SessionExpired { .. } => Some(401),
            Error::Forbidden { .. } => Some(403),
            Error::NotFound { .. } => Some(404),
            _ => None,
        }
    }

    /// Maps a non-2xx HTTP status and VBR's error body to a variant. `is_token_call` is true for
    /// `POST /api/oauth2/token`, where a 401 (or a 400 `invalid_grant`) means bad credentials or
    /// a spent refresh token rather than an expired access token.
    pub fn from_status(status: u16, error: ApiError, is_token_call: bool) -> Error {
        match status {
            401 if is_token_call => Error::LogonFailed { status, error },
            400 if is_token_call && is_grant_refusal(&error) => Error::LogonFailed { status, error },
            401 => Error::SessionExpired { error },
            403 => Error::Forbidden { error },
            404 => Error::NotFound { error },
            500..=599 => Error::ServerError { status, error },
            _ => Error::Rejected { status, error },
        }
    }
}

/// A 400 on the token call that refuses the grant itself. OAuth2 servers answer a bad password
/// or a spent refresh token with `400 {"error":"invalid_grant"}` (RFC 6749 §5.2); the VBR spec
/// only promises its own `Error` body, whose codes for this are `AccessDenied`, `InvalidToken`
/// and `ExpiredToken`. Accept all of them.
fn is_grant_refusal(error: &ApiError) -> bool {
    ["invalid_grant", "unauthorized_client", "AccessDenied", "InvalidToken", "ExpiredToken"]
        .iter()
        .any(|code| error.code_is(code))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed() {
        let e = ApiError::default;
        let samples = [
            Error::LogonFailed { status: 401, error: e() },
            Error::SessionExpired { error: e() },
            Error::Forbidden { error: e() },
            Error::NotFound { error: e() },
            Error::Rejected { status: 400, error: e() },
            Error::ServerError { status: 500, error: e() },
            Error::Timeout(Duration::from_secs(1)),
            Error::Transport(String::new()),
            Error::Decode(String::new()),
            Error::TooLarge { what: "body", limit: 1 },
            Error::TaskFailed { operation: String::new(), message: String::new() },
            Error::Config(String::new()),
            Error::BadArchive(String::new()),
            Error::UnsupportedVersion { tried: String::new(), error: e() },
        ];
        let reasons: Vec<_> = samples.iter().map(Error::reason).collect();
        assert_eq!(reasons, Error::REASONS);
    }

    #[test]
    fn status_mapping() {
        let e = ApiError::default;
        assert_eq!(Error::from_status(401, e(), true).reason(), "logon_failed");
        assert_eq!(Error::from_status(401, e(), false).reason(), "session_expired");
        assert_eq!(Error::from_status(403, e(), false).reason(), "forbidden");
        assert_eq!(Error::from_status(404, e(), false).reason(), "not_found");
        assert_eq!(Error::from_status(400, e(), false).reason(), "rejected");
        assert_eq!(Error::from_status(400, e(), true).reason(), "rejected");
        let grant = ApiError { error_code: Some("invalid_grant".into()), ..e() };
        assert_eq!(Error::from_status(400, grant, true).reason(), "logon_failed");
        assert_eq!(Error::from_status(503, e(), false).reason(), "server_error");
    }

    #[test]
    fn display_carries_the_vbr_error_body() {
        let err = Error::Forbidden {
            error: ApiError {
                error_code: Some("AccessDenied".into()),
                message: "Forbidden".into(),
                resource_id: Some("r-1".into()),
            },
        };
        assert_eq!(err.to_string(), "forbidden (HTTP 403): AccessDenied: Forbidden (resource r-1)");
    }
}
