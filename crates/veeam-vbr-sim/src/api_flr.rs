//! File-level restore: mount, list, browse, prepare download, download, restore, unmount.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{Caller, FLR};
use crate::error::ApiError;
use crate::faults::FaultKind;
use crate::flr_state::TaskSpec;
use crate::guestfs;
use crate::inventory::GuestOs;
use crate::models::{self, Paging};
use crate::query::{Q, path_uuid};
use crate::revision::ApiRevision;
use crate::state::{Shared, State, TaskKind};

type Body = Result<Json<Value>, JsonRejection>;

fn body(b: Body) -> Result<Value, ApiError> {
    b.map(|Json(v)| v).map_err(|e| ApiError::bad_request(format!("Malformed JSON body: {e}")))
}

/// The parts of an `FlrMountSpec` the simulator uses, after validation for the revision.
struct MountSpec {
    point: Uuid,
    os: GuestOs,
    auto_unmount: Option<u32>,
}

/// Validates an `FlrMountSpec` against the requested revision's schema: `restorePointId`,
/// `type`, `autoUnmount.isEnabled` always; `mountMode` from 1.3; `mountServer` for Linux from
/// 1.3-rev2 (both waivable with `lenient.mount_mode_optional`).
fn mount_spec(v: &Value, rev: ApiRevision, lenient: bool) -> Result<MountSpec, ApiError> {
    let bad = ApiError::bad_request;
    let point = v["restorePointId"].as_str().and_then(|s| Uuid::parse_str(s).ok());
    let point = point.ok_or_else(|| bad("restorePointId (uuid) is required"))?;
    let os = match v["type"].as_str() {
        Some("Windows") => GuestOs::Windows,
        Some("Linux") => GuestOs::Linux,
        _ => return Err(bad("type must be Windows or Linux")),
    };
    let au = &v["autoUnmount"];
    let enabled = au["isEnabled"].as_bool().ok_or_else(|| bad("autoUnmount.isEnabled (boolean) is required"))?;
    let minutes = match au.get("noActivityPeriodInMinutes") {
        None | Some(Value::Null) => 30,
        Some(m) => m
            .as_u64()
            .filter(|m| *m >= 1 && *m <= i32::MAX as u64)
            .ok_or_else(|| bad("autoUnmount.noActivityPeriodInMinutes must be a positive integer"))?
            as u32,
    };
    if rev.is_v13() && !lenient {
        match v["mountMode"].as_str() {
            Some("Automatic" | "Manual") => {}
            _ => return Err(bad("mountMode (Automatic|Manual) is required from API 1.3")),
        }
        if rev >= ApiRevision::V1_3Rev2 && os == GuestOs::Linux && v.get("mountServer").is_none() {
            return Err(bad("mountServer is required for a Linux mount from API 1.3-rev2"));
        }
    }
    if let Some(ms) = v.get("mountServer") {
        let types = ["MountServer", "OriginalHost", "HelperHost", "HelperAppliance"];
        if !ms["mountServerType"].as_str().is_some_and(|t| types.contains(&t)) {
            return Err(bad("mountServer.mountServerType is required"));
        }
        if os == GuestOs::Windows && ms["mountServerId"].as_str().and_then(|s| Uuid::parse_str(s).ok()).is_none() {
            return Err(bad("mountServer.mountServerId (uuid) is required for Windows"));
        }
    }
    Ok(MountSpec { point, os, auto_unmount: enabled.then_some(minutes) })
}

/// `POST /api/v1/restore/flr` → 201 once mounted. The mount completes on the server even if the
/// client goes away (as a real mount would), so a lost answer leaves a live mount behind.
pub async fn mount(AxState(sh): AxState<Arc<Shared>>, c: Caller, b: Body) -> Result<Response, ApiError> {
    c.require(FLR)?;
    let v = body(b)?;
    let spec = mount_spec(&v, c.rev, sh.lenient.mount_mode_optional)?;
    let (id, wait) = {
        let mut st = sh.lock();
        let vm_os = st.point(spec.point).map(|(vm, _)| vm.os);
        match vm_os {
            None => {
                let mut e = ApiError::bad_request(format!("Restore point {} was not found", spec.point));
                e.code = "NotFound";
                e.resource_id = Some(spec.point.to_string());
                return Err(e);
            }
            Some(os) if os != spec.os => {
                return Err(ApiError::bad_request("The restore point's guest OS does not match type"));
            }
            Some(_) => {}
        }
        let now = SystemTime::now();
        let id = st
            .new_mount(None, spec.point, &c.user, spec.auto_unmount, now)
            .ok_or_else(|| ApiError::not_found("Restore point", spec.point))?;
        if let Some(m) = st.mounts.get_mut(&id) {
            m.reason = v["reason"].as_str().map(str::to_string);
        }
        (id, st.timings.mount_duration)
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sh2 = sh.clone();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        let mut st = sh2.lock();
        let errors = match st.take_fault("flr_mount", &[FaultKind::MountErrors]) {
            Some(f) => vec![(
                f.error_type.unwrap_or_else(|| "Warning".into()),
                f.message.unwrap_or_else(|| "Some disks could not be mounted (simulated)".into()),
            )],
            None => Vec::new(),
        };
        st.mark_mounted(id, errors, SystemTime::now());
        let _ = tx.send(());
    });
    let _ = rx.await;
    let st = sh.lock();
    let m = st.mounts.get(&id).ok_or_else(|| ApiError::not_found("Session", id))?;
    Ok((StatusCode::CREATED, Json(models::mount(m, c.rev))).into_response())
}

