//! Mounts: creating them through tasks, reading, browsing, file restores from them, deleting.

use super::*;
use crate::inventory::VmSpec;
use crate::vocab::OsKind;

impl World {
    pub(super) fn next_task_id(&mut self, session: &str) -> String {
        let s = self.sessions.get_mut(session).expect("authenticated session exists");
        s.next_task += 1;
        format!("task-{}", s.next_task)
    }

    pub(super) fn create_task(
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

    pub(super) fn own_mount(&self, key: &MountKey<'_>) -> Result<usize, SimError> {
        let MountKey { session, kind, point_id, mount_id } = *key;
        // Mounts of other logon sessions are "inaccessible" (docs/em-api-notes.md §4.3); the status EM uses
        // is undocumented (§8 q1). We answer 404 with an Error body.
        self.mounts
            .iter()
            .position(|m| {
                m.kind == kind && m.point_id == point_id && m.id.to_string() == mount_id && m.session == session
            })
            .ok_or_else(|| err(404, format!("Mount point {mount_id} of restore point {point_id} not found")))
    }

    pub(super) fn mount_entity(&self, m: &SimMount) -> El {
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

    pub(super) fn mount_vm(&self, key: &MountKey<'_>) -> Result<(String, &VmSpec), SimError> {
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
}
