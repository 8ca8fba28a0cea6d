//! The simulated EM's state and semantics, independent of HTTP, in rooms: `faults` (fault
//! injection and the request log), `sessions` (logon sessions), `query` (restore points and
//! the query language), `mounts`, `restores` (catalog restores, tasks, restore sessions).
//!
//! Time advances lazily: every request first calls [`World::tick`], which moves tasks and
//! restore sessions along their timelines and applies the effects of tasks that stopped running.

mod faults;
mod mounts;
mod query;
mod reports;
mod restores;
mod sessions;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::{Deserialize, Serialize};

pub use faults::{Fault, FaultKind};
pub(crate) use query::filter_holds;
pub use restores::ExternalRestore;

use super::inventory::{Inventory, Point};
use super::render::{Body, El, link};
use super::vocab::{Call, PointKind};

/// How long simulated things take.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timings {
    /// Idle time after which a logon session token expires (EM: 15 minutes).
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// How long a task stays `Running`.
    #[serde(with = "humantime_serde")]
    pub task_running: Duration,
    /// How long a task then stays `OperationFinished` (EM's collection lag).
    #[serde(with = "humantime_serde")]
    pub task_collect_lag: Duration,
    /// How long a catalog file restore session takes from `Starting` to `Stopped`.
    #[serde(with = "humantime_serde")]
    pub restore_duration: Duration,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            session_idle_timeout: Duration::from_secs(15 * 60),
            task_running: Duration::from_millis(300),
            task_collect_lag: Duration::from_millis(200),
            restore_duration: Duration::from_secs(2),
        }
    }
}

/// One entry of the request log served at `/sim/requests`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub endpoint: Option<Call>,
    pub status: u16,
    /// The logon session the token belonged to, if any.
    pub session: Option<String>,
}

/// A snapshot for `/sim/state`: what is mounted and which sessions are alive.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateView {
    pub sessions: Vec<SessionView>,
    pub mounts: Vec<MountView>,
    pub restore_sessions: Vec<RestoreSessionView>,
    pub restored_files: Vec<RestoredFile>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionView {
    pub id: String,
    pub user: String,
    pub alive: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountView {
    pub vm: String,
    pub kind: PointKind,
    pub point_id: String,
    pub mount_id: u32,
    pub session: String,
    pub session_alive: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestoreSessionView {
    pub id: String,
    pub vm: String,
    pub state: String,
    pub result: String,
    pub progress: i64,
}

/// A file the catalog restore wrote back into the "production" VM.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestoredFile {
    pub vm: String,
    pub path: String,
}

/// One mount as a request addresses it (`/{collection}/{point}/mounts/{mount}`), and the logon
/// session asking: mounts are visible only to the session that created them.
pub(crate) struct MountKey<'a> {
    pub session: &'a str,
    pub kind: PointKind,
    pub point_id: &'a str,
    pub mount_id: &'a str,
}

/// An HTTP-level failure: status plus EM `Error` message.
#[derive(Debug)]
pub(crate) struct SimError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

fn err(status: u16, message: impl Into<String>) -> SimError {
    SimError { status, message: message.into() }
}

type Reply = Result<Body, SimError>;

struct LogonSession {
    id: String,
    token: String,
    user: String,
    last_seen: Instant,
    expired: bool,
    next_task: u32,
}

/// The collection path segment of a kind of point (EM REST docs: `/vmRestorePoints`,
/// `/vmReplicaPoints`).
pub(crate) fn collection(kind: PointKind) -> &'static str {
    match kind {
        PointKind::Backup => "vmRestorePoints",
        PointKind::Replica => "vmReplicaPoints",
    }
}

/// The entity type name of a kind of point, also its `/query?type=` value.
pub(crate) fn point_type(kind: PointKind) -> &'static str {
    match kind {
        PointKind::Backup => "VmRestorePoint",
        PointKind::Replica => "VmReplicaPoint",
    }
}

enum Effect {
    Mount {
        kind: PointKind,
        point_id: String,
    },
    /// A catalog browse: the point's `guestfs` opens for the session that browsed.
    Browse {
        vm: String,
        point_id: String,
    },
    CatalogRestore {
        vm: String,
        point: Point,
        path: String,
        result: Option<String>,
    },
    DownloadRestore {
        mount_href: String,
        path: String,
    },
}

