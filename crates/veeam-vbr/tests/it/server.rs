//! A tiny in-test VBR stand-in on 127.0.0.1:0 that enforces exactly the rules the client's
//! logon logic is built on: `x-api-version` on every request (unknown → 400 `NotImplemented`,
//! the 1.3-rev2 `ErrorNotImplementedExample`), single-use refresh tokens, expiring access
//! tokens, 401 for a bad bearer token. Plus just enough FLR to run the client's calls end to
//! end. It is not a simulator of VBR: it exists to test this client's rules.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const USER: &str = "svc-restore";
pub const PASSWORD: &str = "Corr3ct-H0rse";

#[derive(Default)]
pub struct Counters {
    /// `x-api-version` of every token call, in order.
    pub token_versions: Vec<String>,
    /// `x-api-version` of every other call.
    pub api_versions: Vec<String>,
    pub password_grants: usize,
    pub refresh_grants: usize,
    /// Refresh tokens presented a second time (must stay 0).
    pub refresh_reuse: usize,
    pub logouts: usize,
}

pub struct Fake {
    pub accepted: HashSet<String>,
    pub expires_in: u64,
    pub counters: Mutex<Counters>,
    access: Mutex<HashMap<String, Instant>>,
    refresh: Mutex<HashSet<String>>,
    spent: Mutex<HashSet<String>>,
    next: Mutex<u64>,
    /// Slows the token call down, so concurrent callers overlap.
    pub token_delay: Duration,
    /// Slows the mount call down (VBR answers it only once the file system is mounted).
    pub mount_delay: Duration,
    pub zip: Vec<u8>,
    pub mount_count: usize,
}

impl Fake {
    pub fn new(accepted: &[&str]) -> Fake {
        Fake {
            accepted: accepted.iter().map(|s| s.to_string()).collect(),
            expires_in: 900,
            counters: Mutex::default(),
            access: Mutex::default(),
            refresh: Mutex::default(),
            spent: Mutex::default(),
            next: Mutex::new(0),
            token_delay: Duration::ZERO,
            mount_delay: Duration::ZERO,
            zip: Vec::new(),
            mount_count: 1,
        }
    }

    /// Forgets every access token (as after a VBR service restart), keeping refresh tokens.
    pub fn revoke_access(&self) {
        self.access.lock().unwrap().clear();
    }

    /// Forgets every refresh token too.
    pub fn revoke_refresh(&self) {
        self.refresh.lock().unwrap().clear();
    }

    pub fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap()
    }

    fn issue(&self) -> Value {
        let n = {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *next
        };
        let (access, refresh) = (format!("ACCESS-{n}"), format!("REFRESH-{n}"));
        let expires = Instant::now() + Duration::from_secs(self.expires_in);
        self.access.lock().unwrap().insert(access.clone(), expires);
        self.refresh.lock().unwrap().insert(refresh.clone());
        json!({"access_token": access, "token_type": "bearer", "refresh_token": refresh,
               "expires_in": self.expires_in, ".issued": "2026-12-07T04:00:00Z", ".expires": "2026-12-07T04:15:00Z"})
    }
}

pub async fn start(fake: Fake) -> (url::Url, Arc<Fake>) {
    let fake = Arc::new(fake);
    let app = Router::new()
        .route("/api/oauth2/token", post(token))
        .route("/api/oauth2/logout", post(logout))
        .route("/api/v1/serverTime", get(server_time))
        .route("/api/v1/serverInfo", get(server_info))
        .route("/api/v1/backupObjects", get(backup_objects))
        .route("/api/v1/restorePoints", get(restore_points))
        .route("/api/v1/restore/flr", post(mount))
        .route("/api/v1/restore/flr/{id}/unmount", post(unmount))
        .route("/api/v1/backupBrowser/flr", get(mounts))
        .route("/api/v1/backupBrowser/flr/{id}", get(mount_get))
        .route("/api/v1/backupBrowser/flr/{id}/browse", post(browse))
        .route("/api/v1/backupBrowser/flr/{id}/prepareDownload", post(prepare))
        .route("/api/v1/backupBrowser/flr/{id}/prepareDownload/{task}/download", post(download))
        .route("/api/v1/backupBrowser/flr/{id}/restore", post(restore))
        .route("/api/v1/tasks/{id}", get(task))
        .route("/api/v1/sessions/{id}", get(session))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/").parse().unwrap(), fake)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"errorCode": code, "message": message}))).into_response()
}

// A test server: the early answer is the error, and its size costs nothing here.
#[allow(clippy::result_large_err)]
fn version_of(fake: &Fake, headers: &HeaderMap) -> Result<String, Response> {
    let v = headers.get("x-api-version").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if fake.accepted.contains(&v) {
        Ok(v)
    } else {
        Err(error(StatusCode::BAD_REQUEST, "NotImplemented", "The specified API version is not supported."))
    }
}

