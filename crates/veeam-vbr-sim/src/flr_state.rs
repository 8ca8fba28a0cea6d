//! Mount, session and task transitions on [`State`].

use std::time::SystemTime;

use uuid::Uuid;

use crate::inventory::GuestOs;
use crate::state::{Mount, Session, State, Task, TaskKind};

/// What a new task does.
pub struct TaskSpec {
    pub kind: TaskKind,
    pub session_id: Uuid,
    pub paths: Vec<String>,
    pub restore_type: Option<String>,
    /// Ends `Failed` (a `task_fail` fault).
    pub fails: bool,
}

impl State {
    /// Creates a mount in state `Mounting` and its FLR session in `Starting`; `None` if the
    /// point does not exist.
    pub fn new_mount(
        &mut self,
        session_id: Option<Uuid>,
        point_id: Uuid,
        initiator: &str,
        auto_unmount: Option<u32>,
        now: SystemTime,
    ) -> Option<Uuid> {
        let (vm, _) = self.point(point_id)?;
        let (vm_name, os) = (vm.name.clone(), vm.os);
        let id = session_id.unwrap_or_else(Uuid::new_v4);
        let usn = self.next_usn();
        self.mounts.insert(
            id,
            Mount {
                session_id: id,
                restore_point_id: point_id,
                vm: vm_name.clone(),
                os,
                created: now,
                last_activity: now,
                auto_unmount_minutes: auto_unmount,
                initiator: initiator.to_string(),
                mount_errors: Vec::new(),
                state: "Mounting",
                stopped_by: None,
                reason: None,
            },
        );
        // VBR has distinct session types for the two guest families (ESessionType lists both).
        let session_type = match os {
            GuestOs::Windows => "FileLevelRestore",
            GuestOs::Linux => "LinuxFileLevelRestore",
        };
        self.sessions.push(Session {
            id,
            name: vm_name,
            session_type,
            created: now,
            ended: None,
            state: "Starting",
            result: "None",
            message: String::new(),
            canceled: false,
            initiated_by: initiator.to_string(),
            resource_id: point_id,
            usn,
        });
        Some(id)
    }

    /// The mount is usable: session `Working`.
    pub fn mark_mounted(&mut self, id: Uuid, errors: Vec<(String, String)>, now: SystemTime) {
        if let Some(m) = self.mounts.get_mut(&id) {
            m.state = "Mounted";
            m.mount_errors = errors;
            m.last_activity = now;
        }
        let usn = self.next_usn();
        if let Some(s) = self.session_mut(id) {
            s.state = "Working";
            s.usn = usn;
        }
    }

    /// Unmounts and stops the session; running tasks of the session are cancelled.
    pub fn stop_mount(
        &mut self,
        id: Uuid,
        by: &str,
        result: &'static str,
        message: &str,
        canceled: bool,
        now: SystemTime,
    ) {
        if let Some(m) = self.mounts.get_mut(&id) {
            m.state = "Unmounted";
            m.stopped_by = Some(by.to_string());
        }
        for t in self.tasks.values_mut() {
            if t.session_id == id && t.cancelled_at.is_none() && t.status(now).state != "Stopped" {
                t.cancelled_at = Some(now);
            }
        }
        let usn = self.next_usn();
        if let Some(s) = self.session_mut(id) {
            s.state = "Stopped";
            s.result = result;
            s.message = message.to_string();
            s.canceled = canceled;
            s.ended = Some(now);
            s.usn = usn;
        }
    }

    /// A mount that is `Mounted` (usable), by session id.
    pub fn live_mount(&self, id: Uuid) -> Option<&Mount> {
        self.mounts.get(&id).filter(|m| m.state == "Mounted")
    }

    /// Resets the auto-unmount clock.
    pub fn touch(&mut self, id: Uuid, now: SystemTime) {
        if let Some(m) = self.mounts.get_mut(&id) {
            m.last_activity = now;
        }
    }

    /// Creates a task on a mount.
    pub fn new_task(&mut self, spec: TaskSpec, initiator: &str, now: SystemTime) -> Uuid {
        let TaskSpec { kind, session_id, paths, restore_type, fails } = spec;
        let id = Uuid::new_v4();
        let duration = self.timings.task_duration;
        self.tasks.insert(
            id,
            Task {
                id,
                kind,
                session_id,
                created: now,
                duration,
                fails,
                cancelled_at: None,
                paths,
                restore_type,
                finalized: false,
                initiator: initiator.to_string(),
            },
        );
        id
    }
}