struct SimTask {
    session: String,
    id: String,
    operation: &'static str,
    created: Instant,
    stuck: bool,
    fail: Option<String>,
    effect: Option<Effect>,
    /// Set once the task left `Running`: its result links and message.
    outcome: Option<(Vec<crate::render::Link>, String)>,
}

struct SimMount {
    kind: PointKind,
    point_id: String,
    id: u32,
    session: String,
    vm: String,
    restore_session: String,
}

enum RestoreKind {
    /// The FLR session behind a mount: `Working` until the mount is deleted.
    Mount { ended: Option<SystemTime> },
    /// A catalog file restore running through its states.
    Restore { duration: Duration, result: String },
    /// A restore someone else started (added under `/sim/restoreSessions`): `Working` until
    /// stopped, then `Stopped` with its result.
    External { job_type: String, ended: Option<(SystemTime, String)> },
}

struct SimRestoreSession {
    id: String,
    vm: String,
    point: Point,
    created: Instant,
    created_wall: SystemTime,
    kind: RestoreKind,
}

struct RestoreView {
    state: &'static str,
    result: String,
    progress: i64,
    end: Option<SystemTime>,
}

impl SimRestoreSession {
    /// EM's `JobType`: file-level for mounts and catalog restores.
    fn job_type(&self) -> &str {
        match &self.kind {
            RestoreKind::External { job_type, .. } => job_type,
            _ => "FileLevelRestore",
        }
    }

    fn view(&self, now: Instant) -> RestoreView {
        match &self.kind {
            RestoreKind::Mount { ended: None } => {
                RestoreView { state: "Working", result: "None".into(), progress: 0, end: None }
            }
            RestoreKind::Mount { ended: Some(end) } => {
                RestoreView { state: "Stopped", result: "Success".into(), progress: 100, end: Some(*end) }
            }
            RestoreKind::External { ended: None, .. } => {
                RestoreView { state: "Working", result: "None".into(), progress: 50, end: None }
            }
            RestoreKind::External { ended: Some((end, result)), .. } => {
                RestoreView { state: "Stopped", result: result.clone(), progress: 100, end: Some(*end) }
            }
            RestoreKind::Restore { duration, result } => {
                let elapsed = now.saturating_duration_since(self.created).as_secs_f64();
                let total = duration.as_secs_f64().max(0.001);
                let fraction = elapsed / total;
                let (state, progress) = match fraction {
                    f if f < 0.1 => ("Starting", 0),
                    f if f < 0.8 => ("Working", (((f - 0.1) / 0.7) * 100.0).clamp(1.0, 99.0) as i64),
                    f if f < 1.0 => ("Stopping", 100),
                    _ => ("Stopped", 100),
                };
                let stopped = state == "Stopped";
                RestoreView {
                    state,
                    // What EM reports as Result while running is undocumented (docs/em-api-notes.md §8.4);
                    // we say `None`, as VBR does internally, to keep clients honest.
                    result: if stopped { result.clone() } else { "None".into() },
                    progress,
                    end: stopped.then(|| self.created_wall + *duration),
                }
            }
        }
    }
}

/// Percent-encodes one URL path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `yyyy-MM-dd HH:mm:ss`, as in restore point names.
fn name_time(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.trim_end_matches('Z').replace('T', " ")
}

pub(crate) struct World {
    pub base: String,
    pub timings: Timings,
    pub inventory: Inventory,
    pub faults: Vec<Fault>,
    pub log: Vec<LoggedRequest>,
    next_seq: u64,
    sessions: HashMap<String, LogonSession>,
    tasks: Vec<SimTask>,
    mounts: Vec<SimMount>,
    restore_sessions: Vec<SimRestoreSession>,
    restored_files: Vec<RestoredFile>,
    /// `(logon session, point id)` pairs whose catalog `guestfs` a browse has opened.
    browsed: HashSet<(String, String)>,
}

impl World {
    pub(crate) fn new(inventory: Inventory, timings: Timings, faults: Vec<Fault>) -> World {
        World {
            base: String::new(),
            timings,
            inventory,
            faults,
            log: Vec::new(),
            next_seq: 0,
            sessions: HashMap::new(),
            tasks: Vec::new(),
            mounts: Vec::new(),
            restore_sessions: Vec::new(),
            restored_files: Vec::new(),
            browsed: HashSet::new(),
        }
    }

