//! Every response decoder, from raw bytes. The client uses these; they are public (hidden from
//! the docs) so the exporter's cargo-fuzz targets can feed them arbitrary input. None of them
//! panics: anything that is not what the spec describes is an [`Error::Decode`].

use serde::Deserialize;
use serde::de::DeserializeOwned;
use veeam_secret::Secret;

use crate::error::{ApiError, Error, Result};
use crate::model::*;

/// Decodes any JSON body into `T`, naming the schema in the error.
pub fn json<T: DeserializeOwned>(body: &[u8], schema: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::Decode(format!("{schema}: {e}")))
}

#[derive(Deserialize)]
struct WireToken {
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default, rename = ".issued")]
    issued: Option<String>,
    #[serde(default, rename = ".expires")]
    expires: Option<String>,
}

/// `TokenModel`. The error message never quotes the body: it holds tokens.
pub fn token(body: &[u8]) -> Result<TokenGrant> {
    let wire: WireToken = serde_json::from_slice(body).map_err(|e| {
        Error::Decode(format!("TokenModel: not the expected JSON object (at line {}, column {})", e.line(), e.column()))
    })?;
    let access = wire
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Decode("TokenModel: no access_token".into()))?;
    let expires_in = match wire.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Ok(TokenGrant {
        access_token: Secret::new(access),
        refresh_token: wire.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
        token_type: wire.token_type,
        expires_in,
        issued: wire.issued,
        expires: wire.expires,
    })
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct WireError {
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
    message: Option<String>,
    #[serde(rename = "resourceId")]
    resource_id: Option<String>,
    // OAuth2 (RFC 6749 §5.2) shape, in case the token endpoint answers that way.
    error: Option<String>,
    error_description: Option<String>,
}

/// VBR's `Error` body or an OAuth2 error. `None` when the body is neither.
pub fn api_error(body: &[u8]) -> Option<ApiError> {
    let wire: WireError = serde_json::from_slice(body).ok()?;
    let code = wire.error_code.or(wire.error).filter(|c| !c.is_empty());
    let message = wire.message.or(wire.error_description).filter(|m| !m.is_empty());
    if code.is_none() && message.is_none() {
        return None;
    }
    Some(ApiError {
        message: message.unwrap_or_else(|| "(no message)".into()),
        error_code: code,
        resource_id: wire.resource_id.filter(|r| !r.is_empty()),
    })
}

pub fn server_info(body: &[u8]) -> Result<ServerInfo> {
    json(body, "ServerInfoModel")
}

pub fn server_time(body: &[u8]) -> Result<ServerTime> {
    json(body, "ServerTimeModel")
}

pub fn backup_objects(body: &[u8]) -> Result<Page<BackupObject>> {
    json(body, "BackupObjectsResult")
}

pub fn restore_points(body: &[u8]) -> Result<Page<RestorePoint>> {
    json(body, "ObjectRestorePointsResult")
}

pub fn flr_mount(body: &[u8]) -> Result<FlrMount> {
    json(body, "FlrBrowseMountModel")
}

pub fn flr_mounts(body: &[u8]) -> Result<Page<FlrMount>> {
    json(body, "FlrBrowseMountResult")
}

pub fn browse(body: &[u8]) -> Result<BrowseResult> {
    json(body, "FlrBrowseFolderModel")
}

pub fn task(body: &[u8]) -> Result<Task> {
    json(body, "TaskModel")
}

pub fn session(body: &[u8]) -> Result<SessionInfo> {
    json(body, "SessionModel")
}

pub fn sessions(body: &[u8]) -> Result<Page<SessionInfo>> {
    json(body, "SessionsResult")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_errors_never_quote_the_body() {
        let err = token(br#"{"access_token": 12345678, "refresh_token": "REFRESHME"}"#).unwrap_err();
        assert!(!err.to_string().contains("REFRESHME") && !err.to_string().contains("12345678"), "{err}");
        let err = token(br#"{"refresh_token": "REFRESHME"}"#).unwrap_err();
        assert!(!err.to_string().contains("REFRESHME"), "{err}");
    }

    #[test]
    fn error_shapes() {
        let vbr =
            api_error(br#"{"errorCode":"NotFound","message":"Resource does not exist","resourceId":"a1"}"#).unwrap();
        assert_eq!(vbr.to_string(), "NotFound: Resource does not exist (resource a1)");
        let oauth = api_error(br#"{"error":"invalid_grant","error_description":"bad"}"#).unwrap();
        assert!(oauth.code_is("invalid_grant"));
        assert!(api_error(b"<html>").is_none());
        assert!(api_error(b"{}").is_none());
    }
}
