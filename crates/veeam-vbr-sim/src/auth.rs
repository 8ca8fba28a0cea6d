//! `x-api-version`, bearer tokens and roles; `POST /api/oauth2/token` and `/logout`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRequestParts, State as AxState};
use axum::http::request::Parts;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::ApiError;
use crate::inventory::Role;
use crate::revision::ApiRevision;
use crate::state::{AccessToken, RefreshToken, Shared, State};
use crate::timefmt;

use Role::*;

/// "Available to" lists of the simulated operations, copied from the spec's descriptions.
pub const ADMIN: &[Role] = &[BackupAdministrator];
pub const FLR: &[Role] = &[BackupAdministrator, RestoreOperator];
pub const POINTS: &[Role] = &[BackupAdministrator, BackupOperator, RestoreOperator, BackupViewer, TapeOperator];
pub const OBJECTS: &[Role] =
    &[BackupAdministrator, BackupOperator, RestoreOperator, BackupViewer, TapeOperator, SecurityAdministrator];
pub const SESSION_STOP: &[Role] = &[BackupAdministrator, BackupOperator, RestoreOperator];

/// The revision a request asked for. Every operation of every spec declares `x-api-version` as
/// a required header, so a missing one is a 400 unless `lenient.missing_api_version`.
pub struct Rev(pub ApiRevision);

impl FromRequestParts<Arc<Shared>> for Rev {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, sh: &Arc<Shared>) -> Result<Self, ApiError> {
        let Some(raw) = parts.headers.get("x-api-version") else {
            if sh.lenient.missing_api_version {
                return Ok(Rev(sh.max_rev));
            }
            return Err(ApiError::bad_request("The x-api-version header is required"));
        };
        let s = raw.to_str().unwrap_or("");
        match ApiRevision::parse(s) {
            Some(r) if r >= sh.min_rev && r <= sh.max_rev => Ok(Rev(r)),
            _ => Err(ApiError::bad_request(format!(
                "API version {s:?} is not supported by this server (supported: {} to {})",
                sh.min_rev, sh.max_rev
            ))),
        }
    }
}

/// An authenticated caller: revision, user name, role.
pub struct Caller {
    pub rev: ApiRevision,
    pub user: String,
    pub role: Role,
    pub token: String,
}

impl Caller {
    /// 403 unless the caller's role is listed.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "User {} ({}) does not have permission to perform this operation",
                self.user,
                serde_json::to_value(self.role).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            )))
        }
    }
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, sh: &Arc<Shared>) -> Result<Self, ApiError> {
        let Rev(rev) = Rev::from_request_parts(parts, sh).await?;
        let header = parts.headers.get(axum::http::header::AUTHORIZATION);
        let Some(h) = header.and_then(|h| h.to_str().ok()) else {
            return Err(ApiError::unauthorized("AccessDenied", "The Authorization header is missing"));
        };
        let token = match h.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => t.trim(),
            _ => return Err(ApiError::unauthorized("InvalidToken", "The Authorization header is not a bearer token")),
        };
        let st = sh.lock();
        let Some(at) = st.access.get(token) else {
            return Err(ApiError::unauthorized("InvalidToken", "The access token is invalid"));
        };
        if at.revoked {
            return Err(ApiError::unauthorized("InvalidToken", "The access token has been revoked (logged out)"));
        }
        if SystemTime::now() >= at.expires {
            return Err(ApiError::unauthorized("ExpiredToken", "The access token has expired"));
        }
        Ok(Caller { rev, user: at.user.clone(), role: at.role, token: token.to_string() })
    }
}

/// `grant_type` as the requested revision spells it: `password`/`refresh_token` up to 1.2,
/// `Password`/`Refresh_token` from 1.3 (`ELoginGrantType`).
fn grant(rev: ApiRevision, given: &str, any_case: bool) -> Option<&'static str> {
    for (lower, upper) in [("password", "Password"), ("refresh_token", "Refresh_token")] {
        let expected = if rev.is_v13() { upper } else { lower };
        if given == expected || (any_case && given.eq_ignore_ascii_case(lower)) {
            return Some(lower);
        }
    }
    None
}