    // ---- time -------------------------------------------------------------------------------

    /// Advances the simulation to `now`: idle sessions expire, tasks that stopped running
    /// apply their effects.
    pub(crate) fn tick(&mut self, now: Instant) {
        let idle = self.timings.session_idle_timeout;
        for s in self.sessions.values_mut() {
            if now.saturating_duration_since(s.last_seen) > idle {
                s.expired = true;
            }
        }
        let running = self.timings.task_running;
        for i in 0..self.tasks.len() {
            let task = &self.tasks[i];
            if task.outcome.is_some() || task.stuck || now.saturating_duration_since(task.created) < running {
                continue;
            }
            let task = &mut self.tasks[i];
            let effect = task.effect.take();
            let session = task.session.clone();
            // Effects happen when the task stops running, not when someone next looks.
            let at = task.created + running;
            let outcome = match (&task.fail, effect) {
                (Some(message), _) => (Vec::new(), message.clone()),
                (None, None) => (Vec::new(), "Ok".to_owned()),
                (None, Some(effect)) => self.apply(effect, &session, at, now),
            };
            self.tasks[i].outcome = Some(outcome);
        }
    }

    fn apply(
        &mut self,
        effect: Effect,
        session: &str,
        at: Instant,
        now: Instant,
    ) -> (Vec<crate::render::Link>, String) {
        match effect {
            Effect::Mount { kind, point_id } => {
                let Some(point) = self.inventory.point(kind, &point_id).cloned() else {
                    return (Vec::new(), "Restore point no longer exists".into());
                };
                let id = self.mounts.iter().filter(|m| m.point_id == point_id).map(|m| m.id).max().unwrap_or(0) + 1;
                let rs = self.new_restore_session(point.clone(), RestoreKind::Mount { ended: None }, at, now);
                self.mounts.push(SimMount {
                    kind,
                    point_id: point_id.clone(),
                    id,
                    session: session.to_owned(),
                    vm: point.vm.clone(),
                    restore_session: rs,
                });
                // As documented (docs/em-api-notes.md §4.2), even a replica mount's task links with
                // Type="VmRestorePointMount" under /vmRestorePoints/.
                let mut related = link(
                    "Related",
                    Some("VmRestorePointMount"),
                    format!("{}/vmRestorePoints/{point_id}/mounts/{id}", self.base),
                );
                related.name = Some(format!("{point_id}@{id}"));
                (vec![related], "Ok".into())
            }
            Effect::Browse { vm, point_id } => {
                let guestfs = format!("{}/catalog/vms/{}/vmRestorePoints/{point_id}/guestfs/", self.base, seg(&vm));
                self.browsed.insert((session.to_owned(), point_id));
                (vec![link("Down", Some("FileSystemItemsList"), guestfs)], "Ok".into())
            }
            Effect::CatalogRestore { vm, point, path, result } => {
                let kind = RestoreKind::Restore {
                    duration: self.timings.restore_duration,
                    result: result.unwrap_or_else(|| "Success".into()),
                };
                let rs = self.new_restore_session(point, kind, at, now);
                self.restored_files.push(RestoredFile { vm, path });
                let mut related = link(
                    "Related",
                    Some("RestoreSession"),
                    format!("{}/restoreSessions/{rs}?format=Entity", self.base),
                );
                related.name = Some("Restore job session".into());
                (vec![related], "Restore operations started successfully.".into())
            }
            Effect::DownloadRestore { mount_href, path } => {
                let encoded: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(seg).collect();
                let href = format!("{mount_href}/{}?action=download", encoded.join("/"));
                (vec![link("Download", None, href)], "Ok".into())
            }
        }
    }

    /// A restore session that started at `at` (which may be before `now`).
    fn new_restore_session(&mut self, point: Point, kind: RestoreKind, at: Instant, now: Instant) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.restore_sessions.push(SimRestoreSession {
            id: id.clone(),
            vm: point.vm.clone(),
            point,
            created: at,
            created_wall: SystemTime::now() - now.saturating_duration_since(at),
            kind,
        });
        id
    }
}