/// Version and bearer token check of every API call.
// A test server: the early answer is the error, and its size costs nothing here.
#[allow(clippy::result_large_err)]
fn guard(fake: &Fake, headers: &HeaderMap) -> Result<(), Response> {
    let v = version_of(fake, headers)?;
    fake.counters().api_versions.push(v);
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let valid = token.and_then(|t| fake.access.lock().unwrap().get(t).copied()).is_some_and(|exp| exp > Instant::now());
    if valid {
        Ok(())
    } else {
        Err(error(StatusCode::UNAUTHORIZED, "AccessDenied", "Unauthorized. Get bearer JWT token at /api/login"))
    }
}

async fn token(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: String) -> Response {
    let v = headers.get("x-api-version").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    fake.counters().token_versions.push(v);
    if let Err(refusal) = version_of(&fake, &headers) {
        return refusal;
    }
    tokio::time::sleep(fake.token_delay).await;
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    match form.get("grant_type").map(|g| g.to_ascii_lowercase()).as_deref() {
        Some("password") => {
            if form.get("username").map(String::as_str) != Some(USER)
                || form.get("password").map(String::as_str) != Some(PASSWORD)
            {
                return error(StatusCode::UNAUTHORIZED, "AccessDenied", "Invalid user name or password");
            }
            fake.counters().password_grants += 1;
        }
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            if fake.spent.lock().unwrap().contains(&presented) {
                fake.counters().refresh_reuse += 1;
                return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
            }
            if !fake.refresh.lock().unwrap().remove(&presented) {
                return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
            }
            fake.spent.lock().unwrap().insert(presented);
            fake.counters().refresh_grants += 1;
        }
        _ => return error(StatusCode::BAD_REQUEST, "UnexpectedContent", "bad grant_type"),
    }
    axum::Json(fake.issue()).into_response()
}

async fn logout(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    if let Err(r) = guard(&fake, &headers) {
        return r;
    }
    fake.counters().logouts += 1;
    fake.revoke_access();
    fake.revoke_refresh();
    axum::Json(json!({})).into_response()
}

async fn server_time(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    match guard(&fake, &headers) {
        Ok(()) => axum::Json(json!({"serverTime": "2026-12-07T04:20:00+01:00", "timeZone": "UTC+1"})).into_response(),
        Err(r) => r,
    }
}

async fn server_info(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    match guard(&fake, &headers) {
        Ok(()) => error(StatusCode::FORBIDDEN, "AccessDenied", "Forbidden"),
        Err(r) => r,
    }
}

async fn backup_objects(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = guard(&fake, &headers) {
        return r;
    }
    if q.get("nameFilter").map(String::as_str) != Some("web01") {
        return axum::Json(json!({"data": [], "pagination": {"total": 0, "count": 0}})).into_response();
    }
    // A pattern match returns near-misses too: the client must pick the exact name.
    axum::Json(json!({"data": [
        {"id": "obj-1", "name": "web01", "platformName": "VMware", "type": "VM"},
        {"id": "obj-2", "name": "web010", "platformName": "VMware", "type": "VM"}
    ], "pagination": {"total": 2, "count": 2, "skip": 0, "limit": 200}}))
    .into_response()
}

async fn restore_points(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = guard(&fake, &headers) {
        return r;
    }
    assert_eq!(q.get("orderColumn").map(String::as_str), Some("CreationTime"));
    if q.get("nameFilter").map(String::as_str) == Some("db01") {
        return axum::Json(json!({"data": [
            {"id": "rp-db010", "name": "db010", "creationTime": "2026-12-06T23:00:00Z"},
            {"id": "rp-db01", "name": "db01", "creationTime": "2026-12-06T21:00:00Z"}
        ], "pagination": {"total": 2, "count": 2}}))
        .into_response();
    }
    if q.contains_key("nameFilter") {
        return axum::Json(json!({"data": [], "pagination": {"total": 0, "count": 0}})).into_response();
    }
    let id = q.get("backupObjectIdFilter").map(String::as_str);
    assert_eq!(id, Some("obj-1"), "only the exact-name object is asked for its points");
    // Deliberately not newest first: the client compares creation times itself.
    axum::Json(json!({"data": [
        {"id": "rp-old", "name": "web01", "creationTime": "2026-12-05T22:00:00+01:00", "allowedOperations": ["StartFlrRestore"]},
        {"id": "rp-new", "name": "web01", "creationTime": "2026-12-06T22:00:00+01:00", "allowedOperations": ["StartFlrRestore"], "malwareStatus": "Clean"}
    ], "pagination": {"total": 2, "count": 2}}))
    .into_response()
}

fn mount_json(id: &str) -> Value {
    json!({"sessionId": id, "type": "Windows", "restorePointId": "rp-new", "mountErrors": [],
           "properties": {"pathSeparator": "\\"}, "sourceProperties": {"machineName": "web01", "restorePointName": "web01"}})
}

