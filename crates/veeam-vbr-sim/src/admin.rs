//! The admin API under `/sim/` (outside VBR's `/api/` namespace): state, request log, timings,
//! faults, token expiry, hold-at-N, guest files, foreign mounts. JSON in and out.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::config::Timings;
use crate::faults::{Fault, FaultSpec};
use crate::state::Shared;

type S = AxState<Arc<Shared>>;

fn bad(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg.into() }))).into_response()
}

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/sim/state", get(|AxState(sh): S| async move { Json(sh.lock().view()) }))
        .route("/sim/requests", get(requests).delete(clear_requests))
        .route("/sim/timings", get(timings).put(put_timings))
        .route("/sim/faults", get(faults).post(add_fault).delete(clear_faults))
        .route("/sim/tokens/expire", post(expire_tokens))
        .route("/sim/hold", post(hold))
        .route("/sim/release", post(release))
        .route("/sim/held", get(|AxState(sh): S| async move { Json(sh.hold.view()) }))
        .route("/sim/files", put(put_file))
        .route("/sim/flr", post(foreign_mount))
}

async fn requests(AxState(sh): S) -> Json<Value> {
    Json(json!(sh.lock().requests))
}

async fn clear_requests(AxState(sh): S) -> StatusCode {
    sh.lock().requests.clear();
    StatusCode::NO_CONTENT
}

async fn timings(AxState(sh): S) -> Json<Timings> {
    Json(sh.lock().timings.clone())
}

/// Merges the given fields (milliseconds) over the current timings.
async fn put_timings(AxState(sh): S, Json(patch): Json<Value>) -> Response {
    let mut st = sh.lock();
    let mut cur = json!(st.timings);
    let Some(obj) = patch.as_object() else { return bad("expected a JSON object") };
    for (k, v) in obj {
        if cur.get(k).is_none() {
            return bad(format!("unknown timing {k}"));
        }
        cur[k] = v.clone();
    }
    match serde_json::from_value::<Timings>(cur) {
        Ok(t) => {
            st.timings = t.clone();
            Json(t).into_response()
        }
        Err(e) => bad(e.to_string()),
    }
}

async fn faults(AxState(sh): S) -> Json<Vec<Fault>> {
    Json(sh.lock().faults.clone())
}

/// Accepts a JSON `FaultSpec` or `{"spec": "kind=…,endpoint=…"}`.
async fn add_fault(AxState(sh): S, Json(v): Json<Value>) -> Response {
    let spec = match v.get("spec").and_then(Value::as_str) {
        Some(s) => s.parse::<FaultSpec>(),
        None => serde_json::from_value::<FaultSpec>(v).map_err(|e| e.to_string()).and_then(|f| f.validate().map(|_| f)),
    };
    match spec {
        Ok(s) => {
            sh.lock().faults.push(Fault::new(s.clone()));
            (StatusCode::CREATED, Json(json!(s))).into_response()
        }
        Err(e) => bad(e),
    }
}

async fn clear_faults(AxState(sh): S) -> StatusCode {
    sh.lock().faults.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ExpireSpec {
    /// Also expire refresh tokens.
    refresh: bool,
}

/// Expires every access token now (and refresh tokens with `{"refresh": true}`).
async fn expire_tokens(AxState(sh): S, body: Option<Json<ExpireSpec>>) -> Json<Value> {
    let spec = body.map(|Json(b)| b).unwrap_or_default();
    let mut st = sh.lock();
    let now = SystemTime::now();
    let mut n = 0;
    for t in st.access.values_mut().filter(|t| t.expires > now) {
        t.expires = now;
        n += 1;
    }
    if spec.refresh {
        for r in st.refresh.values_mut() {
            r.expires = now;
        }
    }
    Json(json!({ "expired": n }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HoldSpec {
    after: u32,
    /// `block` (default) or `signal`.
    #[serde(default)]
    mode: Option<String>,
}

async fn hold(AxState(sh): S, Json(h): Json<HoldSpec>) -> Response {
    let block = match h.mode.as_deref() {
        None | Some("block") => true,
        Some("signal") => false,
        Some(m) => return bad(format!("unknown hold mode {m}")),
    };
    if h.after == 0 {
        return bad("after must be >= 1");
    }
    sh.hold.arm(h.after, block);
    Json(sh.hold.view()).into_response()
}

async fn release(AxState(sh): S) -> Json<Value> {
    sh.hold.release();
    Json(json!(sh.hold.view()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileSpec {
    vm: String,
    path: String,
    content: String,
    /// Only this point; every point of the VM if absent.
    restore_point_id: Option<Uuid>,
}

async fn put_file(AxState(sh): S, Json(f): Json<FileSpec>) -> Response {
    let mut st = sh.lock();
    let Some(vm) = st.inventory.vms.iter_mut().find(|v| v.name == f.vm) else {
        return bad(format!("unknown vm {}", f.vm));
    };
    if crate::guestfs::key(vm.os, &f.path).is_none() {
        return bad(format!("{} is not a valid path for this guest OS", f.path));
    }
    let mut n = 0;
    for p in vm.points.iter_mut().filter(|p| f.restore_point_id.is_none_or(|id| id == p.id)) {
        p.files.insert(f.path.clone(), f.content.clone());
        n += 1;
    }
    Json(json!({ "pointsUpdated": n })).into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ForeignSpec {
    restore_point_id: Option<Uuid>,
    vm: Option<String>,
    initiator: Option<String>,
    auto_unmount_minutes: Option<u32>,
}

/// A mount started by another user (at once, no mount delay).
async fn foreign_mount(AxState(sh): S, Json(f): Json<ForeignSpec>) -> Response {
    let mut st = sh.lock();
    let point = f.restore_point_id.or_else(|| {
        let vm = st.inventory.vms.iter().find(|v| Some(&v.name) == f.vm.as_ref())?;
        vm.points.iter().min_by_key(|p| p.age).map(|p| p.id)
    });
    let Some(point) = point else { return bad("restorePointId or a known vm is required") };
    let who = f.initiator.unwrap_or_else(|| "CORP\\other-operator".into());
    let now = SystemTime::now();
    let Some(id) = st.new_mount(None, point, &who, f.auto_unmount_minutes, now) else {
        return bad("unknown restore point");
    };
    st.mark_mounted(id, Vec::new(), now);
    (StatusCode::CREATED, Json(json!({ "sessionId": id, "restorePointId": point, "initiator": who }))).into_response()
}