/// `POST /api/oauth2/token`.
pub async fn token(
    AxState(sh): AxState<Arc<Shared>>,
    Rev(rev): Rev,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<Json<Value>, ApiError> {
    let Form(f) = form.map_err(|e| ApiError::bad_request(format!("Expected a form-encoded TokenLoginSpec: {e}")))?;
    let gt = f.get("grant_type").map(String::as_str).unwrap_or("");
    let mut st = sh.lock();
    let user = match grant(rev, gt, sh.lenient.grant_type_any_case) {
        Some("password") => password_logon(&mut st, &f)?,
        Some(_) => refresh_logon(&mut st, &f)?,
        None => {
            return Err(ApiError::bad_request(format!(
                "grant_type {gt:?} is not a supported ELoginGrantType value for API version {rev}"
            )));
        }
    };
    Ok(Json(issue(&mut st, &user)))
}

fn password_logon(st: &mut State, f: &HashMap<String, String>) -> Result<String, ApiError> {
    let (Some(name), Some(pw)) = (f.get("username"), f.get("password")) else {
        return Err(ApiError::bad_request("username and password are required for the password grant"));
    };
    let denied = || ApiError::unauthorized("AccessDenied", "Authentication failed: wrong user name or password");
    let Some(u) = st.inventory.users.iter().find(|u| u.name.eq_ignore_ascii_case(name)).cloned() else {
        return Err(denied());
    };
    let fails = st.failed_logons.get(&u.name).copied().unwrap_or(0);
    if u.lockout_after > 0 && fails >= u.lockout_after {
        return Err(ApiError::unauthorized("AccessDenied", "The account is locked out"));
    }
    if u.password != *pw {
        st.failed_logons.insert(u.name.clone(), fails + 1);
        return Err(denied());
    }
    if u.disabled {
        return Err(ApiError::unauthorized("AccessDenied", "The account is disabled"));
    }
    st.failed_logons.remove(&u.name);
    Ok(u.name)
}

/// Refresh tokens are single use: a second use is refused like an unknown token.
fn refresh_logon(st: &mut State, f: &HashMap<String, String>) -> Result<String, ApiError> {
    let Some(rt) = f.get("refresh_token") else {
        return Err(ApiError::bad_request("refresh_token is required for the refresh_token grant"));
    };
    let Some(r) = st.refresh.get_mut(rt) else {
        return Err(ApiError::unauthorized("InvalidToken", "The refresh token is invalid"));
    };
    if r.used {
        return Err(ApiError::unauthorized("InvalidToken", "The refresh token has already been used"));
    }
    if SystemTime::now() >= r.expires {
        return Err(ApiError::unauthorized("ExpiredToken", "The refresh token has expired"));
    }
    r.used = true;
    Ok(r.user.clone())
}

fn issue(st: &mut State, user: &str) -> Value {
    let role = st.inventory.users.iter().find(|u| u.name == user).map(|u| u.role).unwrap_or(BackupViewer);
    let now = SystemTime::now();
    let access = format!("sim-at-{}", Uuid::new_v4().simple());
    let refresh = format!("sim-rt-{}", Uuid::new_v4().simple());
    let far = now + Duration::from_secs(100 * 365 * 86_400);
    let expires = now.checked_add(st.timings.token_lifetime).unwrap_or(far);
    st.access.insert(
        access.clone(),
        AccessToken { user: user.to_string(), role, issued: now, expires, refresh: refresh.clone(), revoked: false },
    );
    let rt_expires = now.checked_add(st.timings.refresh_token_lifetime).unwrap_or(far);
    st.refresh.insert(refresh.clone(), RefreshToken { user: user.to_string(), expires: rt_expires, used: false });
    st.tokens_issued += 1;
    json!({
        "access_token": access,
        "token_type": "bearer",
        "refresh_token": refresh,
        "expires_in": st.timings.token_lifetime.as_secs(),
        ".issued": timefmt::format(now),
        ".expires": timefmt::format(expires),
    })
}

/// `POST /api/oauth2/logout`: "After you log out, your access and refresh tokens become
/// invalid" — the access token used and the refresh token issued with it.
pub async fn logout(AxState(sh): AxState<Arc<Shared>>, caller: Caller) -> Json<Value> {
    let mut st = sh.lock();
    let rt = st.access.get_mut(&caller.token).map(|at| {
        at.revoked = true;
        at.refresh.clone()
    });
    if let Some(r) = rt.and_then(|rt| st.refresh.get_mut(&rt)) {
        r.used = true;
    }
    Json(json!({}))
}
