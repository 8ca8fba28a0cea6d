//! Catalog browse and restore, tasks and restore sessions.

use super::*;
use crate::inventory::{VmSpec, path_key};
use crate::render::Link;

impl World {
    /// The catalog VM and one of its backup points, or 404.
    pub(super) fn catalog_point(&self, vm_name: &str, point_id: &str) -> Result<(&VmSpec, Point), SimError> {
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

    pub(super) fn task_body(&self, index: usize, now: Instant) -> Body {
        Body::Entity(self.task_entity(index, now))
    }

    fn task_entity(&self, index: usize, now: Instant) -> El {
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
                links.extend(outcome_links.iter().map(|l| Link {
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
        el
    }

    /// `GET /tasks`: the tasks "created … within the currently existing logon session".
    pub(crate) fn task_list(&self, session: &str, now: Instant) -> Reply {
        let items =
            (0..self.tasks.len()).filter(|i| self.tasks[*i].session == session).map(|i| self.task_entity(i, now));
        Ok(Body::Collection { plural: "Tasks".into(), items: items.collect() })
    }

    /// `GET /restoreSessions`: references to the sessions of the last 30 days, on every backup
    /// server, whoever started them.
    pub(crate) fn restore_session_list(&self) -> Reply {
        let refs = self.recent_restore_sessions().map(|r| {
            El::new("Ref")
                .attr("Type", "RestoreSessionReference")
                .attr("Href", format!("{}/restoreSessions/{}", self.base, r.id))
                .attr("Name", format!("FLR_[{}]@{}", r.vm, name_time(r.created_wall)))
                .attr("UID", format!("urn:veeam:RestoreSession:{}", r.id))
                .links(vec![link(
                    "Alternate",
                    Some("RestoreSession"),
                    format!("{}/restoreSessions/{}?format=Entity", self.base, r.id),
                )])
        });
        Ok(Body::References(refs.collect()))
    }

    /// `GET /catalog/vms`: the VMs whose guest files were indexed.
    pub(crate) fn catalog_vm_list(&self) -> Reply {
        let refs = self.inventory.vms.iter().filter(|v| v.indexed).map(|v| {
            El::new("Ref")
                .attr("Type", "CatalogVmReference")
                .attr("Href", format!("{}/catalog/vms/{}", self.base, seg(&v.name)))
                .attr("Name", v.name.clone())
        });
        Ok(Body::References(refs.collect()))
    }

    /// `GET /catalog/vms/{vm}/vmRestorePoints`: the indexed VM's backup points.
    pub(crate) fn catalog_point_list(&self, vm_name: &str) -> Reply {
        let vm = self
            .inventory
            .vm(vm_name)
            .filter(|v| v.indexed)
            .ok_or_else(|| err(404, format!("Catalog VM {vm_name} not found")))?;
        let refs =
            self.inventory.points.iter().filter(|p| p.kind == PointKind::Backup && p.vm.eq_ignore_ascii_case(&vm.name));
        let refs = refs.map(|p| {
            El::new("Ref")
                .attr("Type", "CatalogVmRestorePointReference")
                .attr("Href", format!("{}/catalog/vms/{}/vmRestorePoints/{}", self.base, seg(&vm.name), p.id))
                .attr("Name", format!("{}@{}", p.vm, name_time(p.created)))
                .attr("UID", format!("urn:veeam:CatalogVmRestorePoint:{}", p.id))
        });
        Ok(Body::References(refs.collect()))
    }

    pub(super) fn own_task(&self, session: &str, id: &str) -> Result<usize, SimError> {
        // Tasks are visible only to the logon session that created them (docs/em-api-notes.md §6.1).
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

    pub(super) fn restore_session_entity(&self, r: &SimRestoreSession, now: Instant) -> El {
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
            .field("JobType", r.job_type().to_owned())
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

/// How long EM lists restore sessions: "only … the sessions that has been created for the last
/// 30 days" (`get_restoresessions.html`).
const RESTORE_SESSION_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// A restore someone else started, as `POST /sim/restoreSessions` describes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalRestore {
    pub vm: String,
    /// EM's `JobType`, e.g. `FileLevelRestore` or `RestoreVm`.
    pub job_type: String,
    /// How long ago it started.
    #[serde(with = "humantime_serde")]
    pub age: Duration,
    /// How long it ran; absent while it still runs.
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// `Success`, `Warning` or `Failed` once ended (default `Success`).
    #[serde(default)]
    pub result: Option<String>,
}

impl World {
    /// Restore sessions EM still lists (the last 30 days).
    pub(super) fn recent_restore_sessions(&self) -> impl Iterator<Item = &SimRestoreSession> {
        let since = SystemTime::now() - RESTORE_SESSION_WINDOW;
        self.restore_sessions.iter().filter(move |r| r.created_wall >= since)
    }

    /// Adds a restore session another user started, on a VM of the inventory.
    pub(crate) fn add_external_restore(&mut self, spec: ExternalRestore, now: Instant) -> Result<String, SimError> {
        let point = self
            .inventory
            .points
            .iter()
            .filter(|p| p.kind == PointKind::Backup && p.vm.eq_ignore_ascii_case(&spec.vm))
            .max_by_key(|p| p.created)
            .cloned()
            .ok_or_else(|| err(404, format!("VM {} has no backup point", spec.vm)))?;
        if spec.duration.is_some_and(|d| d > spec.age) {
            return Err(err(400, "duration is longer than age: the session would end in the future"));
        }
        let started = SystemTime::now() - spec.age;
        let ended = spec.duration.map(|d| (started + d, spec.result.clone().unwrap_or_else(|| "Success".into())));
        let at = now.checked_sub(spec.age).unwrap_or(now);
        let kind = RestoreKind::External { job_type: spec.job_type, ended };
        let id = self.new_restore_session(point, kind, at, now);
        if let Some(r) = self.restore_sessions.iter_mut().find(|r| r.id == id) {
            // `at` may have been clamped to the process start; the wall clock is what EM shows.
            r.created_wall = started;
        }
        Ok(id)
    }

    /// Ends a running external restore now with `result`.
    pub(crate) fn stop_external_restore(&mut self, id: &str, result: &str) -> Result<(), SimError> {
        let r = self
            .restore_sessions
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| err(404, format!("Restore session {id} not found")))?;
        match &mut r.kind {
            RestoreKind::External { ended: ended @ None, .. } => {
                *ended = Some((SystemTime::now(), result.to_owned()));
                Ok(())
            }
            _ => Err(err(409, format!("Restore session {id} is not a running external restore"))),
        }
    }

    /// Forgets a restore session (as EM does after 30 days).
    pub(crate) fn remove_restore_session(&mut self, id: &str) -> bool {
        let before = self.restore_sessions.len();
        self.restore_sessions.retain(|r| r.id != id);
        self.restore_sessions.len() < before
    }
}
