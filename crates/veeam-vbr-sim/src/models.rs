//! JSON bodies, shaped by the revision the request asked for. A field a revision's schema does
//! not define is left out for that revision, so an old client never sees a newer shape.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::inventory::{GuestOs, Malware, Point, Vm};
use crate::revision::ApiRevision;
use crate::state::{Mount, Session, State, Task, TaskKind};
use crate::timefmt;

fn os_name(os: GuestOs) -> &'static str {
    match os {
        GuestOs::Windows => "Windows",
        GuestOs::Linux => "Linux",
    }
}

/// `malwareStatus` for a revision: `Informative` is 1.3 only, so older revisions omit it.
pub fn malware_name(m: Malware, rev: ApiRevision) -> Option<&'static str> {
    match m {
        Malware::Clean => Some("Clean"),
        Malware::Suspicious => Some("Suspicious"),
        Malware::Infected => Some("Infected"),
        Malware::Informative if rev.is_v13() => Some("Informative"),
        Malware::Informative => None,
    }
}

/// `ObjectRestorePointModel`. FLR is allowed on every point, infected or not: VBR marks infected
/// points but a restore from them is the operator's decision (the client must decide).
pub fn point(st: &State, vm: &Vm, p: &Point, rev: ApiRevision) -> Value {
    let mut v = json!({
        "id": p.id,
        "name": vm.name,
        "platformName": "VMware",
        "platformId": st.inventory.platform_id,
        "creationTime": timefmt::format(st.point_time(p)),
        "backupId": vm.backup_id,
        "type": p.kind,
        "allowedOperations": ["StartViVMInstantRecovery", "StartEntireVmRestore", "StartFlrRestore"],
    });
    if let Some(m) = malware_name(p.malware, rev) {
        v["malwareStatus"] = json!(m);
    }
    if rev.is_v13() {
        v["guestOsFamily"] = json!(os_name(vm.os));
        v["originalSize"] = json!(p.files.values().map(|c| c.len() as u64).sum::<u64>() + 1_073_741_824);
    }
    v
}

/// `ViBackupObjectModel` (platform VMware).
pub fn backup_object(st: &State, vm: &Vm) -> Value {
    json!({
        "id": vm.id,
        "name": vm.name,
        "type": "VM",
        "platformName": "VMware",
        "platformId": st.inventory.platform_id,
        "restorePointsCount": vm.points.len(),
        "objectId": format!("vm-{}", vm.id.as_u128() & 0xffff),
        "viType": "VirtualMachine",
        "path": format!("vcenter.sim.local\\Datacenter\\{}", vm.name),
    })
}

/// `FlrBrowseMountModel`; `mountErrors` and `restorePointId` exist (required) from 1.3.
pub fn mount(m: &Mount, rev: ApiRevision) -> Value {
    let mut v = json!({
        "sessionId": m.session_id,
        "type": os_name(m.os),
        "properties": { "pathSeparator": crate::guestfs::separator(m.os).to_string() },
        "sourceProperties": { "machineName": m.vm, "restorePointName": m.vm },
    });
    if rev.is_v13() {
        let errors: Vec<Value> = m.mount_errors.iter().map(|(t, msg)| json!({ "type": t, "message": msg })).collect();
        v["mountErrors"] = json!(errors);
        v["restorePointId"] = json!(m.restore_point_id);
    }
    v
}

/// `SessionModel`; `initiatedBy` from 1.3.
pub fn session(s: &Session, rev: ApiRevision) -> Value {
    let progress = if s.state == "Stopped" { 100 } else { 0 };
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "jobId": uuid::Uuid::nil(),
        "sessionType": s.session_type,
        "creationTime": timefmt::format(s.created),
        "state": s.state,
        "progressPercent": progress,
        "result": { "result": s.result, "message": s.message, "isCanceled": s.canceled },
        "resourceId": s.resource_id,
        "usn": s.usn,
        "platformName": "VMware",
        "platformId": uuid::Uuid::nil(),
    });
    if let Some(e) = s.ended {
        v["endTime"] = json!(timefmt::format(e));
    }
    if rev.is_v13() {
        v["initiatedBy"] = json!(s.initiated_by);
    }
    v
}

/// `FlrDownloadTaskModel` / `FlrRestoreTaskModel` (the latter requires `logs` from 1.3).
pub fn task(t: &Task, now: SystemTime, rev: ApiRevision) -> Value {
    let s = t.status(now);
    let (ty, name) = match t.kind {
        TaskKind::FlrDownload => ("FlrDownload", "File-level restore download"),
        TaskKind::FlrRestore => ("FlrRestore", "File-level restore"),
    };
    let mut v = json!({
        "id": t.id,
        "type": ty,
        "name": name,
        "state": s.state,
        "progressPercent": s.progress,
        "creationTime": timefmt::format(t.created),
        "result": s.result,
        "additionalInfo": { "message": message(s.result), "resourceId": t.session_id },
    });
    if let Some(e) = s.ended {
        v["endTime"] = json!(timefmt::format(e));
    }
    if t.kind == TaskKind::FlrRestore && rev.is_v13() {
        let records: Vec<Value> = t
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let status = match s.result {
                    "Success" => "Succeeded",
                    "Failed" | "Cancelled" => "Failed",
                    _ => "None",
                };
                json!({ "id": i + 1, "status": status, "startTime": timefmt::format(t.created),
                        "updateTime": timefmt::format(now), "title": format!("Restoring {p}") })
            })
            .collect();
        v["logs"] = json!({ "totalRecords": records.len(), "records": records });
    }
    v
}

fn message(result: &str) -> &'static str {
    match result {
        "Success" => "Completed successfully",
        "Failed" => "Task failed (simulated fault)",
        "Cancelled" => "Task was cancelled",
        _ => "In progress",
    }
}

/// Paging parameters common to the list operations.
pub struct Paging {
    pub skip: usize,
    pub limit: usize,
}

impl Paging {
    /// `skip` ≥ 0, `limit` ≥ 0 (≥ 1 on 1.3-rev2, whose schema says `minimum: 1`); default 200.
    pub fn parse(q: &crate::query::Q, rev: ApiRevision) -> Result<Paging, ApiError> {
        let skip = q.int("skip")?.unwrap_or(0);
        let limit = q.int("limit")?.unwrap_or(200);
        let min_limit = if rev >= ApiRevision::V1_3Rev2 { 1 } else { 0 };
        if skip < 0 || limit < min_limit {
            return Err(ApiError::bad_request("skip must be >= 0 and limit within its minimum"));
        }
        Ok(Paging { skip: skip as usize, limit: limit as usize })
    }

    /// `{data, pagination}` of one page of `all`.
    pub fn page(&self, all: Vec<Value>) -> Value {
        let total = all.len();
        let data: Vec<Value> = all.into_iter().skip(self.skip).take(self.limit).collect();
        json!({
            "data": data,
            "pagination": { "total": total, "count": data.len(), "skip": self.skip, "limit": self.limit },
        })
    }
}
