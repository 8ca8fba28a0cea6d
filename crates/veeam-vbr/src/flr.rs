//! File-level restore (FLR): mount, list, browse, download, restore to the original location,
//! unmount. "Available to: Veeam Backup Administrator, Veeam Restore Operator" for all of them.
//!
//! An FLR mount *is* a restore session: `POST /api/v1/restore/flr` "starts a file restore
//! session and mounts the machine file system to a mount point", and every later call is
//! addressed by that `sessionId`. Nothing in the spec scopes a mount to the logon that made
//! it, so a mount left behind by a crashed run is still reachable by id (or through
//! [`Session::mounts`]) and can be unmounted later.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::archive::{self, ZipEntry, ZipLimits};
use crate::decode;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::model::*;
use crate::session::{PAGE_SIZE, Req, Session, more_pages};
use crate::version::ApiVersion;

/// `EFlrMountModeType` (1.3+; not sent to older servers, whose specs do not have it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MountMode {
    /// VBR picks the mount server. The Windows example uses it.
    #[default]
    Automatic,
    /// The caller names the mount server in [`MountRequest::mount_server`].
    Manual,
}

impl MountMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MountMode::Automatic => "Automatic",
            MountMode::Manual => "Manual",
        }
    }
}

/// Where the file system is mounted (`mountServer` in 1.3; top-level Linux fields in 1.2).
#[derive(Clone, Debug, PartialEq)]
pub enum MountServer {
    /// A mount server by id (`mountServerType: MountServer`, 1.3 only).
    MountServer { mount_server_id: String },
    /// Linux: mount on the original machine (`originalHost.credentialsId`).
    OriginalHost { credentials_id: Option<String> },
    /// Linux: a helper host by id (`helperHost.hostId`).
    HelperHost { host_id: String },
    /// Anything else (e.g. a helper appliance), sent verbatim as `mountServer` on 1.3, and
    /// merged into the top level of the spec on 1.1/1.2.
    Raw(Value),
}

/// What to mount: the body of `POST /api/v1/restore/flr` (`FlrMountSpec`).
#[derive(Clone, Debug)]
pub struct MountRequest {
    pub restore_point_id: String,
    /// `type`: `Windows` or `Linux` (the discriminator between the two spec variants).
    pub guest_os: GuestOs,
    /// `autoUnmount.noActivityPeriodInMinutes`. Auto-unmount is always enabled, so a mount
    /// this process forgets (crash, lost network) is released by VBR itself. Must be ≥ 1.
    pub auto_unmount_minutes: u32,
    /// `reason`, shown in VBR's session history.
    pub reason: String,
    pub mount_mode: MountMode,
    /// Windows: `credentialsId` (used by VBR to compare backup and production files).
    pub credentials_id: Option<String>,
    /// Required for Linux by 1.3-rev2 (`LinuxFlrMountSpec.required` has `mountServer`).
    pub mount_server: Option<MountServer>,
}

impl MountRequest {
    pub fn new(restore_point_id: impl Into<String>, guest_os: GuestOs, auto_unmount_minutes: u32) -> MountRequest {
        MountRequest {
            restore_point_id: restore_point_id.into(),
            guest_os,
            auto_unmount_minutes,
            reason: "veeam-restore-exporter restore test".into(),
            mount_mode: MountMode::Automatic,
            credentials_id: None,
            mount_server: None,
        }
    }
}

/// `EFlrRestoreType`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestoreType {
    /// Replace the file at the original location.
    #[default]
    Overwrite,
    /// Keep the original and restore next to it (VBR renames the restored copy).
    Keep,
    /// Restore permissions only.
    PermissionOnly,
}

impl RestoreType {
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreType::Overwrite => "Overwrite",
            RestoreType::Keep => "Keep",
            RestoreType::PermissionOnly => "PermissionOnly",
        }
    }
}

/// `FlrRestoreSpec` for a restore to the **original location** (it writes into the
/// production machine).
#[derive(Clone, Debug)]
pub struct FileRestoreRequest {
    /// Guest paths, e.g. `C:\canary\canary.txt`.
    pub source_paths: Vec<String>,
    pub restore_type: RestoreType,
    /// Credentials VBR uses to write to the machine (the Linux example sets it).
    pub credentials_id: Option<String>,
}

impl Session {
    /// `POST /api/v1/restore/flr` → 201 `FlrBrowseMountModel`. Check
    /// [`FlrMount::mount_errors`]: 1.3 reports disks that did not mount there.
    pub async fn mount(&self, request: &MountRequest) -> Result<FlrMount> {
        let body = mount_body(request, self.api_version())?;
        decode::flr_mount(&self.json(Req::post(Endpoint::MountCreate, &["v1", "restore", "flr"], Some(body))).await?)
    }

