//! The one error type of the EM client, with a small fixed vocabulary of reasons.

use std::time::Duration;

/// Everything that can go wrong talking to EM.
///
/// [`Error::reason`] maps each variant to a short, fixed string that is safe to use as a metric
/// label value; messages (which may contain anything EM says) stay in `Display` only.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum Error {
    /// Logon was refused (HTTP 401 on `POST /sessionMngr/`): wrong credentials or no EM role.
    #[error("logon refused (HTTP 401): {message}")]
    LogonFailed { message: String },
    /// HTTP 401 on any other call: the logon session token has expired or is unknown.
    #[error("logon session expired or unknown (HTTP 401): {message}")]
    SessionExpired { message: String },
    /// HTTP 403: the account's EM role lacks this operation or this VM is outside its scope.
    #[error("forbidden (HTTP 403): {message}")]
    Forbidden { message: String },
    /// HTTP 404: the resource does not exist, or belongs to another logon session.
    #[error("not found (HTTP 404): {message}")]
    NotFound { message: String },
    /// Any other 4xx: EM rejected the request as malformed or unsupported.
    #[error("request rejected (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// 5xx: EM failed or is overloaded.
    #[error("server error (HTTP {status}): {message}")]
    ServerError { status: u16, message: String },
    /// No complete answer within the per-request timeout.
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    /// Connection, TLS or protocol failure before a complete answer arrived.
    #[error("transport error: {0}")]
    Transport(String),
    /// The answer arrived but could not be understood.
    #[error("cannot decode EM response: {0}")]
    Decode(String),
    /// The response body exceeded the configured size cap.
    #[error("response body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// An EM task finished with `Result Success="false"`.
    #[error("task {operation} failed: {message}")]
    TaskFailed { operation: String, message: String },
    /// The client could not be built from its configuration (bad CA file and so on).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// Every value [`Error::reason`] can return.
    pub const REASONS: &'static [&'static str] = <Error as strum::VariantNames>::VARIANTS;

    /// A short, bounded, label-safe name for the kind of failure: the variant's snake_case name.
    pub fn reason(&self) -> &'static str {
        self.into()
    }

    /// Maps a non-2xx HTTP status and EM's error message to a variant.
    pub(crate) fn from_status(status: u16, message: String, is_logon: bool) -> Error {
        match status {
            401 if is_logon => Error::LogonFailed { message },
            401 => Error::SessionExpired { message },
            403 => Error::Forbidden { message },
            404 => Error::NotFound { message },
            500..=599 => Error::ServerError { status, message },
            _ => Error::Rejected { status, message },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed() {
        let samples = [
            Error::LogonFailed { message: String::new() },
            Error::SessionExpired { message: String::new() },
            Error::Forbidden { message: String::new() },
            Error::NotFound { message: String::new() },
            Error::Rejected { status: 400, message: String::new() },
            Error::ServerError { status: 500, message: String::new() },
            Error::Timeout(Duration::from_secs(1)),
            Error::Transport(String::new()),
            Error::Decode(String::new()),
            Error::TooLarge { limit: 1 },
            Error::TaskFailed { operation: String::new(), message: String::new() },
            Error::Config(String::new()),
        ];
        let reasons: Vec<_> = samples.iter().map(Error::reason).collect();
        assert_eq!(reasons, Error::REASONS);
    }

    #[test]
    fn status_mapping() {
        assert_eq!(Error::from_status(401, String::new(), true).reason(), "logon_failed");
        assert_eq!(Error::from_status(401, String::new(), false).reason(), "session_expired");
        assert_eq!(Error::from_status(403, String::new(), false).reason(), "forbidden");
        assert_eq!(Error::from_status(404, String::new(), false).reason(), "not_found");
        assert_eq!(Error::from_status(400, String::new(), false).reason(), "rejected");
        assert_eq!(Error::from_status(503, String::new(), false).reason(), "server_error");
    }
}