/// `GET /api/v1/backupBrowser/flr`: every active mount, whoever started it.
pub async fn list(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    c.require(FLR)?;
    let q = Q::from(q)?;
    let paging = Paging::parse(&q, c.rev)?;
    let order = q.one_of("orderColumn", &["CreationTime"])?;
    let asc = q.bool("orderAsc")?.unwrap_or(true);
    let st = sh.lock();
    let mut mounts: Vec<_> = st.mounts.values().filter(|m| m.state == "Mounted").collect();
    mounts.sort_by_key(|m| m.created);
    if order.is_some() && !asc {
        mounts.reverse();
    }
    let all = mounts.into_iter().map(|m| models::mount(m, c.rev)).collect();
    Ok(Json(paging.page(all)))
}

/// Looks up an active mount for an operation on it, counting it as activity if `active`.
pub(crate) fn live(sh: &Shared, st: &mut State, id: &str, active: bool) -> Result<Uuid, ApiError> {
    let id = path_uuid(id)?;
    if st.live_mount(id).is_none() {
        return Err(ApiError::not_found("File restore session", id));
    }
    if active || sh.lenient.any_request_is_activity {
        st.touch(id, SystemTime::now());
    }
    Ok(id)
}

/// `GET /api/v1/backupBrowser/flr/{sessionId}`.
pub async fn get(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    c.require(FLR)?;
    let mut st = sh.lock();
    let id = live(&sh, &mut st, &id, false)?;
    let m = st.mounts.get(&id).ok_or_else(|| ApiError::not_found("File restore session", id))?;
    Ok(Json(models::mount(m, c.rev)))
}

/// `POST /api/v1/backupBrowser/flr/{sessionId}/browse`.
pub async fn browse(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
    b: Body,
) -> Result<Json<Value>, ApiError> {
    c.require(FLR)?;
    let v = body(b)?;
    let path = v["path"].as_str().ok_or_else(|| ApiError::bad_request("path (string) is required"))?.to_string();
    let mut st = sh.lock();
    let id = live(&sh, &mut st, &id, true)?;
    let m = st.mounts.get(&id).cloned().ok_or_else(|| ApiError::not_found("File restore session", id))?;
    let (_, p) =
        st.point(m.restore_point_id).ok_or_else(|| ApiError::not_found("Restore point", m.restore_point_id))?;
    let created = st.point_time(p);
    let entries = guestfs::list(&p.files, m.os, &path).ok_or_else(|| {
        let mut e = ApiError::bad_request(format!("Path {path:?} was not found in the backup"));
        e.code = "NotFound";
        e
    })?;
    let not_available = if c.rev >= ApiRevision::V1_3Rev2 { "NotAvailable" } else { "NotAvaliable" };
    let items: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            let mut it = json!({
                "location": path, "name": e.name, "type": e.kind, "size": e.size,
                "creationDate": crate::timefmt::format(created), "modifiedDate": crate::timefmt::format(created),
                "itemState": not_available,
            });
            if c.rev.is_v13() {
                it["displayName"] = json!(e.name);
                it["owner"] = json!(if m.os == GuestOs::Windows { "BUILTIN\\Administrators" } else { "root" });
            }
            it
        })
        .collect();
    let skip = v["pagination"]["skip"].as_u64().unwrap_or(0) as usize;
    let limit = match v["pagination"]["limit"].as_u64() {
        None | Some(0) => usize::MAX,
        Some(l) => l as usize,
    };
    let total = items.len();
    let items: Vec<Value> = items.into_iter().skip(skip).take(limit).collect();
    let shown_limit = if limit == usize::MAX { total } else { limit };
    let page = json!({ "total": total, "count": items.len(), "skip": skip, "limit": shown_limit.max(1) });
    Ok(Json(json!({ "path": path, "items": items, "pagination": page })))
}

