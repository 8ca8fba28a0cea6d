//! An EM mount: what a `mount` (or file restore) run leaves on the server until it deletes it.
//!
//! EM mounts belong to the logon session that created them: only that session can list or
//! delete them. So the record keeps the owning session's id and token, and is written before the
//! mount is requested, updated with the task and then the mount link as they become known.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::em::{self, PointKind, RestorePoint, Session, TaskState};
use crate::ledger::{Record, stored_secret};
use crate::secret::Secret;
use crate::target::{TargetRuntime, session_ref};

/// One mount in flight, as stored on disk (`mounts/<id>.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountRecord {
    /// File name stem; unique.
    pub id: String,
    pub target: String,
    pub probe: String,
    pub vm: String,
    /// The logon session that owns the mount (a secret like the token: the token is its base64).
    #[serde(with = "stored_secret")]
    pub session_id: Secret,
    #[serde(with = "stored_secret")]
    pub token: Secret,
    pub point_kind: PointKind,
    pub point_id: String,
    /// Where the point's mounts are listed (and created).
    pub point_mounts_href: String,
    pub task_href: Option<String>,
    pub mount_href: Option<String>,
    #[serde(with = "humantime_serde")]
    pub created_at: SystemTime,
}

impl Record for MountRecord {
    const DIR: &'static str = "mounts";
    fn file_stem(&self) -> String {
        self.id.clone()
    }
    fn target(&self) -> &str {
        &self.target
    }
    fn created_at(&self) -> SystemTime {
        self.created_at
    }
}

impl MountRecord {
    /// The record of a mount of `point` that `session` is about to request.
    pub fn before_mount(target: &str, probe: &str, vm: &str, session: &Session, point: &RestorePoint) -> MountRecord {
        MountRecord {
            id: uuid::Uuid::new_v4().to_string(),
            target: target.to_owned(),
            probe: probe.to_owned(),
            vm: vm.to_owned(),
            session_id: Secret::new(session.id()),
            token: session.token().clone(),
            point_kind: point.kind,
            point_id: point.id.clone(),
            point_mounts_href: point.mounts_href(),
            task_href: None,
            mount_href: None,
            created_at: SystemTime::now(),
        }
    }
}

/// Where the mount request of a record stands, as far as EM tells.
enum Request {
    /// The mount task is still running: its mount may appear at any moment.
    Running,
    /// `OperationFinished`: the mount exists on the backup server; EM has not collected the task.
    MountExists,
    /// The task finished (or is gone): what the point's listing shows is all there is.
    Done,
    /// The task failed: no mount was made.
    Failed,
}

/// Follows one record up with the session that owns its mount; returns the outcome and how many
/// mounts it deleted (each logged and counted).
pub(super) async fn clean(t: &TargetRuntime, r: &MountRecord, current: Option<&Session>) -> (Outcome, u32) {
    let recorded = r.session_id.expose();
    let is_current = current.is_some_and(|s| s.id() == recorded);
    let session = match current.filter(|s| s.id() == recorded) {
        Some(s) => s.clone(),
        None => match t.client(Secret::new(String::new())) {
            Ok(client) => client.resume(recorded, r.token.clone()),
            Err(e) => return (pending(e.to_string()), 0),
        },
    };
    if let Some(href) = &r.mount_href {
        return match session.delete_mount(href).await {
            Ok(()) => {
                deleted(t, r);
                (Outcome::Resolved, 1)
            }
            Err(em::Error::NotFound { .. }) => (Outcome::Resolved, 0),
            Err(em::Error::SessionExpired { .. }) => (check_unresolved(t, r, current).await, 0),
            Err(e) => (pending(e.to_string()), 0),
        };
    }
    let request = match request_state(&session, r).await {
        Ok(state) => state,
        Err(em::Error::SessionExpired { .. }) => return (check_unresolved(t, r, current).await, 0),
        Err(e) => return (pending(e.to_string()), 0),
    };
    if let Request::Failed = request {
        return (Outcome::Resolved, 0);
    }
    // A run in progress may hold a mount it has not registered yet: listing-and-deleting in the
    // current session waits until no run is in flight.
    if is_current && !t.in_flight().is_idle() {
        return (pending("probe runs in progress on this session".into()), 0);
    }
    let mut count = 0;
    match delete_listed(t, r, &session, &mut count).await {
        Ok(_) => {}
        Err(em::Error::SessionExpired { .. }) => return (check_unresolved(t, r, current).await, count),
        Err(e) => return (pending(e.to_string()), count),
    }
    let outcome = match request {
        Request::Running => Outcome::Pending { why: "its mount task is still running".into(), waiting: true },
        Request::MountExists => Outcome::Pending {
            why: "its mount task finished on the backup server; waiting for EM to collect it".into(),
            waiting: true,
        },
        // Resolved once a listing after the task finished shows nothing left.
        _ if count == 0 => Outcome::Resolved,
        _ => match delete_listed(t, r, &session, &mut count).await {
            Ok(0) => Outcome::Resolved,
            Ok(_) => Outcome::Pending { why: "EM still listed a mount after deleting it".into(), waiting: true },
            Err(e) => pending(e.to_string()),
        },
    };
    (outcome, count)
}

fn pending(why: String) -> Outcome {
    Outcome::Pending { why, waiting: false }
}

