//! Faults (`--fault`, `POST /sim/faults`), hold-at-request-N, and the middleware that logs every
//! API request and applies both.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State as AxState};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::error::ApiError;
use crate::state::{RequestEntry, Shared, State};

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` with an `Error` body instead of serving the request.
    Status,
    /// Wait `ms` milliseconds, then serve the request normally.
    Delay,
    /// Close the connection without an answer.
    Drop,
    /// Answer 200 with a body that is not valid JSON.
    Garbage,
    /// `flr_mount`: create the mount, then close the connection before the answer.
    LostMount,
    /// `flr_mount`: mount, with `mountErrors` (`error_type` Warning|Failed|Skipped).
    MountErrors,
    /// `prepare_download`/`flr_restore`: the created task ends `Failed`.
    TaskFail,
    /// `download`: a ZIP that inflates to 1 GiB.
    ZipBomb,
    /// `download`: a ZIP with a `../` entry.
    ZipTraversal,
    /// `download`: a ZIP cut short (no central directory).
    ZipTruncated,
}

/// One fault rule. `endpoint` absent = any endpoint; `times` absent = until cleared.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct FaultSpec {
    pub kind: FaultKind,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub ms: Option<u64>,
    #[serde(default)]
    pub times: Option<u32>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_type: Option<String>,
}

impl FromStr for FaultSpec {
    type Err = String;

    /// `kind=status,status=503,endpoint=flr_mount,times=1`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut obj = serde_json::Map::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("fault part {part:?} is not key=value"))?;
            let val = match k {
                "status" | "ms" | "times" => {
                    serde_json::Value::from(v.parse::<u64>().map_err(|_| format!("{k}={v:?} is not a number"))?)
                }
                _ => serde_json::Value::from(v),
            };
            obj.insert(k.to_string(), val);
        }
        let spec: FaultSpec =
            serde_json::from_value(serde_json::Value::Object(obj)).map_err(|e| format!("fault {s:?}: {e}"))?;
        spec.validate()?;
        Ok(spec)
    }
}

/// Every endpoint name a fault may target (see [`endpoint_name`]).
pub const ENDPOINTS: &[&str] = &[
    "token",
    "logout",
    "server_info",
    "server_time",
    "backup_objects",
    "backup_object_points",
    "restore_points",
    "restore_point",
    "flr_mount",
    "flr_unmount",
    "flr_list",
    "flr_get",
    "browse",
    "prepare_download",
    "download",
    "flr_restore",
    "tasks",
    "task",
    "task_stop",
    "sessions",
    "session",
    "session_stop",
    "unknown",
];

impl FaultSpec {
    /// Refuses a fault that could never fire: a misspelt endpoint would otherwise make a test
    /// pass for the wrong reason.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(e) = &self.endpoint
            && !ENDPOINTS.contains(&e.as_str())
        {
            return Err(format!("unknown endpoint {e:?} (known: {})", ENDPOINTS.join(", ")));
        }
        if self.kind == FaultKind::Status && self.status.is_some_and(|s| !(100..=599).contains(&s)) {
            return Err("status must be an HTTP status code".into());
        }
        Ok(())
    }
}

/// A fault with its remaining count.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    #[serde(flatten)]
    pub spec: FaultSpec,
    pub fired: u32,
}

impl Fault {
    pub fn new(spec: FaultSpec) -> Fault {
        Fault { spec, fired: 0 }
    }
}

impl State {
    /// Takes (counts down) the first live fault of one of `kinds` that matches `endpoint`.
    pub fn take_fault(&mut self, endpoint: &str, kinds: &[FaultKind]) -> Option<FaultSpec> {
        let f = self.faults.iter_mut().find(|f| {
            kinds.contains(&f.spec.kind)
                && f.spec.endpoint.as_deref().is_none_or(|e| e == endpoint)
                && f.spec.times.is_none_or(|t| f.fired < t)
        })?;
        f.fired += 1;
        Some(f.spec.clone())
    }
}

/// Hold-at-request-N for crash-point tests.
#[derive(Default)]
pub struct Hold {
    inner: Mutex<HoldState>,
    notify: Notify,
}

#[derive(Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldState {
    /// N, while armed and not yet reached.
    pub after: Option<u32>,
    /// API requests seen since arming.
    pub seen: u32,
    /// `true`: block the N-th request until release; `false`: answer it but record it.
    pub block: bool,
    /// The N-th request, once it arrived.
    pub request: Option<RequestEntry>,
    /// Whether the N-th request is blocked right now.
    pub held: bool,
    pub released: bool,
}

impl Hold {
    pub fn arm(&self, after: u32, block: bool) {
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *h = HoldState { after: Some(after.max(1)), block, ..HoldState::default() };
    }

    pub fn release(&self) {
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        h.released = true;
        h.held = false;
        h.after = None;
        self.notify.notify_waiters();
    }

    pub fn view(&self) -> HoldState {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts a request; `true` if it must block.
    fn on_request(&self, entry: &RequestEntry) -> bool {
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(n) = h.after else { return false };
        h.seen += 1;
        if h.seen < n {
            return false;
        }
        h.after = None;
        h.request = Some(entry.clone());
        h.held = h.block;
        h.block
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.inner.lock().unwrap_or_else(|p| p.into_inner()).released {
                return;
            }
            notified.await;
        }
    }
}

/// Per-connection switch: sending `true` makes the server drop the connection unanswered.
#[derive(Clone)]
pub struct ConnKill(pub watch::Sender<bool>);

/// The snake_case name of an operation, used by faults and the request log.
pub fn endpoint_name(method: &str, path: &str) -> &'static str {
    match (method, path.trim_start_matches("/api")) {
        ("POST", "/oauth2/token") => "token",
        ("POST", "/oauth2/logout") => "logout",
        ("GET", "/v1/serverInfo") => "server_info",
        ("GET", "/v1/serverTime") => "server_time",
        ("GET", "/v1/backupObjects") => "backup_objects",
        ("GET", "/v1/backupObjects/{id}/restorePoints") => "backup_object_points",
        ("GET", "/v1/restorePoints") => "restore_points",
        ("GET", "/v1/restorePoints/{id}") => "restore_point",
        ("POST", "/v1/restore/flr") => "flr_mount",
        ("POST", "/v1/restore/flr/{id}/unmount") => "flr_unmount",
        ("GET", "/v1/backupBrowser/flr") => "flr_list",
        ("GET", "/v1/backupBrowser/flr/{id}") => "flr_get",
        ("POST", "/v1/backupBrowser/flr/{id}/browse") => "browse",
        ("POST", "/v1/backupBrowser/flr/{id}/prepareDownload") => "prepare_download",
        ("POST", "/v1/backupBrowser/flr/{id}/prepareDownload/{task}/download") => "download",
        ("POST", "/v1/backupBrowser/flr/{id}/restore") => "flr_restore",
        ("GET", "/v1/tasks") => "tasks",
        ("GET", "/v1/tasks/{id}") => "task",
        ("POST", "/v1/tasks/{id}/stop") => "task_stop",
        ("GET", "/v1/sessions") => "sessions",
        ("GET", "/v1/sessions/{id}") => "session",
        ("POST", "/v1/sessions/{id}/stop") => "session_stop",
        _ => "unknown",
    }
}

/// Logs the request, applies hold-at-N and the transport-level faults, records the status.
pub async fn api_middleware(AxState(sh): AxState<Arc<Shared>>, req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let method = req.method().to_string();
    let endpoint = endpoint_name(&method, matched.as_deref().unwrap_or(""));
    let kill = req.extensions().get::<ConnKill>().cloned();
    let entry = {
        let mut st = sh.lock();
        st.request_seq += 1;
        let e = RequestEntry {
            seq: st.request_seq,
            method,
            path: req.uri().path().to_string(),
            endpoint: endpoint.to_string(),
            status: None,
            outcome: "pending".into(),
            api_version: req.headers().get("x-api-version").and_then(|v| v.to_str().ok()).map(str::to_string),
            time: SystemTime::now(),
        };
        st.requests.push(e.clone());
        e
    };
    if sh.hold.on_request(&entry) {
        set_outcome(&sh, entry.seq, None, "held");
        sh.hold.wait().await;
    }
    let mut kinds = vec![FaultKind::Status, FaultKind::Delay, FaultKind::Drop, FaultKind::Garbage];
    if endpoint == "flr_mount" {
        kinds.push(FaultKind::LostMount);
    }
    let fault = sh.lock().take_fault(endpoint, &kinds);
    let mut lost = false;
    match fault {
        Some(f) if f.kind == FaultKind::Status => {
            let status = StatusCode::from_u16(f.status.unwrap_or(500)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let msg = f.message.unwrap_or_else(|| "Simulated fault".into());
            let resp = ApiError::new(status, ApiError::code_for(status), msg).into_response();
            set_outcome(&sh, entry.seq, Some(status.as_u16()), "fault:status");
            return resp;
        }
        Some(f) if f.kind == FaultKind::Delay => {
            tokio::time::sleep(Duration::from_millis(f.ms.unwrap_or(30_000))).await
        }
        Some(f) if f.kind == FaultKind::Drop => return drop_connection(&sh, entry.seq, kill, "fault:drop").await,
        Some(f) if f.kind == FaultKind::Garbage => {
            set_outcome(&sh, entry.seq, Some(200), "fault:garbage");
            let body = Body::from("{\"data\": [{\"id\": \"5a1e\", <<garbage>>");
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        Some(_) => lost = true,
        None => {}
    }
    let resp = next.run(req).await;
    if lost {
        return drop_connection(&sh, entry.seq, kill, "fault:lost_mount").await;
    }
    set_outcome(&sh, entry.seq, Some(resp.status().as_u16()), "answered");
    resp
}

async fn drop_connection(sh: &Shared, seq: u64, kill: Option<ConnKill>, outcome: &str) -> Response {
    set_outcome(sh, seq, None, outcome);
    if let Some(k) = kill {
        let _ = k.0.send(true);
        std::future::pending::<()>().await;
    }
    // Every connection of this server carries a ConnKill; without one (a router served some
    // other way) the nearest thing to a lost answer is a 500.
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

fn set_outcome(sh: &Shared, seq: u64, status: Option<u16>, outcome: &str) {
    let mut st = sh.lock();
    if let Some(e) = st.requests.iter_mut().rev().find(|e| e.seq == seq) {
        e.status = status;
        e.outcome = outcome.to_string();
    }
}