/// `sourcePath` of a download or restore spec: non-empty, every path present in the point.
fn source_paths(st: &State, session: Uuid, v: &Value) -> Result<Vec<String>, ApiError> {
    let arr = v["sourcePath"].as_array().ok_or_else(|| ApiError::bad_request("sourcePath (array) is required"))?;
    let paths: Vec<String> = arr.iter().filter_map(|p| p.as_str().map(str::to_string)).collect();
    if paths.is_empty() || paths.len() != arr.len() {
        return Err(ApiError::bad_request("sourcePath must be a non-empty array of strings"));
    }
    let m = st.mounts.get(&session).ok_or_else(|| ApiError::not_found("File restore session", session))?;
    let (_, p) =
        st.point(m.restore_point_id).ok_or_else(|| ApiError::not_found("Restore point", m.restore_point_id))?;
    if let Some(missing) = paths.iter().find(|s| !guestfs::exists(&p.files, m.os, s)) {
        let mut e = ApiError::bad_request(format!("Item {missing:?} was not found in the backup"));
        e.code = "NotFound";
        return Err(e);
    }
    Ok(paths)
}

/// `POST …/prepareDownload` → 201 `FlrDownload` task.
pub async fn prepare_download(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ApiError> {
    c.require(FLR)?;
    let v = body(b)?;
    let mut st = sh.lock();
    let id = live(&sh, &mut st, &id, true)?;
    let paths = source_paths(&st, id, &v)?;
    let fails = st.take_fault("prepare_download", &[FaultKind::TaskFail]).is_some();
    let now = SystemTime::now();
    let t = st.new_task(
        TaskSpec { kind: TaskKind::FlrDownload, session_id: id, paths, restore_type: None, fails },
        &c.user,
        now,
    );
    let task = st.tasks.get(&t).ok_or_else(|| ApiError::not_found("Task", t))?;
    Ok((StatusCode::CREATED, Json(models::task(task, now, c.rev))).into_response())
}

/// `POST …/restore` (original location) → 201 `FlrRestore` task. When the task succeeds the
/// files are written into the simulated production machine (`GET /sim/state` → `restored`).
pub async fn restore(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
    b: Body,
) -> Result<Response, ApiError> {
    c.require(FLR)?;
    let v = body(b)?;
    let rt = v["restoreType"].as_str().unwrap_or("");
    if !["Overwrite", "Keep", "PermissionOnly"].contains(&rt) {
        return Err(ApiError::bad_request("restoreType must be Overwrite, Keep or PermissionOnly"));
    }
    let mut st = sh.lock();
    let id = live(&sh, &mut st, &id, true)?;
    let paths = source_paths(&st, id, &v)?;
    let fails = st.take_fault("flr_restore", &[FaultKind::TaskFail]).is_some();
    let now = SystemTime::now();
    let t = st.new_task(
        TaskSpec { kind: TaskKind::FlrRestore, session_id: id, paths, restore_type: Some(rt.to_string()), fails },
        &c.user,
        now,
    );
    let task = st.tasks.get(&t).ok_or_else(|| ApiError::not_found("Task", t))?;
    Ok((StatusCode::CREATED, Json(models::task(task, now, c.rev))).into_response())
}

/// `POST …/prepareDownload/{taskId}/download` → the ZIP, once the task has succeeded.
pub async fn download(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path((id, task)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    c.require(FLR)?;
    let mut st = sh.lock();
    let id = live(&sh, &mut st, &id, true)?;
    let task = path_uuid(&task)?;
    let t = st.tasks.get(&task).filter(|t| t.session_id == id && t.kind == TaskKind::FlrDownload);
    let t = t.ok_or_else(|| ApiError::not_found("Download task", task))?.clone();
    let status = t.status(SystemTime::now());
    if status.result != "Success" {
        return Err(ApiError::bad_request(format!(
            "Download task {task} is not finished successfully (state {}, result {})",
            status.state, status.result
        )));
    }
    let m = st.mounts.get(&id).cloned().ok_or_else(|| ApiError::not_found("File restore session", id))?;
    let (_, p) =
        st.point(m.restore_point_id).ok_or_else(|| ApiError::not_found("Restore point", m.restore_point_id))?;
    let files = guestfs::expand(&p.files, m.os, &t.paths);
    let kinds = [FaultKind::ZipBomb, FaultKind::ZipTraversal, FaultKind::ZipTruncated];
    let fault = st.take_fault("download", &kinds).map(|f| f.kind);
    let zip = crate::zip::for_download(&files, m.os, sh.lenient.zip_flat, fault);
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"FLR_{task}.zip\"")),
    ];
    Ok((StatusCode::OK, headers, zip).into_response())
}

/// `POST /api/v1/restore/flr/{sessionId}/unmount` → 201 `SessionModel` (stopped). Any user
/// with an FLR role may unmount any mount: the spec scopes nothing to its initiator. The
/// simulator records who did (`stoppedBy`) so tests can catch a client unmounting a stranger's.
pub async fn unmount(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    c.require(FLR)?;
    let mut st = sh.lock();
    let id = live(&sh, &mut st, &id, false)?;
    st.stop_mount(id, &c.user, "Success", "File restore session was stopped", false, SystemTime::now());
    let s = st.sessions.iter().find(|s| s.id == id).ok_or_else(|| ApiError::not_found("Session", id))?;
    Ok((StatusCode::CREATED, Json(models::session(s, c.rev))).into_response())
}
