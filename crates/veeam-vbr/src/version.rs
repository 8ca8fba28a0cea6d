//! `x-api-version` revisions and the rule that recognises "this server does not speak that
//! revision".
//!
//! Why negotiate at all: the spec (`info.description`, "Versioning") says every request must
//! carry `x-api-version: <version>-<revision>`, that the API is backward-compatible (older
//! revisions keep working on newer servers, some of them "Deprecated") and lists which build
//! introduced which revision. A 12.x server cannot know a 13.x revision, so the client starts
//! with the newest it speaks and walks down until the server accepts one.

use std::fmt;

use crate::error::ApiError;

/// A REST API revision this client speaks, newest first in [`ApiVersion::ALL`].
///
/// 1.1-rev0 (VBR 12.0) is left out on purpose: file-level restore arrived in 1.1-rev1 (VBR
/// 12.1, "supports all file restore operations both for Microsoft Windows and Linux machines").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiVersion {
    /// VBR 12.1.
    V1_1Rev1,
    /// VBR 12.2.
    V1_1Rev2,
    /// VBR 12.3.
    V1_2Rev0,
    /// VBR 12.3.1 (spec `vbr_rest_1.2-rev1.json`).
    V1_2Rev1,
    /// VBR 13.0.0.
    V1_3Rev0,
    /// VBR 13.0.1 (spec `vbr_rest_1.3-rev1.json`).
    V1_3Rev1,
    /// VBR 13.1 (spec `vbr_rest_1.3-rev2.json`).
    V1_3Rev2,
}

impl ApiVersion {
    /// Every revision, newest first: the order logon tries them in.
    pub const ALL: &'static [ApiVersion] = &[
        ApiVersion::V1_3Rev2,
        ApiVersion::V1_3Rev1,
        ApiVersion::V1_3Rev0,
        ApiVersion::V1_2Rev1,
        ApiVersion::V1_2Rev0,
        ApiVersion::V1_1Rev2,
        ApiVersion::V1_1Rev1,
    ];

    /// The newest revision this client speaks.
    pub const NEWEST: ApiVersion = ApiVersion::V1_3Rev2;

    /// The `x-api-version` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1_1Rev1 => "1.1-rev1",
            ApiVersion::V1_1Rev2 => "1.1-rev2",
            ApiVersion::V1_2Rev0 => "1.2-rev0",
            ApiVersion::V1_2Rev1 => "1.2-rev1",
            ApiVersion::V1_3Rev0 => "1.3-rev0",
            ApiVersion::V1_3Rev1 => "1.3-rev1",
            ApiVersion::V1_3Rev2 => "1.3-rev2",
        }
    }

    /// Parses a header value such as `1.3-rev1` (case-insensitive).
    pub fn parse(value: &str) -> Option<ApiVersion> {
        ApiVersion::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(value.trim()))
    }

    /// 1.3 made `mountMode` required in `WindowsFlrMountSpec` and `LinuxFlrMountSpec` and moved
    /// the Linux helper settings (`helperHost`, `originalHost`, …) under `mountServer`;
    /// 1.2-rev1 has neither `mountMode` nor `mountServer`.
    /// Whether the revision's `ELoginGrantType` schema capitalises its values (from 1.3-rev1 on;
    /// 1.3-rev0 has no published spec and is read like 1.3-rev1).
    pub fn capitalises_grant_types(self) -> bool {
        self >= ApiVersion::V1_3Rev0
    }

    pub fn has_mount_mode(self) -> bool {
        self >= ApiVersion::V1_3Rev0
    }

    /// Revisions after `self`, oldest last: the fallbacks to try when `self` is refused.
    pub(crate) fn older(self) -> impl Iterator<Item = ApiVersion> {
        ApiVersion::ALL.iter().copied().filter(move |v| *v <= self)
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Does this error answer mean "I do not speak the `x-api-version` you sent"?
///
/// Spec evidence: 1.3-rev2 attaches `ErrorNotImplementedExample` to the shared `BadRequest`
/// response, summary "Unsupported API version", body
/// `{"errorCode":"NotImplemented","message":"The specified API version is not supported."}`.
/// So the documented answer is **HTTP 400 with `errorCode` `NotImplemented`**. The 1.2-rev1 and
/// 1.3-rev1 specs have no error examples at all, and older servers are what we meet here, so
/// be liberal: any of 400/406/412/415/422/501 whose code is `NotImplemented` or whose message
/// mentions a version (`version`, `x-api-version`). 401/403/404 are never read as a version
/// refusal: those mean credentials, role or a missing object, whatever the text says.
pub fn is_version_refusal(status: u16, error: &ApiError) -> bool {
    if !matches!(status, 400 | 406 | 412 | 415 | 422 | 501) {
        return false;
    }
    if error.code_is("NotImplemented") {
        return true;
    }
    let about_credentials = ["invalid_grant", "AccessDenied", "InvalidToken", "ExpiredToken"];
    let message = error.message.to_ascii_lowercase();
    // A complaint about the grant type may name the revision too ("… for API version 1.3-rev1"):
    // it is about the request, and retrying with an older revision would hide that.
    !about_credentials.iter().any(|c| error.code_is(c)) && message.contains("version") && !message.contains("grant")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_parsing() {
        assert_eq!(ApiVersion::ALL[0], ApiVersion::NEWEST);
        for pair in ApiVersion::ALL.windows(2) {
            assert!(pair[0] > pair[1]);
        }
        for v in ApiVersion::ALL {
            assert_eq!(ApiVersion::parse(v.as_str()), Some(*v));
        }
        assert_eq!(ApiVersion::parse("1.3-REV1"), Some(ApiVersion::V1_3Rev1));
        assert_eq!(ApiVersion::parse("1.0-rev2"), None);
        let older: Vec<_> = ApiVersion::V1_2Rev1.older().collect();
        assert_eq!(older, [ApiVersion::V1_2Rev1, ApiVersion::V1_2Rev0, ApiVersion::V1_1Rev2, ApiVersion::V1_1Rev1]);
    }

    #[test]
    fn refusal_rule() {
        let documented = ApiError {
            error_code: Some("NotImplemented".into()),
            message: "The specified API version is not supported.".into(),
            resource_id: None,
        };
        assert!(is_version_refusal(400, &documented));
        assert!(is_version_refusal(501, &documented));
        assert!(!is_version_refusal(401, &documented));
        assert!(!is_version_refusal(500, &documented));
        assert!(is_version_refusal(400, &ApiError::bare("Unsupported x-api-version header value")));
        assert!(!is_version_refusal(400, &ApiError::bare("One or more request parameters are not valid.")));
        let grant = ApiError { error_code: Some("invalid_grant".into()), ..ApiError::default() };
        assert!(!is_version_refusal(400, &grant));
        // Found when the client first met the simulator: a strict server's complaint about the
        // grant type's spelling names the revision, and was taken for a version refusal.
        let spelling =
            ApiError::bare("grant_type \"password\" is not a supported ELoginGrantType value for API version 1.3-rev1");
        assert!(!is_version_refusal(400, &spelling));
    }
}
