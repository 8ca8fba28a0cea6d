//! Fault injection and the request log.

use serde::{Deserialize, Serialize};

use super::*;
use crate::vocab::Call;

/// A fault to inject. `endpoint` limits it to one kind of call (any call when absent); `times`
/// limits how often it fires (forever when absent). Unknown keys are errors.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "FaultFields")]
pub struct Fault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Call>,
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
    endpoint: Option<Call>,
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

impl World {
    /// Takes the faults that apply to this request (or to what it creates), counting down `times`.
    pub(crate) fn take_faults(&mut self, endpoint: Option<Call>, request_level: bool) -> Vec<FaultKind> {
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
        endpoint: Option<Call>,
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
}
