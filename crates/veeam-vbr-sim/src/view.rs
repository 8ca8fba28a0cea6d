//! [`StateView`]: a serialisable snapshot of the simulator for tests (`SimServer::state()`,
//! `GET /sim/state`).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::state::State;
use crate::timefmt;

/// One FLR mount, live or ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MountView {
    pub session_id: Uuid,
    pub restore_point_id: Uuid,
    pub vm: String,
    /// `Mounting`, `Mounted` or `Unmounted`.
    pub state: String,
    pub initiator: String,
    pub created: String,
    pub last_activity: String,
    pub auto_unmount_minutes: Option<u32>,
    /// Who unmounted it: a user name, or `autoUnmount`.
    pub stopped_by: Option<String>,
}

/// One access token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub user: String,
    pub issued: String,
    pub expires: String,
    pub live: bool,
}

/// One task.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub id: Uuid,
    pub kind: String,
    pub session_id: Uuid,
    pub state: String,
    pub progress_percent: u32,
    pub result: String,
    pub paths: Vec<String>,
    pub initiator: String,
}

/// One session.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: Uuid,
    pub session_type: String,
    pub state: String,
    pub result: String,
    pub initiated_by: String,
    pub created: String,
    pub ended: Option<String>,
}

/// One item restored to the original location.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoredView {
    pub vm: String,
    pub path: String,
    pub content: String,
    pub restore_type: String,
    pub session_id: Uuid,
    pub task_id: Uuid,
    pub restore_point_id: Uuid,
}

/// The whole snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateView {
    /// Every mount ever made (filter on `state == "Mounted"` for the live ones).
    pub mounts: Vec<MountView>,
    pub tokens_issued: u64,
    pub tokens_live: usize,
    pub tokens: Vec<TokenView>,
    pub tasks: Vec<TaskView>,
    pub sessions: Vec<SessionView>,
    pub restored: Vec<RestoredView>,
}

impl StateView {
    /// Live (mounted) FLR mounts only.
    pub fn live_mounts(&self) -> Vec<&MountView> {
        self.mounts.iter().filter(|m| m.state == "Mounted").collect()
    }
}

impl State {
    pub fn view(&self) -> StateView {
        let now = SystemTime::now();
        let mounts = self
            .mounts
            .values()
            .map(|m| MountView {
                session_id: m.session_id,
                restore_point_id: m.restore_point_id,
                vm: m.vm.clone(),
                state: m.state.to_string(),
                initiator: m.initiator.clone(),
                created: timefmt::format(m.created),
                last_activity: timefmt::format(m.last_activity),
                auto_unmount_minutes: m.auto_unmount_minutes,
                stopped_by: m.stopped_by.clone(),
            })
            .collect();
        let tokens: Vec<TokenView> = self
            .access
            .values()
            .map(|t| TokenView {
                user: t.user.clone(),
                issued: timefmt::format(t.issued),
                expires: timefmt::format(t.expires),
                live: !t.revoked && now < t.expires,
            })
            .collect();
        let tasks = self
            .tasks
            .values()
            .map(|t| {
                let s = t.status(now);
                TaskView {
                    id: t.id,
                    kind: format!("{:?}", t.kind),
                    session_id: t.session_id,
                    state: s.state.into(),
                    progress_percent: s.progress,
                    result: s.result.into(),
                    paths: t.paths.clone(),
                    initiator: t.initiator.clone(),
                }
            })
            .collect();
        let sessions = self
            .sessions
            .iter()
            .map(|s| SessionView {
                id: s.id,
                session_type: s.session_type.into(),
                state: s.state.into(),
                result: s.result.into(),
                initiated_by: s.initiated_by.clone(),
                created: timefmt::format(s.created),
                ended: s.ended.map(timefmt::format),
            })
            .collect();
        let restored = self
            .restored
            .iter()
            .map(|r| RestoredView {
                vm: r.vm.clone(),
                path: r.path.clone(),
                content: r.content.clone(),
                restore_type: r.restore_type.clone(),
                session_id: r.session_id,
                task_id: r.task_id,
                restore_point_id: r.restore_point_id,
            })
            .collect();
        StateView {
            mounts,
            tokens_issued: self.tokens_issued,
            tokens_live: tokens.iter().filter(|t| t.live).count(),
            tokens,
            tasks,
            sessions,
            restored,
        }
    }
}