async fn mount(State(fake): State<Arc<Fake>>, headers: HeaderMap, axum::Json(spec): axum::Json<Value>) -> Response {
    if let Err(r) = guard(&fake, &headers) {
        return r;
    }
    tokio::time::sleep(fake.mount_delay).await;
    assert_eq!(spec["autoUnmount"], json!({"isEnabled": true, "noActivityPeriodInMinutes": 7}));
    assert_eq!(spec["mountMode"], "Automatic");
    (StatusCode::CREATED, axum::Json(mount_json("flr-1"))).into_response()
}

async fn mount_get(State(fake): State<Arc<Fake>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    match guard(&fake, &headers) {
        Ok(()) if id == "flr-1" => axum::Json(mount_json(&id)).into_response(),
        Ok(()) => error(StatusCode::NOT_FOUND, "NotFound", "Resource does not exist"),
        Err(r) => r,
    }
}

async fn mounts(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = guard(&fake, &headers) {
        return r;
    }
    let skip: usize = q.get("skip").and_then(|s| s.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|s| s.parse().ok()).unwrap_or(200);
    let data: Vec<Value> =
        (skip..fake.mount_count.min(skip + limit)).map(|i| mount_json(&format!("flr-{i}"))).collect();
    axum::Json(json!({"data": data, "pagination": {"total": fake.mount_count, "count": data.len(), "skip": skip, "limit": limit}}))
        .into_response()
}

async fn browse(State(fake): State<Arc<Fake>>, headers: HeaderMap, axum::Json(spec): axum::Json<Value>) -> Response {
    if let Err(r) = guard(&fake, &headers) {
        return r;
    }
    let skip = spec["pagination"]["skip"].as_u64().unwrap_or(0);
    let name = if skip == 0 { "canary.txt" } else { "other.txt" };
    axum::Json(json!({"path": spec["path"], "items": [
        {"type": "File", "itemState": "NotAvaliable", "location": spec["path"], "name": name, "size": 6,
         "creationDate": "2026-12-01T00:00:00Z", "modifiedDate": "2026-12-06T21:00:00Z"}
    ], "pagination": {"total": 2, "count": 1, "skip": skip, "limit": 1}}))
    .into_response()
}

fn task_json(id: &str, kind: &str, state: &str, result: &str) -> Value {
    json!({"id": id, "type": kind, "name": "t", "state": state, "result": result, "progressPercent": 100,
           "creationTime": "2026-12-07T04:00:00Z"})
}

async fn prepare(State(fake): State<Arc<Fake>>, headers: HeaderMap, axum::Json(spec): axum::Json<Value>) -> Response {
    if let Err(r) = guard(&fake, &headers) {
        return r;
    }
    assert_eq!(spec, json!({"sourcePath": ["C:\\canary\\canary.txt"]}));
    (StatusCode::CREATED, axum::Json(task_json("task-dl", "FlrDownload", "Working", "None"))).into_response()
}

async fn download(State(fake): State<Arc<Fake>>, headers: HeaderMap, Path((_, t)): Path<(String, String)>) -> Response {
    if let Err(r) = guard(&fake, &headers) {
        return r;
    }
    assert_eq!(t, "task-dl");
    ([("content-type", "application/octet-stream")], fake.zip.clone()).into_response()
}

async fn restore(State(fake): State<Arc<Fake>>, headers: HeaderMap, axum::Json(spec): axum::Json<Value>) -> Response {
    if let Err(r) = guard(&fake, &headers) {
        return r;
    }
    assert_eq!(spec, json!({"sourcePath": ["C:\\canary\\canary.txt"], "restoreType": "Overwrite"}));
    (StatusCode::CREATED, axum::Json(task_json("task-rs", "FlrRestore", "Starting", "None"))).into_response()
}

async fn task(State(fake): State<Arc<Fake>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = guard(&fake, &headers) {
        return r;
    }
    let (kind, result) = if id == "task-rs" { ("FlrRestore", "Failed") } else { ("FlrDownload", "Success") };
    let mut body = task_json(&id, kind, "Stopped", result);
    if result == "Failed" {
        body["additionalInfo"] = json!({"message": "Access is denied"});
    }
    axum::Json(body).into_response()
}

fn session_json(id: &str) -> Value {
    json!({"id": id, "name": "web01", "jobId": "00000000-0000-0000-0000-000000000000", "sessionType": "FileLevelRestore",
           "creationTime": "2026-12-07T04:00:00Z", "state": "Stopped", "usn": 1,
           "result": {"result": "Success", "message": "", "isCanceled": false}, "initiatedBy": USER})
}

async fn unmount(State(fake): State<Arc<Fake>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    match guard(&fake, &headers) {
        Ok(()) => (StatusCode::CREATED, axum::Json(session_json(&id))).into_response(),
        Err(r) => r,
    }
}

async fn session(State(fake): State<Arc<Fake>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    match guard(&fake, &headers) {
        Ok(()) => axum::Json(session_json(&id)).into_response(),
        Err(r) => r,
    }
}