    /// `GET /api/v1/backupBrowser/flr/{sessionId}`.
    pub async fn mount_info(&self, session_id: &str) -> Result<FlrMount> {
        decode::flr_mount(&self.json(Req::get(Endpoint::MountGet, &["v1", "backupBrowser", "flr", session_id])).await?)
    }

    /// `GET /api/v1/backupBrowser/flr`: every active mount on the server (anyone's), all pages.
    pub async fn mounts(&self) -> Result<Vec<FlrMount>> {
        self.paged(Endpoint::MountList, &["v1", "backupBrowser", "flr"], Vec::new(), decode::flr_mounts).await
    }

    /// `POST /api/v1/backupBrowser/flr/{sessionId}/browse` for one folder (`""` lists the
    /// drives or the root), following `pagination` to the end of the folder within a bound.
    pub async fn browse(&self, session_id: &str, path: &str) -> Result<BrowseResult> {
        let segments = ["v1", "backupBrowser", "flr", session_id, "browse"];
        let mut merged: Option<BrowseResult> = None;
        for _ in 0..crate::session::MAX_PAGES {
            let skip = merged.as_ref().map_or(0, |m| m.items.len());
            let body = json!({ "path": path, "pagination": { "skip": skip, "limit": PAGE_SIZE } });
            let page = decode::browse(&self.json(Req::post(Endpoint::MountBrowse, &segments, Some(body))).await?)?;
            let got = page.items.len();
            let pagination = page.pagination;
            let all = match merged.as_mut() {
                Some(m) => {
                    m.items.extend(page.items);
                    m.pagination = page.pagination;
                    m
                }
                None => merged.insert(page),
            };
            if !more_pages(pagination, skip, got, all.items.len()) {
                break;
            }
        }
        merged.ok_or_else(|| Error::Decode("browse returned no page".into()))
    }

    /// `POST …/prepareDownload` with `sourcePath` → 201 `TaskModel` (type `FlrDownload`).
    /// "prepares files and folders for download and packs them into a ZIP file".
    pub async fn prepare_download(&self, session_id: &str, paths: &[&str]) -> Result<Task> {
        let segments = ["v1", "backupBrowser", "flr", session_id, "prepareDownload"];
        let body = json!({ "sourcePath": paths });
        decode::task(&self.json(Req::post(Endpoint::PrepareDownload, &segments, Some(body))).await?)
    }

    /// `POST …/prepareDownload/{taskId}/download` → the ZIP (`application/octet-stream`),
    /// streamed and refused past `max_download_bytes` ([`Error::TooLarge`]). Never written to
    /// disk.
    pub async fn download(&self, session_id: &str, task_id: &str) -> Result<Bytes> {
        let segments = ["v1", "backupBrowser", "flr", session_id, "prepareDownload", task_id, "download"];
        let cap = self.client().config().max_download_bytes;
        self.send(
            Req::post(Endpoint::Download, &segments, None),
            cap,
            "application/octet-stream, application/json;q=0.5",
        )
        .await
    }

    /// Prepare, wait for the task, download and pick `guest_path` out of the archive: the
    /// whole "download and check one small file" step.
    pub async fn download_file(
        &self,
        session_id: &str,
        guest_path: &str,
        poll: Duration,
        deadline: Duration,
        limits: &ZipLimits,
    ) -> Result<ZipEntry> {
        let task = self.prepare_download(session_id, &[guest_path]).await?;
        self.wait_for_task(&task.id, poll, deadline).await?;
        let zip = self.download(session_id, &task.id).await?;
        archive::find_file(&zip, guest_path, limits)
    }

    /// `POST /api/v1/backupBrowser/flr/{sessionId}/restore` (`FlrRestoreSpec`) → 201 `TaskModel`
    /// (type `FlrRestore`): restores to the **original location**. Follow it with
    /// [`Session::wait_for_task`].
    pub async fn restore_files(&self, session_id: &str, request: &FileRestoreRequest) -> Result<Task> {
        if request.source_paths.is_empty() {
            return Err(Error::Config("file restore needs at least one source path".into()));
        }
        let mut body = json!({ "sourcePath": request.source_paths, "restoreType": request.restore_type.as_str() });
        if let Some(id) = &request.credentials_id {
            body["credentialsId"] = json!(id);
        }
        let segments = ["v1", "backupBrowser", "flr", session_id, "restore"];
        decode::task(&self.json(Req::post(Endpoint::FileRestore, &segments, Some(body))).await?)
    }

    /// `POST /api/v1/restore/flr/{sessionId}/unmount` → 201 `SessionModel`: "unmounts the file
    /// system from a mount point and stops a file restore session". Liberal: a 2xx with an
    /// empty body is accepted as `None` (the spec promises a body; a proxy might drop it).
    pub async fn unmount(&self, session_id: &str) -> Result<Option<SessionInfo>> {
        let segments = ["v1", "restore", "flr", session_id, "unmount"];
        let body = self.json(Req::post(Endpoint::MountDelete, &segments, None)).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        decode::session(&body).map(Some)
    }
}

