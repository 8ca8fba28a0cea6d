//! The mutable world of one simulator: tokens, mounts, sessions, tasks, what was restored, the
//! request log. One `std::sync::Mutex`, never held across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use uuid::Uuid;

use crate::config::{Lenient, SimConfig, Timings};
use crate::faults::{Fault, Hold};
use crate::inventory::{GuestOs, Inventory, Point, Role, Vm};
use crate::revision::ApiRevision;
use crate::timefmt;

/// State shared by every handler.
pub struct Shared {
    inner: Mutex<State>,
    pub lenient: Lenient,
    pub max_rev: ApiRevision,
    pub min_rev: ApiRevision,
    pub hold: Hold,
}

/// An issued access token.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub user: String,
    pub role: Role,
    pub issued: SystemTime,
    pub expires: SystemTime,
    pub refresh: String,
    pub revoked: bool,
}

/// An issued refresh token: single use.
#[derive(Clone, Debug)]
pub struct RefreshToken {
    pub user: String,
    pub expires: SystemTime,
    pub used: bool,
}

/// An FLR mount (a file restore session's mount point).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub session_id: Uuid,
    pub restore_point_id: Uuid,
    pub vm: String,
    pub os: GuestOs,
    #[serde(serialize_with = "ser_time")]
    pub created: SystemTime,
    #[serde(serialize_with = "ser_time")]
    pub last_activity: SystemTime,
    pub auto_unmount_minutes: Option<u32>,
    pub initiator: String,
    pub mount_errors: Vec<(String, String)>,
    /// `Mounting` (the 201 has not been sent), `Mounted`, `Unmounted`.
    pub state: &'static str,
    pub stopped_by: Option<String>,
    pub reason: Option<String>,
}

/// A session (`SessionModel`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: Uuid,
    pub name: String,
    pub session_type: &'static str,
    #[serde(serialize_with = "ser_time")]
    pub created: SystemTime,
    #[serde(serialize_with = "ser_opt_time")]
    pub ended: Option<SystemTime>,
    pub state: &'static str,
    pub result: &'static str,
    pub message: String,
    pub canceled: bool,
    pub initiated_by: String,
    pub resource_id: Uuid,
    pub usn: i64,
}

/// `FlrDownload` or `FlrRestore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TaskKind {
    FlrDownload,
    FlrRestore,
}

/// A restore task; its state is a function of time, computed by [`Task::status`].
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: Uuid,
    pub kind: TaskKind,
    pub session_id: Uuid,
    #[serde(serialize_with = "ser_time")]
    pub created: SystemTime,
    #[serde(with = "crate::config::ms")]
    pub duration: Duration,
    pub fails: bool,
    #[serde(serialize_with = "ser_opt_time")]
    pub cancelled_at: Option<SystemTime>,
    pub paths: Vec<String>,
    pub restore_type: Option<String>,
    pub finalized: bool,
    pub initiator: String,
}

/// What `GET /tasks/{id}` shows at one instant.
pub struct TaskStatus {
    pub state: &'static str,
    pub progress: u32,
    pub result: &'static str,
    pub ended: Option<SystemTime>,
}

impl Task {
    /// Starting for the first fifth of the duration, then Working with rising progress, then
    /// Stopped with Success (or Failed under a `task_fail` fault); Cancelled if stopped.
    pub fn status(&self, now: SystemTime) -> TaskStatus {
        let elapsed = now.duration_since(self.created).unwrap_or_default();
        if let Some(at) = self.cancelled_at {
            let progress = self.progress_at(at.duration_since(self.created).unwrap_or_default());
            return TaskStatus { state: "Stopped", progress, result: "Cancelled", ended: Some(at) };
        }
        if elapsed >= self.duration {
            let result = if self.fails { "Failed" } else { "Success" };
            let progress = if self.fails { self.progress_at(self.duration / 2) } else { 100 };
            return TaskStatus { state: "Stopped", progress, result, ended: self.created.checked_add(self.duration) };
        }
        let state = if elapsed < self.duration / 5 { "Starting" } else { "Working" };
        TaskStatus { state, progress: self.progress_at(elapsed), result: "None", ended: None }
    }

    fn progress_at(&self, elapsed: Duration) -> u32 {
        if self.duration.is_zero() {
            return 100;
        }
        let p = elapsed.as_secs_f64() / self.duration.as_secs_f64() * 100.0;
        (p as u32).min(99)
    }
}

/// One item restored to the original location (written into the simulated production VM).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    pub vm: String,
    pub path: String,
    pub content: String,
    pub restore_type: String,
    pub session_id: Uuid,
    pub task_id: Uuid,
    pub restore_point_id: Uuid,
    #[serde(serialize_with = "ser_time")]
    pub at: SystemTime,
}

/// One API request, for `GET /sim/requests`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestEntry {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub endpoint: String,
    pub status: Option<u16>,
    pub outcome: String,
    pub api_version: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub time: SystemTime,
}

