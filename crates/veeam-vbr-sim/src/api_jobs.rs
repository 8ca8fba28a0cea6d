//! Tasks and sessions.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as AxState};
use serde_json::{Value, json};

use crate::auth::{ADMIN, Caller, OBJECTS, POINTS, SESSION_STOP};
use crate::error::ApiError;
use crate::models::{self, Paging};
use crate::query::{Q, path_uuid};
use crate::state::Shared;

type Qr = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// `GET /api/v1/tasks/{id}`. Polling a task counts as activity on its mount only with
/// `lenient.any_request_is_activity`.
pub async fn task(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    c.require(POINTS)?;
    let id = path_uuid(&id)?;
    let mut st = sh.lock();
    let t = st.tasks.get(&id).cloned().ok_or_else(|| ApiError::not_found("Task", id))?;
    let now = SystemTime::now();
    if sh.lenient.any_request_is_activity {
        st.touch(t.session_id, now);
    }
    Ok(Json(models::task(&t, now, c.rev)))
}

/// `GET /api/v1/tasks` (paged; `typeFilter`, `stateFilter`, `resultFilter`, `createdAfterFilter`).
pub async fn tasks(AxState(sh): AxState<Arc<Shared>>, c: Caller, q: Qr) -> Result<Json<Value>, ApiError> {
    c.require(POINTS)?;
    let q = Q::from(q)?;
    let paging = Paging::parse(&q, c.rev)?;
    let ty = q.one_of(
        "typeFilter",
        &["Common", "FlrRestore", "FlrDownload", "FlrSearch", "HierarchyRescan", "DeploymentKit"],
    )?;
    let state = q.one_of("stateFilter", &["Starting", "Working", "Stopping", "Stopped"])?;
    let result = q.one_of("resultFilter", &["None", "Success", "Warning", "Failed", "Cancelled"])?;
    let after = q.time("createdAfterFilter")?;
    let st = sh.lock();
    let now = SystemTime::now();
    let mut ts: Vec<_> = st.tasks.values().collect();
    ts.sort_by_key(|t| t.created);
    let all = ts
        .into_iter()
        .map(|t| models::task(t, now, c.rev))
        .filter(|v| ty.as_deref().is_none_or(|x| v["type"] == x))
        .filter(|v| state.as_deref().is_none_or(|x| v["state"] == x))
        .filter(|v| result.as_deref().is_none_or(|x| v["result"] == x))
        .filter(|v| {
            after.is_none_or(|a| v["creationTime"].as_str().and_then(crate::timefmt::parse).is_some_and(|t| t > a))
        })
        .collect();
    Ok(Json(paging.page(all)))
}

/// `POST /api/v1/tasks/{id}/stop` — Veeam Backup Administrator only.
pub async fn task_stop(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    c.require(ADMIN)?;
    let id = path_uuid(&id)?;
    let mut st = sh.lock();
    let now = SystemTime::now();
    let t = st.tasks.get_mut(&id).ok_or_else(|| ApiError::not_found("Task", id))?;
    if t.status(now).state != "Stopped" {
        t.cancelled_at = Some(now);
    }
    Ok(Json(json!({})))
}

const SESSION_STATES: &[&str] = &[
    "Stopped",
    "Starting",
    "Stopping",
    "Working",
    "Pausing",
    "Resuming",
    "WaitingTape",
    "Idle",
    "Postprocessing",
    "WaitingRepository",
    "WaitingSlot",
];

/// `GET /api/v1/sessions`: FLR sessions of every user, newest last unless ordered.
pub async fn sessions(AxState(sh): AxState<Arc<Shared>>, c: Caller, q: Qr) -> Result<Json<Value>, ApiError> {
    c.require(OBJECTS)?;
    let q = Q::from(q)?;
    let paging = Paging::parse(&q, c.rev)?;
    let types = q.all("typeFilter");
    let state = q.one_of("stateFilter", SESSION_STATES)?;
    let results = q.all("resultFilter");
    let after = q.time("createdAfterFilter")?;
    let before = q.time("createdBeforeFilter")?;
    let mut cols = vec!["Name", "SessionType", "CreationTime", "EndTime", "State", "Result"];
    if c.rev.is_v13() {
        cols.push("InitiatedBy");
    }
    let order = q.one_of("orderColumn", &cols)?;
    let asc = q.bool("orderAsc")?.unwrap_or(true);
    let name = q.get("nameFilter");
    let st = sh.lock();
    let mut ss: Vec<_> = st
        .sessions
        .iter()
        .filter(|s| types.is_empty() || types.iter().any(|t| t == s.session_type))
        .filter(|s| state.as_deref().is_none_or(|x| x == s.state))
        .filter(|s| results.is_empty() || results.iter().any(|r| r == s.result))
        .filter(|s| after.is_none_or(|a| s.created > a) && before.is_none_or(|b| s.created < b))
        .filter(|s| name.is_none_or(|n| crate::api_points::name_matches(n, &s.name)))
        .collect();
    match order.as_deref() {
        Some("Name") => ss.sort_by(|a, b| a.name.cmp(&b.name)),
        Some("SessionType") => ss.sort_by_key(|s| s.session_type),
        Some("EndTime") => ss.sort_by_key(|s| s.ended),
        Some("State") => ss.sort_by_key(|s| s.state),
        Some("Result") => ss.sort_by_key(|s| s.result),
        Some("InitiatedBy") => ss.sort_by(|a, b| a.initiated_by.cmp(&b.initiated_by)),
        _ => ss.sort_by_key(|s| s.created),
    }
    if order.is_some() && !asc {
        ss.reverse();
    }
    let all = ss.into_iter().map(|s| models::session(s, c.rev)).collect();
    Ok(Json(paging.page(all)))
}

/// `GET /api/v1/sessions/{id}`.
pub async fn session(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    c.require(OBJECTS)?;
    let id = path_uuid(&id)?;
    let st = sh.lock();
    let s = st.sessions.iter().find(|s| s.id == id).ok_or_else(|| ApiError::not_found("Session", id))?;
    Ok(Json(models::session(s, c.rev)))
}

/// `POST /api/v1/sessions/{id}/stop`: on an FLR session, unmounts (result: canceled).
pub async fn session_stop(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    c.require(SESSION_STOP)?;
    let id = path_uuid(&id)?;
    let mut st = sh.lock();
    let s = st.sessions.iter().find(|s| s.id == id).ok_or_else(|| ApiError::not_found("Session", id))?;
    if s.state != "Stopped" {
        st.stop_mount(id, &c.user, "Success", "Session was stopped by user", true, SystemTime::now());
    }
    Ok(Json(json!({})))
}
