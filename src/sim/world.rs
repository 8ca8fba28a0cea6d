//! The simulated EM's state and semantics, independent of HTTP.
//!
//! Time advances lazily: every request first calls [`World::tick`], which moves tasks and
//! restore sessions along their timelines and applies the effects of tasks that stopped running.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::inventory::{Inventory, Point, VmSpec, path_key};
use super::render::{Body, El, link};
use crate::em::{Endpoint, OsKind, PointKind};

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

/// A fault to inject. `endpoint` limits it to one kind of call (any call when absent); `times`
/// limits how often it fires (forever when absent). Unknown keys are errors.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "FaultFields")]
pub struct Fault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    #[serde(flatten)]
    pub kind: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

/// `Fault` as read: serde's `deny_unknown_fields` does not combine with `flatten`, so the keys
/// left after `endpoint` and `times` are decoded strictly as a [`FaultKind`] on their own.
#[derive(Deserialize)]
struct FaultFields {
    #[serde(default)]
    endpoint: Option<Endpoint>,
    #[serde(default)]
    times: Option<u32>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl TryFrom<FaultFields> for Fault {
    type Error = String;

    fn try_from(f: FaultFields) -> Result<Fault, String> {
        let kind = serde_json::from_value(serde_json::Value::Object(f.rest)).map_err(|e| e.to_string())?;
        Ok(Fault { endpoint: f.endpoint, kind, times: f.times })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// Delay the answer.
    Latency { ms: u64 },
    /// Answer with this HTTP status and an EM `Error` body.
    Status {
        status: u16,
        #[serde(default)]
        message: Option<String>,
    },
    /// Tasks created by the call end with `Result Success="false"`.
    TaskFail {
        #[serde(default)]
        message: Option<String>,
    },
    /// Tasks created by the call never leave `Running`.
    TaskStuck {},
    /// Restore sessions created by the call end with this result (`Failed` or `Warning`).
    RestoreResult { result: String },
    /// The caller's logon session expires before the call is handled.
    ExpireSession {},
    /// The body is cut in half (still a 2xx).
    Malformed {},
    /// The connection is dropped mid-answer.
    Reset {},
}

impl FaultKind {
    /// Faults applied when a request arrives, as opposed to when a task or session is created.
    pub(crate) fn is_request_level(&self) -> bool {
        matches!(
            self,
            FaultKind::Latency { .. }
                | FaultKind::Status { .. }
                | FaultKind::ExpireSession {}
                | FaultKind::Malformed {}
                | FaultKind::Reset {}
        )
    }
}

/// One entry of the request log served at `/sim/requests`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub endpoint: Option<Endpoint>,
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
    outcome: Option<(Vec<super::render::Link>, String)>,
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
    fn view(&self, now: Instant) -> RestoreView {
        match &self.kind {
            RestoreKind::Mount { ended: None } => {
                RestoreView { state: "Working", result: "None".into(), progress: 0, end: None }
            }
            RestoreKind::Mount { ended: Some(end) } => {
                RestoreView { state: "Stopped", result: "Success".into(), progress: 100, end: Some(*end) }
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
                    // What EM reports as Result while running is undocumented (em-api.md §8 q4);
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

    // ---- faults and the request log -------------------------------------------------------

    /// Takes the faults that apply to this request (or to what it creates), counting down `times`.
    pub(crate) fn take_faults(&mut self, endpoint: Option<Endpoint>, request_level: bool) -> Vec<FaultKind> {
        let mut fired = Vec::new();
        for fault in &mut self.faults {
            let matches = fault.endpoint.is_none_or(|e| Some(e) == endpoint)
                && fault.kind.is_request_level() == request_level
                && fault.times != Some(0);
            if matches {
                if let Some(times) = &mut fault.times {
                    *times -= 1;
                }
                fired.push(fault.kind.clone());
            }
        }
        self.faults.retain(|f| f.times != Some(0));
        fired
    }

    pub(crate) fn record(
        &mut self,
        method: &str,
        path: &str,
        endpoint: Option<Endpoint>,
        status: u16,
        token: Option<&str>,
    ) {
        self.next_seq += 1;
        let session = token.and_then(|t| self.sessions.values().find(|s| s.token == t)).map(|s| s.id.clone());
        self.log.push(LoggedRequest {
            seq: self.next_seq,
            method: method.to_owned(),
            path: path.to_owned(),
            endpoint,
            status,
            session,
        });
        // Bounded: a long demo run must not grow without limit.
        if self.log.len() > 10_000 {
            self.log.drain(..1_000);
        }
    }

    pub(crate) fn expire_by_token(&mut self, token: &str) {
        for s in self.sessions.values_mut().filter(|s| s.token == token) {
            s.expired = true;
        }
    }

    pub(crate) fn expire_all(&mut self) -> usize {
        let mut n = 0;
        for s in self.sessions.values_mut().filter(|s| !s.expired) {
            s.expired = true;
            n += 1;
        }
        n
    }

    /// What an operator does in the Veeam console for a mount the API can no longer reach:
    /// stops the restore sessions of mounts whose logon session is gone. Returns how many.
    pub(crate) fn release_orphans(&mut self) -> usize {
        let dead: Vec<usize> = (0..self.mounts.len())
            .filter(|&i| self.sessions.get(&self.mounts[i].session).is_none_or(|s| s.expired))
            .collect();
        for &i in dead.iter().rev() {
            let mount = self.mounts.remove(i);
            if let Some(rs) = self.restore_sessions.iter_mut().find(|r| r.id == mount.restore_session) {
                rs.kind = RestoreKind::Mount { ended: Some(SystemTime::now()) };
            }
        }
        dead.len()
    }

    pub(crate) fn state(&mut self, now: Instant) -> StateView {
        self.tick(now);
        let alive = |w: &World, id: &str| w.sessions.get(id).is_some_and(|s| !s.expired);
        StateView {
            sessions: self
                .sessions
                .values()
                .map(|s| SessionView { id: s.id.clone(), user: s.user.clone(), alive: !s.expired })
                .collect(),
            mounts: self
                .mounts
                .iter()
                .map(|m| MountView {
                    vm: m.vm.clone(),
                    kind: m.kind,
                    point_id: m.point_id.clone(),
                    mount_id: m.id,
                    session: m.session.clone(),
                    session_alive: alive(self, &m.session),
                })
                .collect(),
            restore_sessions: self
                .restore_sessions
                .iter()
                .map(|r| {
                    let v = r.view(now);
                    RestoreSessionView {
                        id: r.id.clone(),
                        vm: r.vm.clone(),
                        state: v.state.to_owned(),
                        result: v.result,
                        progress: v.progress,
                    }
                })
                .collect(),
            restored_files: self.restored_files.clone(),
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
    ) -> (Vec<super::render::Link>, String) {
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
                // As documented (em-api.md §4.2), even a replica mount's task links with
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

    // ---- sessions -----------------------------------------------------------------------------

    pub(crate) fn logon(&mut self, user: &str, password: &str, now: Instant) -> Result<(String, Body), SimError> {
        let known = self.inventory.users.iter().any(|u| u.name == user && u.password == password);
        if !known {
            return Err(err(401, "Authentication failed"));
        }
        let id = uuid::Uuid::new_v4().to_string();
        // Real EM tokens are observed to be base64 of the session id; clients must not rely on it.
        let token = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, id.as_bytes());
        self.sessions.insert(
            id.clone(),
            LogonSession {
                id: id.clone(),
                token: token.clone(),
                user: user.to_owned(),
                last_seen: now,
                expired: false,
                next_task: 0,
            },
        );
        Ok((token, self.logon_body(&id)))
    }

    fn logon_body(&self, id: &str) -> Body {
        let s = &self.sessions[id];
        let base = &self.base;
        Body::Entity(
            El::new("LogonSession")
                .attr("Type", "LogonSession")
                .attr("Href", format!("{base}/logonSessions/{id}"))
                .links(vec![
                    link("Up", Some("EnterpriseManager"), format!("{base}/")),
                    link("Down", Some("VmRestorePointReferenceList"), format!("{base}/vmRestorePoints")),
                    link("Down", Some("VmReplicaPointReferenceList"), format!("{base}/vmReplicaPoints")),
                    link("Down", Some("CatalogVmReferenceList"), format!("{base}/catalog/vms")),
                    link("Down", Some("RestoreSessionReferenceList"), format!("{base}/restoreSessions")),
                    link("Down", Some("TaskList"), format!("{base}/tasks")),
                    link("Delete", None, format!("{base}/logonSessions/{id}")),
                ])
                .field("UserName", s.user.clone())
                .field("SessionId", id),
        )
    }

    /// Checks a token: the logon session id, or 401 when unknown or expired.
    pub(crate) fn authenticate(&mut self, token: Option<&str>, now: Instant) -> Result<String, SimError> {
        let token = token.ok_or_else(|| err(401, "Authorization header has been expected but not found"))?;
        let session = self
            .sessions
            .values_mut()
            .find(|s| s.token == token)
            .ok_or_else(|| err(401, "Authorization token is not valid"))?;
        if session.expired {
            return Err(err(401, "Logon session has expired"));
        }
        session.last_seen = now;
        Ok(session.id.clone())
    }

    pub(crate) fn get_logon_session(&self, caller: &str, id: &str) -> Reply {
        if caller != id {
            return Err(err(404, format!("Logon session {id} not found")));
        }
        Ok(self.logon_body(id))
    }

    pub(crate) fn list_logon_sessions(&self, caller: &str) -> Reply {
        let Body::Entity(own) = self.logon_body(caller) else { unreachable!("logon_body is an entity") };
        Ok(Body::Collection { plural: "LogonSessions".into(), items: vec![own] })
    }

    /// Log-off. What happens to the session's mounts is undocumented (em-api.md §8 q2); here they
    /// stay mounted and become unreachable, the worst case.
    pub(crate) fn logoff(&mut self, caller: &str, id: &str) -> Result<(), SimError> {
        if caller != id {
            return Err(err(404, format!("Logon session {id} not found")));
        }
        if let Some(s) = self.sessions.get_mut(id) {
            s.expired = true;
        }
        Ok(())
    }

    // ---- restore points -------------------------------------------------------------------

    fn point_entity(&self, p: &Point, entity_name: &str) -> El {
        let base = &self.base;
        let coll = collection(p.kind);
        let (mount, mounts) = match p.kind {
            PointKind::Backup => ("VmRestorePointMount", "VmRestorePointMountList"),
            PointKind::Replica => ("VmReplicaPointMount", "VmReplicaPointMountList"),
        };
        let name = format!("{}@{}", p.vm, name_time(p.created));
        let mut el = El::new(entity_name)
            .attr("Type", point_type(p.kind))
            .attr("Href", format!("{base}/{coll}/{}?format=Entity", p.id))
            .attr("Name", name.clone())
            .attr("UID", format!("urn:veeam:{}:{}", point_type(p.kind), p.id))
            .attr("VmDisplayName", p.vm.clone());
        let mut links = vec![
            link(
                "Alternate",
                Some(if p.kind == PointKind::Backup { "VmRestorePointReference" } else { "VmReplicaPointReference" }),
                format!("{base}/{coll}/{}", p.id),
            ),
            link("Down", Some(mounts), format!("{base}/{coll}/{}/mounts", p.id)),
            link("Create", Some(mount), format!("{base}/{coll}/{}/mounts", p.id)),
        ];
        links[0].name = Some(name);
        el = el
            .links(links)
            .field("CreationTimeUTC", rfc3339(p.created))
            .field("Algorithm", "Incremental")
            .field("PointType", if p.kind == PointKind::Backup { "Increment" } else { "Snapshot" });
        if p.kind == PointKind::Backup {
            el = el.field(
                "HierarchyObjRef",
                format!("urn:VMware:Vm:00000000-0000-0000-0000-000000000001.vm-{}", &p.id[..8]),
            );
        }
        el
    }

    pub(crate) fn point(&self, kind: PointKind, id: &str) -> Reply {
        let p = self.inventory.point(kind, id).ok_or_else(|| err(404, format!("Restore point {id} not found")))?;
        Ok(Body::Entity(self.point_entity(p, point_type(kind))))
    }

    /// `GET /query`: restore points, replica points and restore sessions.
    pub(crate) fn query(&self, params: &HashMap<String, String>, now: Instant) -> Reply {
        let get = |k: &str| params.iter().find(|(key, _)| key.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
        let filter = parse_filter(get("filter").unwrap_or(""))?;
        let entities = get("format").is_some_and(|f| f.eq_ignore_ascii_case("Entities"));
        let qtype = get("type").ok_or_else(|| err(400, "Query type is not specified"))?;
        let (sort_field, descending) = match (get("sortDesc"), get("sortAsc")) {
            (Some(f), _) => (Some(f), true),
            (None, Some(f)) => (Some(f), false),
            _ => (None, false),
        };
        if let Some(f) = sort_field.filter(|f| !f.eq_ignore_ascii_case("CreationTime")) {
            return Err(err(400, format!("Sorting by {f} is not simulated")));
        }
        let mut rows: Vec<(SystemTime, El, El)> = match qtype {
            t if t.eq_ignore_ascii_case("VmRestorePoint") || t.eq_ignore_ascii_case("VmReplicaPoint") => {
                let kind =
                    if t.eq_ignore_ascii_case("VmRestorePoint") { PointKind::Backup } else { PointKind::Replica };
                let mut rows = Vec::new();
                for p in self.inventory.points.iter().filter(|p| p.kind == kind) {
                    let fields = [("vmdisplayname", p.vm.clone()), ("vmname", p.vm.clone()), ("uid", p.id.clone())];
                    if matches(&filter, &fields)? {
                        let entity = self.point_entity(p, point_type(kind));
                        let reference = El::new("Ref")
                            .attr("Type", format!("{}Reference", point_type(kind)))
                            .attr("Href", format!("{}/{}/{}", self.base, collection(kind), p.id))
                            .attr("Name", format!("{}@{}", p.vm, name_time(p.created)))
                            .attr("UID", format!("urn:veeam:{}:{}", point_type(kind), p.id));
                        rows.push((p.created, entity, reference));
                    }
                }
                rows
            }
            t if t.eq_ignore_ascii_case("RestoreSession") => {
                let mut rows = Vec::new();
                for r in &self.restore_sessions {
                    let v = r.view(now);
                    let fields = [
                        ("vmdisplayname", r.vm.clone()),
                        ("type", "FileLevelRestore".to_owned()),
                        ("jobtype", "FileLevelRestore".to_owned()),
                        ("state", v.state.to_owned()),
                        ("result", v.result.clone()),
                    ];
                    if matches(&filter, &fields)? {
                        let reference = El::new("Ref")
                            .attr("Type", "RestoreSessionReference")
                            .attr("Href", format!("{}/restoreSessions/{}", self.base, r.id));
                        rows.push((r.created_wall, self.restore_session_entity(r, now), reference));
                    }
                }
                rows
            }
            other => return Err(err(400, format!("Query type {other} is not simulated"))),
        };
        if sort_field.is_some() {
            rows.sort_by_key(|(t, _, _)| *t);
            if descending {
                rows.reverse();
            }
        }
        let total = rows.len();
        let page_size: usize = get("pageSize").and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(total.max(1));
        let page: usize = get("page").and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(1);
        let rows: Vec<_> = rows.into_iter().skip((page - 1) * page_size).take(page_size).collect();
        let paging = El::new("PagingInfo")
            .attr("PageNum", page as i64)
            .attr("PageSize", page_size as i64)
            .attr("PagesCount", total.div_ceil(page_size) as i64);
        let plural = match qtype.to_ascii_lowercase().as_str() {
            "vmrestorepoint" => "VmRestorePoints",
            "vmreplicapoint" => "VmReplicaPoints",
            _ => "RestoreSessions",
        };
        let result = if entities {
            El::new("QueryResult").node(El::new("Entities").query_list(plural, rows.into_iter().map(|r| r.1).collect()))
        } else {
            El::new("QueryResult").query_list("Refs", rows.into_iter().map(|r| r.2).collect())
        };
        Ok(Body::Entity(result.node(paging)))
    }

    // ---- mounts -------------------------------------------------------------------------------

    fn next_task_id(&mut self, session: &str) -> String {
        let s = self.sessions.get_mut(session).expect("authenticated session exists");
        s.next_task += 1;
        format!("task-{}", s.next_task)
    }

    fn create_task(
        &mut self,
        session: &str,
        operation: &'static str,
        effect: Effect,
        faults: &[FaultKind],
        now: Instant,
    ) -> Body {
        let id = self.next_task_id(session);
        let mut task = SimTask {
            session: session.to_owned(),
            id: id.clone(),
            operation,
            created: now,
            stuck: false,
            fail: None,
            effect: Some(effect),
            outcome: None,
        };
        for fault in faults {
            match fault {
                FaultKind::TaskStuck {} => task.stuck = true,
                FaultKind::TaskFail { message } => {
                    task.fail = Some(message.clone().unwrap_or_else(|| format!("{operation} failed (injected fault)")))
                }
                _ => {}
            }
        }
        self.tasks.push(task);
        self.task_body(self.tasks.len() - 1, now)
    }

    pub(crate) fn start_mount(
        &mut self,
        session: &str,
        kind: PointKind,
        point_id: &str,
        os: Option<OsKind>,
        faults: &[FaultKind],
        now: Instant,
    ) -> Reply {
        let point = self
            .inventory
            .point(kind, point_id)
            .ok_or_else(|| err(404, format!("Restore point {point_id} not found")))?;
        let vm = self.inventory.vm(&point.vm).expect("points belong to known VMs");
        // EM mounts Windows by default; mounting a Linux guest as Windows finds no file system.
        if os.unwrap_or(OsKind::Windows) != vm.os {
            let effect = Effect::Mount { kind, point_id: point_id.to_owned() };
            let mut faults = faults.to_vec();
            faults.push(FaultKind::TaskFail {
                message: Some(format!("Guest OS of {} is not {:?}", vm.name, os.unwrap_or(OsKind::Windows))),
            });
            return Ok(self.create_task(session, "MountRestorePoint", effect, &faults, now));
        }
        let effect = Effect::Mount { kind, point_id: point_id.to_owned() };
        Ok(self.create_task(session, "MountRestorePoint", effect, faults, now))
    }

    fn own_mount(&self, key: &MountKey<'_>) -> Result<usize, SimError> {
        let MountKey { session, kind, point_id, mount_id } = *key;
        // Mounts of other logon sessions are "inaccessible" (em-api.md §4.3); the status EM uses
        // is undocumented (§8 q1). We answer 404 with an Error body.
        self.mounts
            .iter()
            .position(|m| {
                m.kind == kind && m.point_id == point_id && m.id.to_string() == mount_id && m.session == session
            })
            .ok_or_else(|| err(404, format!("Mount point {mount_id} of restore point {point_id} not found")))
    }

    fn mount_entity(&self, m: &SimMount) -> El {
        let name = match m.kind {
            PointKind::Backup => "VmRestorePointMount",
            PointKind::Replica => "VmReplicaPointMount",
        };
        let href = format!("{}/{}/{}/mounts/{}", self.base, collection(m.kind), m.point_id, m.id);
        let vm = self.inventory.vm(&m.vm).expect("mounts belong to known VMs");
        let roots = vm
            .roots()
            .into_iter()
            .map(|root| {
                El::new("DirectoryEntry")
                    .attr("Type", "DirectoryEntry")
                    .attr("Href", format!("{href}/{}", seg(&root)))
                    .field("Path", root.clone())
                    .field("Name", root)
            })
            .collect();
        El::new(name)
            .attr("Type", name)
            .attr("Href", href.clone())
            .links(vec![link("Delete", Some(name), href)])
            .list("FSRoots", roots)
    }

    pub(crate) fn mount(&self, key: &MountKey<'_>) -> Reply {
        let i = self.own_mount(key)?;
        Ok(Body::Entity(self.mount_entity(&self.mounts[i])))
    }

    pub(crate) fn mounts(&self, session: &str, kind: PointKind, point_id: &str) -> Reply {
        if self.inventory.point(kind, point_id).is_none() {
            return Err(err(404, format!("Restore point {point_id} not found")));
        }
        let items = self
            .mounts
            .iter()
            .filter(|m| m.kind == kind && m.point_id == point_id && m.session == session)
            .map(|m| self.mount_entity(m))
            .collect();
        let plural = match kind {
            PointKind::Backup => "VmRestorePointMounts",
            PointKind::Replica => "VmReplicaPointMounts",
        };
        Ok(Body::Collection { plural: plural.into(), items })
    }

    pub(crate) fn delete_mount(&mut self, key: &MountKey<'_>) -> Result<(), SimError> {
        let i = self.own_mount(key)?;
        let mount = self.mounts.remove(i);
        if let Some(rs) = self.restore_sessions.iter_mut().find(|r| r.id == mount.restore_session) {
            rs.kind = RestoreKind::Mount { ended: Some(SystemTime::now()) };
        }
        Ok(())
    }

    fn mount_vm(&self, key: &MountKey<'_>) -> Result<(String, &VmSpec), SimError> {
        let i = self.own_mount(key)?;
        let m = &self.mounts[i];
        let href = format!("{}/{}/{}/mounts/{}", self.base, collection(key.kind), key.point_id, key.mount_id);
        Ok((href, self.inventory.vm(&m.vm).expect("mounts belong to known VMs")))
    }

    /// `GET …/mounts/{id}/{path}?action=listAll|listDirs|listFiles`.
    pub(crate) fn browse(&self, key: &MountKey<'_>, path: &str, action: &str) -> Reply {
        let (mount_href, vm) = self.mount_vm(key)?;
        let listing = vm.list(path).ok_or_else(|| err(404, format!("Path {path} not found")))?;
        let dir_href = |name: &str| {
            let mut parts: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(seg).collect();
            parts.push(seg(name));
            format!("{mount_href}/{}", parts.join("/"))
        };
        let joined = |name: &str| format!("{}/{name}", path.trim_end_matches('/'));
        let want_dirs = !action.eq_ignore_ascii_case("listFiles");
        let want_files = !action.eq_ignore_ascii_case("listDirs");
        let dirs = if want_dirs {
            listing
                .directories
                .iter()
                .map(|d| {
                    El::new("DirectoryEntry")
                        .attr("Type", "DirectoryEntry")
                        .attr("Href", dir_href(d))
                        .field("Path", joined(d))
                        .field("Name", d.clone())
                })
                .collect()
        } else {
            Vec::new()
        };
        let files = if want_files {
            listing
                .files
                .iter()
                .map(|(f, size)| {
                    El::new("FileEntry")
                        .attr("Type", "FileEntry")
                        .attr("Href", dir_href(f))
                        .field("Path", joined(f))
                        .field("Name", f.clone())
                        .field("Size", *size as i64)
                        .field("Owner", "BUILTIN\\Administrators")
                        .field("ModifiedDateUTC", rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)))
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Body::Entity(
            El::new("FileSystemEntries")
                .attr("Href", format!("{}?action={action}", dir_href("").trim_end_matches('/')))
                .list("Files", files)
                .list("Directories", dirs),
        ))
    }

    pub(crate) fn start_file_restore(
        &mut self,
        key: &MountKey<'_>,
        path: &str,
        for_download: bool,
        faults: &[FaultKind],
        now: Instant,
    ) -> Reply {
        let (mount_href, vm) = self.mount_vm(key)?;
        if !for_download {
            return Err(err(501, "Only ForDirectDownload restores are simulated"));
        }
        if vm.file(path).is_none() {
            return Err(err(404, format!("File {path} not found")));
        }
        let effect = Effect::DownloadRestore { mount_href, path: path.to_owned() };
        Ok(self.create_task(key.session, "FileRestoreFromMountPoint", effect, faults, now))
    }

    /// `GET …/mounts/{id}/{path}?action=download`: the file's bytes.
    pub(crate) fn download(&self, key: &MountKey<'_>, path: &str) -> Result<Vec<u8>, SimError> {
        let (_, vm) = self.mount_vm(key)?;
        vm.file(path).map(|c| c.as_bytes().to_vec()).ok_or_else(|| err(404, format!("File {path} not found")))
    }

    // ---- catalog ----------------------------------------------------------------------------

    /// The catalog VM and one of its backup points, or 404.
    fn catalog_point(&self, vm_name: &str, point_id: &str) -> Result<(&VmSpec, Point), SimError> {
        let vm = self
            .inventory
            .vm(vm_name)
            .filter(|v| v.indexed)
            .ok_or_else(|| err(404, format!("Catalog VM {vm_name} not found")))?;
        let point = self
            .inventory
            .point(PointKind::Backup, point_id)
            .filter(|p| p.vm.eq_ignore_ascii_case(&vm.name))
            .cloned()
            .ok_or_else(|| err(404, format!("Restore point {point_id} of {vm_name} not found")))?;
        Ok((vm, point))
    }

    pub(crate) fn start_catalog_browse(
        &mut self,
        session: &str,
        vm_name: &str,
        point_id: &str,
        faults: &[FaultKind],
        now: Instant,
    ) -> Reply {
        let (vm, point) = self.catalog_point(vm_name, point_id)?;
        let effect = Effect::Browse { vm: vm.name.clone(), point_id: point.id.clone() };
        Ok(self.create_task(session, "BrowseVM", effect, faults, now))
    }

    /// Strict, as documented: `guestfs` resources "become available after" a browse of the
    /// point, so a restore without one in the same logon session answers 404.
    pub(crate) fn start_catalog_restore(
        &mut self,
        session: &str,
        vm_name: &str,
        point_id: &str,
        path: &str,
        faults: &[FaultKind],
        now: Instant,
    ) -> Reply {
        let (vm, point) = self.catalog_point(vm_name, point_id)?;
        if !self.browsed.contains(&(session.to_owned(), point.id.clone())) {
            return Err(err(
                404,
                format!(
                    "Guest file system of restore point {point_id} is not available: browse it first (?action=browse)"
                ),
            ));
        }
        if vm.file(path).is_none() {
            return Err(err(404, format!("File {path} not found in the catalog")));
        }
        let result = faults.iter().find_map(|f| match f {
            FaultKind::RestoreResult { result } => Some(result.clone()),
            _ => None,
        });
        let vm_name = vm.name.clone();
        let effect = Effect::CatalogRestore { vm: vm_name, point, path: path_key(path).join("/"), result };
        Ok(self.create_task(session, "RestoreFile", effect, faults, now))
    }

    // ---- tasks and restore sessions -----------------------------------------------------------

    fn task_body(&self, index: usize, now: Instant) -> Body {
        let t = &self.tasks[index];
        let href = format!("{}/tasks/{}", self.base, t.id);
        let elapsed = now.saturating_duration_since(t.created);
        let finished_at = self.timings.task_running + self.timings.task_collect_lag;
        let mut links = vec![link("Delete", Some("Task"), href.clone())];
        let mut el = El::new("Task").attr("Type", "Task").attr("Href", href);
        let (state, result) = match &t.outcome {
            None => ("Running", None),
            Some(_) if elapsed < finished_at => {
                ("OperationFinished", Some((t.fail.is_none(), "OperationFinished".to_owned())))
            }
            Some((outcome_links, message)) => {
                links.extend(outcome_links.iter().map(|l| super::render::Link {
                    rel: l.rel,
                    kind: l.kind,
                    href: l.href.clone(),
                    name: l.name.clone(),
                }));
                ("Finished", Some((t.fail.is_none(), message.clone())))
            }
        };
        el = el.links(links).field("TaskId", t.id.clone()).field("State", state).field("Operation", t.operation);
        if let Some((success, message)) = result {
            el = el.node(El::new("Result").attr("Success", success).field("Message", message));
        }
        Body::Entity(el)
    }

    fn own_task(&self, session: &str, id: &str) -> Result<usize, SimError> {
        // Tasks are visible only to the logon session that created them (em-api.md §6.1).
        self.tasks
            .iter()
            .position(|t| t.session == session && t.id == id)
            .ok_or_else(|| err(404, format!("Task {id} not found")))
    }

    pub(crate) fn task(&self, session: &str, id: &str, now: Instant) -> Reply {
        let i = self.own_task(session, id)?;
        Ok(self.task_body(i, now))
    }

    pub(crate) fn delete_task(&mut self, session: &str, id: &str) -> Result<(), SimError> {
        let i = self.own_task(session, id)?;
        self.tasks.remove(i);
        Ok(())
    }

    fn restore_session_entity(&self, r: &SimRestoreSession, now: Instant) -> El {
        let v = r.view(now);
        let base = &self.base;
        let name = format!("FLR_[{}]@{}", r.vm, name_time(r.created_wall));
        let mut alternate =
            link("Alternate", Some("RestoreSessionReference"), format!("{base}/restoreSessions/{}", r.id));
        alternate.name = Some(name.clone());
        let mut related = link(
            "Related",
            Some("VmRestorePointReference"),
            format!("{base}/{}/{}", collection(r.point.kind), r.point.id),
        );
        related.name = Some(format!("{}@{}", r.point.vm, name_time(r.point.created)));
        El::new("RestoreSession")
            .attr("Type", "RestoreSession")
            .attr("Href", format!("{base}/restoreSessions/{}?format=Entity", r.id))
            .attr("Name", name)
            .attr("UID", format!("urn:veeam:RestoreSession:{}", r.id))
            .attr("VmDisplayName", r.vm.clone())
            .links(vec![alternate, related])
            .field("JobType", "FileLevelRestore")
            .field("CreationTimeUTC", rfc3339(r.created_wall))
            .opt_field("EndTimeUTC", v.end.map(rfc3339))
            .field("State", v.state)
            .field("Result", v.result)
            .field("Progress", v.progress)
    }

    pub(crate) fn restore_session(&self, id: &str, now: Instant) -> Reply {
        // Restore sessions are EM-wide data, not scoped to a logon session.
        let r = self
            .restore_sessions
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| err(404, format!("Restore session {id} not found")))?;
        Ok(Body::Entity(self.restore_session_entity(r, now)))
    }

    pub(crate) fn entry_point(&self) -> Body {
        let base = &self.base;
        let versions = ["v1_5", "v1_6", "v1_7"]
            .iter()
            .map(|v| {
                El::new("SupportedVersion").attr("Name", *v).links(vec![link(
                    "Create",
                    Some("LogonSession"),
                    format!("{base}/sessionMngr/?v={v}"),
                )])
            })
            .collect();
        Body::Entity(
            El::new("EnterpriseManager")
                .links(vec![
                    link("Down", Some("LogonSessionList"), format!("{base}/logonSessions")),
                    link("Create", Some("LogonSession"), format!("{base}/sessionMngr/?v=latest")),
                ])
                .list("SupportedVersions", versions),
        )
    }
}

type Filter = Vec<(String, bool, String)>;

/// Parses `Field==Value;Field!="quoted ""value"""`. Only AND (`;`) is simulated.
fn parse_filter(filter: &str) -> Result<Filter, SimError> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = filter.chars().peekable();
    let mut raw_terms = Vec::new();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                current.push_str("\"\"");
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => raw_terms.push(std::mem::take(&mut current)),
            ',' | '(' | ')' if !quoted => {
                return Err(err(400, "OR and grouping are not simulated in filters"));
            }
            _ => current.push(c),
        }
    }
    if quoted {
        return Err(err(400, "Unterminated quote in filter"));
    }
    raw_terms.push(current);
    for term in raw_terms.into_iter().filter(|t| !t.trim().is_empty()) {
        let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
            (f, false, v)
        } else if let Some((f, v)) = term.split_once("==") {
            (f, true, v)
        } else {
            return Err(err(400, format!("Unsupported filter term {term}")));
        };
        let value = value.trim();
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(inner) => inner.replace("\"\"", "\""),
            // Unquoted: the server ignores spaces (em-api.md §3.1).
            None => value.replace(' ', ""),
        };
        terms.push((field.trim().to_ascii_lowercase(), equal, value));
    }
    Ok(terms)
}

fn matches(filter: &Filter, fields: &[(&str, String)]) -> Result<bool, SimError> {
    for (field, equal, value) in filter {
        let actual = fields
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, v)| v)
            .ok_or_else(|| err(400, format!("Filtering by {field} is not simulated")))?;
        if actual.eq_ignore_ascii_case(value) != *equal {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let f = parse_filter(r#"VmDisplayName=="my ""vm"";x";State!=Working"#).unwrap();
        assert_eq!(
            f,
            vec![("vmdisplayname".into(), true, "my \"vm\";x".into()), ("state".into(), false, "Working".into())]
        );
        assert!(parse_filter("a==1,b==2").is_err());
        assert!(parse_filter("a==\"x").is_err());
        assert!(parse_filter("a=1").is_err());
    }
}