/// Builds `FlrMountSpec` for the agreed revision.
///
/// - 1.3 (rev0–rev2): `mountMode` is required for both variants; `mountServer` holds the
///   mount-server choice. 1.3-rev2 also requires `mountServer` for Linux (a
///   `mountServerType`-discriminated object): without one the server may answer 400.
/// - 1.1/1.2: no `mountMode`; Linux helper settings (`helperHost`, `originalHost`,
///   `helperAppliance`) sit at the top level; Windows has only `credentialsId`.
pub fn mount_body(request: &MountRequest, version: ApiVersion) -> Result<Value> {
    if request.auto_unmount_minutes == 0 {
        return Err(Error::Config("auto-unmount period must be at least one minute".into()));
    }
    let mut body = json!({
        "restorePointId": request.restore_point_id,
        "type": request.guest_os.as_str(),
        "autoUnmount": { "isEnabled": true, "noActivityPeriodInMinutes": request.auto_unmount_minutes },
        "reason": request.reason,
    });
    if request.guest_os == GuestOs::Windows
        && let Some(id) = &request.credentials_id
    {
        body["credentialsId"] = json!(id);
    }
    if version.has_mount_mode() {
        body["mountMode"] = json!(request.mount_mode.as_str());
        match &request.mount_server {
            Some(server) => body["mountServer"] = mount_server_v13(server),
            None if request.guest_os == GuestOs::Linux && version >= ApiVersion::V1_3Rev2 => {
                tracing::warn!("1.3-rev2 requires mountServer for a Linux FLR mount and none was configured");
            }
            None => {}
        }
        return Ok(body);
    }
    match &request.mount_server {
        None => {}
        Some(MountServer::HelperHost { host_id }) => body["helperHost"] = json!({ "hostId": host_id }),
        Some(MountServer::OriginalHost { credentials_id }) => {
            body["originalHost"] = credentials_id.as_ref().map_or(json!({}), |id| json!({ "credentialsId": id }))
        }
        Some(MountServer::Raw(Value::Object(fields))) => {
            for (k, v) in fields {
                body[k.as_str()] = v.clone();
            }
        }
        Some(other) => {
            return Err(Error::Config(format!("API {version} cannot choose a mount server ({other:?} needs 1.3)")));
        }
    }
    Ok(body)
}

fn mount_server_v13(server: &MountServer) -> Value {
    match server {
        MountServer::MountServer { mount_server_id } => {
            json!({ "mountServerType": "MountServer", "mountServerId": mount_server_id })
        }
        MountServer::OriginalHost { credentials_id } => match credentials_id {
            Some(id) => json!({ "mountServerType": "OriginalHost", "originalHost": { "credentialsId": id } }),
            None => json!({ "mountServerType": "OriginalHost", "originalHost": {} }),
        },
        MountServer::HelperHost { host_id } => {
            json!({ "mountServerType": "HelperHost", "helperHost": { "hostId": host_id } })
        }
        MountServer::Raw(value) => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_mount_body_per_revision() {
        let mut req = MountRequest::new("rp-1", GuestOs::Windows, 10);
        req.credentials_id = Some("cred-1".into());
        let v13 = mount_body(&req, ApiVersion::V1_3Rev1).unwrap();
        assert_eq!(
            v13,
            json!({"restorePointId":"rp-1","type":"Windows","autoUnmount":{"isEnabled":true,"noActivityPeriodInMinutes":10},
                   "reason":"veeam-restore-exporter restore test","credentialsId":"cred-1","mountMode":"Automatic"})
        );
        let v12 = mount_body(&req, ApiVersion::V1_2Rev1).unwrap();
        assert!(v12.get("mountMode").is_none());
        assert!(mount_body(&MountRequest::new("rp", GuestOs::Windows, 0), ApiVersion::V1_3Rev1).is_err());
    }

    #[test]
    fn linux_mount_server_moves_between_revisions() {
        let mut req = MountRequest::new("rp-1", GuestOs::Linux, 5);
        req.mount_mode = MountMode::Manual;
        req.mount_server = Some(MountServer::HelperHost { host_id: "h-1".into() });
        let v13 = mount_body(&req, ApiVersion::V1_3Rev2).unwrap();
        assert_eq!(v13["mountServer"], json!({"mountServerType":"HelperHost","helperHost":{"hostId":"h-1"}}));
        assert_eq!(v13["mountMode"], "Manual");
        let v12 = mount_body(&req, ApiVersion::V1_2Rev1).unwrap();
        assert_eq!(v12["helperHost"], json!({"hostId":"h-1"}));
        assert!(v12.get("mountServer").is_none() && v12.get("mountMode").is_none());
        req.mount_server = Some(MountServer::MountServer { mount_server_id: "m".into() });
        assert!(mount_body(&req, ApiVersion::V1_1Rev1).is_err());
    }
}
