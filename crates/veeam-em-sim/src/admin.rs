//! The simulator's own admin API under `/sim/` (JSON): the request log, faults, session
//! expiry, state, releasing unreachable mounts, timings. Not part of EM.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use std::time::Instant;

use super::Sim;
use super::world::{ExternalRestore, Fault, LoggedRequest, StateView, Timings};

pub(super) fn routes() -> Router<Sim> {
    Router::new()
        .route("/sim/requests", get(admin_requests).delete(admin_clear_requests))
        .route("/sim/faults", get(admin_faults).post(admin_add_fault).delete(admin_clear_faults))
        .route("/sim/hold", get(admin_hold).post(admin_arm_hold).delete(admin_release_hold))
        .route("/sim/sessions/expire", post(admin_expire))
        .route("/sim/state", get(admin_state))
        .route("/sim/mounts/release", post(admin_release))
        .route("/sim/timings", get(admin_timings).put(admin_set_timings))
        .route("/sim/files", axum::routing::put(admin_set_file))
        .route("/sim/restoreSessions", post(admin_add_restore))
        .route("/sim/restoreSessions/{id}/stop", post(admin_stop_restore))
        .route("/sim/restoreSessions/{id}", axum::routing::delete(admin_remove_restore))
}

async fn admin_requests(State(sim): State<Sim>) -> Json<Vec<LoggedRequest>> {
    Json(sim.world().log.clone())
}

async fn admin_clear_requests(State(sim): State<Sim>) -> StatusCode {
    sim.world().log.clear();
    StatusCode::NO_CONTENT
}

async fn admin_faults(State(sim): State<Sim>) -> Json<Vec<Fault>> {
    Json(sim.world().faults.clone())
}

async fn admin_add_fault(State(sim): State<Sim>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => {
            sim.world().faults.push(fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid fault: {e}\n")).into_response(),
    }
}

async fn admin_hold(State(sim): State<Sim>) -> Json<super::HoldView> {
    Json(sim.hold.view())
}

async fn admin_arm_hold(State(sim): State<Sim>, body: Bytes) -> Response {
    match serde_json::from_slice::<super::HoldSpec>(&body) {
        Ok(spec) if spec.request > 0 => {
            sim.hold.arm(spec);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(_) => (StatusCode::BAD_REQUEST, "invalid hold: request counts from 1\n").into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid hold: {e}\n")).into_response(),
    }
}

async fn admin_release_hold(State(sim): State<Sim>) -> StatusCode {
    sim.hold.release();
    StatusCode::NO_CONTENT
}

async fn admin_clear_faults(State(sim): State<Sim>) -> StatusCode {
    sim.world().faults.clear();
    StatusCode::NO_CONTENT
}

async fn admin_expire(State(sim): State<Sim>) -> Json<serde_json::Value> {
    let n = sim.world().expire_all();
    Json(serde_json::json!({ "expired": n }))
}

async fn admin_release(State(sim): State<Sim>) -> Json<serde_json::Value> {
    let n = sim.world().release_orphans();
    Json(serde_json::json!({ "released": n }))
}

async fn admin_state(State(sim): State<Sim>) -> Json<StateView> {
    Json(sim.world().state(Instant::now()))
}

async fn admin_timings(State(sim): State<Sim>) -> Json<Timings> {
    Json(sim.world().timings.clone())
}

async fn admin_set_timings(State(sim): State<Sim>, body: Bytes) -> Response {
    match serde_json::from_slice::<Timings>(&body) {
        Ok(t) => {
            sim.world().timings = t;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid timings: {e}\n")).into_response(),
    }
}

/// `PUT /sim/files`: `{"vm": …, "path": …, "content": …}` sets a guest file in the VM's points.
async fn admin_set_file(State(sim): State<Sim>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SetFile {
        vm: String,
        path: String,
        content: String,
    }
    match serde_json::from_slice::<SetFile>(&body) {
        Ok(f) if sim.world().inventory.set_file(&f.vm, &f.path, &f.content) => StatusCode::NO_CONTENT.into_response(),
        Ok(f) => (StatusCode::NOT_FOUND, format!("no VM {:?}\n", f.vm)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("invalid file: {e}\n")).into_response(),
    }
}

/// `POST /sim/restoreSessions`: a restore another user started (see [`ExternalRestore`]).
async fn admin_add_restore(State(sim): State<Sim>, body: Bytes) -> Response {
    let spec = match serde_json::from_slice::<ExternalRestore>(&body) {
        Ok(spec) => spec,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid restore session: {e}\n")).into_response(),
    };
    match sim.world().add_external_restore(spec, Instant::now()) {
        Ok(id) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(e) => (StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST), format!("{e}\n")).into_response(),
    }
}

/// `POST /sim/restoreSessions/{id}/stop` with `{"result": "Failed"}` (default `Success`).
async fn admin_stop_restore(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Response {
    #[derive(serde::Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Stop {
        result: Option<String>,
    }
    let stop = if body.is_empty() { Ok(Stop::default()) } else { serde_json::from_slice::<Stop>(&body) };
    let stop = match stop {
        Ok(stop) => stop,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid stop: {e}\n")).into_response(),
    };
    match sim.world().stop_external_restore(&id, stop.result.as_deref().unwrap_or("Success")) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST), format!("{e}\n")).into_response(),
    }
}

async fn admin_remove_restore(State(sim): State<Sim>, Path(id): Path<String>) -> StatusCode {
    if sim.world().remove_restore_session(&id) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

/// Parses a `--fault` flag: `kind=status,status=503,endpoint=mount_create,times=2`.
pub fn parse_fault_flag(spec: &str) -> Result<Fault, String> {
    let mut map = serde_json::Map::new();
    for pair in spec.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("fault {spec:?}: expected key=value, got {pair:?}"))?;
        let value = match v.parse::<u64>() {
            Ok(n) => serde_json::Value::from(n),
            Err(_) => serde_json::Value::from(v),
        };
        map.insert(k.trim().to_owned(), value);
    }
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| format!("fault {spec:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Call;
    use crate::FaultKind;

    #[test]
    fn fault_flags() {
        let f = parse_fault_flag("kind=status,status=503,endpoint=mount_create,times=2").unwrap();
        assert_eq!(f.endpoint, Some(Call::MountCreate));
        assert_eq!(f.kind, FaultKind::Status { status: 503, message: None });
        assert_eq!(f.times, Some(2));
        assert!(parse_fault_flag("kind=bogus").is_err());
        assert!(parse_fault_flag("kind").is_err());
        assert!(parse_fault_flag("kind=task_stuck,bogus=1").is_err(), "unknown keys are rejected");
    }
}