/// Asks EM about the record's mount request: its task when known, else the session's tasks
/// (the answer to the request was lost, so any mount task of the recorded session may be it).
async fn request_state(session: &Session, r: &MountRecord) -> em::Result<Request> {
    let tasks = match &r.task_href {
        Some(href) => match session.task(href).await {
            Ok(task) => vec![task],
            // EM forgot the task (a restart): the point's listing tells what is left.
            Err(em::Error::NotFound { .. }) => return Ok(Request::Done),
            Err(e) => return Err(e),
        },
        None => session
            .tasks()
            .await?
            .into_iter()
            .filter(|t| t.operation.is_empty() || t.operation.eq_ignore_ascii_case("MountRestorePoint"))
            .collect(),
    };
    let state = |task: &em::Task| match &task.state {
        TaskState::Finished if task.result.as_ref().is_some_and(|res| !res.success) => Request::Failed,
        TaskState::Finished => Request::Done,
        TaskState::OperationFinished => Request::MountExists,
        TaskState::Running | TaskState::Other(_) => Request::Running,
    };
    Ok(match tasks.as_slice() {
        [task] if r.task_href.is_some() => state(task),
        // Of several candidates the least finished decides: its mount may still appear.
        _ => tasks.iter().map(state).min_by_key(rank).unwrap_or(Request::Done),
    })
}

fn rank(request: &Request) -> u8 {
    match request {
        Request::Running => 0,
        Request::MountExists => 1,
        Request::Done => 2,
        Request::Failed => 3,
    }
}

/// Deletes every mount the owning session holds at the record's point; returns how many were
/// listed. Safe: the session is the recorded one, and no run uses it (or it is idle).
async fn delete_listed(t: &TargetRuntime, r: &MountRecord, session: &Session, count: &mut u32) -> em::Result<usize> {
    let mounts = session.mounts_at(&r.point_mounts_href, r.point_kind).await?;
    for m in &mounts {
        match session.delete_mount(m.delete_href()).await {
            Ok(()) => {
                deleted(t, r);
                *count += 1;
            }
            Err(em::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(mounts.len())
}

fn deleted(t: &TargetRuntime, r: &MountRecord) {
    tracing::info!(target_name = t.name(), probe = %r.probe, vm = %r.vm, session_ref = session_ref(r.session_id.expose()), "deleted a mount left behind by an earlier run");
    t.count_orphan_cleaned();
}

/// An unreachable mount may still exist on the backup server. While EM still lists a
/// `Working` file-level restore session for the VM, it is reported as unresolved; once there
/// is none, the mount is gone and the record is dropped.
async fn check_unresolved(t: &TargetRuntime, r: &MountRecord, current: Option<&Session>) -> Outcome {
    let Some(session) = current else { return Outcome::Unresolved };
    match session.working_flr_sessions(&r.vm).await {
        Ok(sessions) if sessions.is_empty() => {
            tracing::info!(target_name = t.name(), probe = %r.probe, vm = %r.vm, "orphaned mount no longer shows as a working restore session; dropping its record");
            Outcome::Resolved
        }
        Ok(sessions) => {
            let names: Vec<&str> = sessions.iter().filter_map(|s| s.name.as_deref()).collect();
            tracing::error!(
                target_name = t.name(),
                probe = %r.probe,
                vm = %r.vm,
                created_at = %humantime::format_rfc3339_seconds(r.created_at),
                restore_sessions = ?names,
                "UNRESOLVED orphaned mount: its EM logon session expired, so the API cannot delete it. \
                 Stop the file-level restore session for this VM in the Veeam console (or the VBR REST API); \
                 this record is dropped automatically once EM no longer lists it as Working (see docs/runbook.md)"
            );
            Outcome::Unresolved
        }
        Err(e) => {
            tracing::warn!(target_name = t.name(), err = %e, "cannot look for the orphan's restore session");
            Outcome::Unresolved
        }
    }
}

/// Deletes mounts that the current session holds but no running probe owns, at the restore
/// points where a mount step failed (e.g. a mount task that finished after its step timed
/// out). Only while no run is in flight: a run may hold a mount it has not registered yet.
/// A point stays to sweep until no record of it is left and a listing shows nothing stray.
pub(super) async fn sweep(t: &TargetRuntime, session: &Session) {
    if !t.in_flight().is_idle() {
        return;
    }
    for point in t.in_flight().to_sweep() {
        let Ok(mounts) = session.mounts_at(&point.1, point.0).await else { continue };
        let mut all_gone = true;
        for m in mounts.iter().filter(|m| !t.in_flight().has_mount(&m.href)) {
            match session.delete_mount(m.delete_href()).await {
                Ok(()) => {
                    tracing::info!(target_name = t.name(), "deleted a stray mount no probe owns");
                    t.count_orphan_cleaned();
                }
                Err(e) => {
                    all_gone = false;
                    tracing::warn!(target_name = t.name(), err = %e, "cannot delete a stray mount");
                }
            }
        }
        // While a record of that point is left, its task may still produce a mount.
        let recorded = t.ledger.all::<MountRecord>(t.name()).iter().any(|r| r.point_mounts_href == point.1);
        if all_gone && !recorded {
            t.in_flight().swept(&point);
        }
    }
}