/// Everything mutable.
pub struct State {
    pub start: SystemTime,
    pub inventory: Inventory,
    pub timings: Timings,
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshToken>,
    pub tokens_issued: u64,
    pub failed_logons: HashMap<String, u32>,
    pub mounts: BTreeMap<Uuid, Mount>,
    pub sessions: Vec<Session>,
    pub tasks: BTreeMap<Uuid, Task>,
    pub restored: Vec<Restored>,
    pub requests: Vec<RequestEntry>,
    pub request_seq: u64,
    pub faults: Vec<Fault>,
    usn: i64,
}

pub(crate) fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timefmt::format(*t))
}

pub(crate) fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&timefmt::format(*t)),
        None => s.serialize_none(),
    }
}

impl Shared {
    pub fn new(cfg: &SimConfig) -> Arc<Shared> {
        let mut inventory = cfg.inventory.clone();
        inventory.resolve_files();
        let foreign = inventory.foreign_mounts.clone();
        let mut st = State {
            start: SystemTime::now(),
            inventory,
            timings: cfg.timings.clone(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            tokens_issued: 0,
            failed_logons: HashMap::new(),
            mounts: BTreeMap::new(),
            sessions: Vec::new(),
            tasks: BTreeMap::new(),
            restored: Vec::new(),
            requests: Vec::new(),
            request_seq: 0,
            faults: cfg.faults.iter().cloned().map(Fault::new).collect(),
            usn: 0,
        };
        for f in foreign {
            let now = st.start;
            // A foreign mount has no auto-unmount: it must outlive any test.
            if let Some(m) = st.new_mount(Some(f.session_id), f.restore_point_id, &f.initiator, None, now) {
                st.mark_mounted(m, Vec::new(), now);
            }
        }
        Arc::new(Shared {
            inner: Mutex::new(st),
            lenient: cfg.lenient.clone(),
            max_rev: cfg.max_api_revision,
            min_rev: cfg.min_api_revision,
            hold: Hold::default(),
        })
    }

    /// Locks the state after applying the passage of time (expired auto-unmounts, finished
    /// tasks), so every reader sees a consistent "now".
    pub fn lock(&self) -> MutexGuard<'_, State> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.tick(SystemTime::now());
        g
    }
}

impl State {
    pub fn next_usn(&mut self) -> i64 {
        self.usn += 1;
        self.usn
    }

    /// Finds a point and its VM.
    pub fn point(&self, id: Uuid) -> Option<(&Vm, &Point)> {
        self.inventory.vms.iter().find_map(|vm| vm.points.iter().find(|p| p.id == id).map(|p| (vm, p)))
    }

    /// `creationTime` of a point.
    pub fn point_time(&self, p: &Point) -> SystemTime {
        self.start.checked_sub(p.age).unwrap_or(self.start)
    }

    pub fn session_mut(&mut self, id: Uuid) -> Option<&mut Session> {
        self.sessions.iter_mut().find(|s| s.id == id)
    }

    /// Applies time: finishes tasks (a finished restore writes into the production VM) and
    /// auto-unmounts idle mounts.
    pub fn tick(&mut self, now: SystemTime) {
        let done: Vec<Uuid> =
            self.tasks.values().filter(|t| !t.finalized && t.status(now).state == "Stopped").map(|t| t.id).collect();
        for id in done {
            self.finalize_task(id, now);
        }
        let minute = self.timings.auto_unmount_minute;
        let idle: Vec<Uuid> = self
            .mounts
            .values()
            .filter(|m| m.state == "Mounted")
            .filter(|m| !self.has_running_task(m.session_id, now))
            .filter(|m| match m.auto_unmount_minutes {
                Some(n) => {
                    let limit = minute.checked_mul(n).unwrap_or(Duration::MAX);
                    now.duration_since(m.last_activity).unwrap_or_default() >= limit
                }
                None => false,
            })
            .map(|m| m.session_id)
            .collect();
        for id in idle {
            let msg = "File restore session was stopped automatically after a period of inactivity";
            self.stop_mount(id, "autoUnmount", "Success", msg, false, now);
        }
    }

    fn has_running_task(&self, session: Uuid, now: SystemTime) -> bool {
        self.tasks.values().any(|t| t.session_id == session && t.status(now).state != "Stopped")
    }

    fn finalize_task(&mut self, id: Uuid, now: SystemTime) {
        let Some(t) = self.tasks.get_mut(&id) else { return };
        t.finalized = true;
        let t = t.clone();
        let st = t.status(now);
        if t.kind != TaskKind::FlrRestore || st.result != "Success" {
            return;
        }
        let Some(m) = self.mounts.get(&t.session_id).cloned() else { return };
        let Some((vm, p)) = self.point(m.restore_point_id) else { return };
        let vm_name = vm.name.clone();
        let files = crate::guestfs::expand(&p.files, vm.os, &t.paths);
        for (path, content) in files {
            self.restored.push(Restored {
                vm: vm_name.clone(),
                path,
                content,
                restore_type: t.restore_type.clone().unwrap_or_default(),
                session_id: t.session_id,
                task_id: t.id,
                restore_point_id: m.restore_point_id,
                at: st.ended.unwrap_or(now),
            });
        }
    }
}
