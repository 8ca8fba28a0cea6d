//! Server info/time, backup objects and restore points.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State as AxState};
use serde_json::{Value, json};

use crate::auth::{ADMIN, Caller, OBJECTS, POINTS, Rev};
use crate::error::ApiError;
use crate::inventory::{Point, Vm};
use crate::models::{self, Paging};
use crate::query::{Q, path_uuid};
use crate::revision::ApiRevision;
use crate::state::{Shared, State};
use crate::timefmt;

type Qr = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// `GET /api/v1/serverInfo` — Veeam Backup Administrator only.
pub async fn server_info(AxState(sh): AxState<Arc<Shared>>, c: Caller) -> Result<Json<Value>, ApiError> {
    c.require(ADMIN)?;
    let mut v = json!({
        "vbrId": "5a1e5a1e-0000-4000-8000-00000000c0de",
        "name": "vbr-sim.local",
        "buildVersion": sh.max_rev.build_version(),
        "patches": [],
        "databaseVendor": "PostgreSql",
        "sqlServerEdition": "",
        "sqlServerVersion": "15.0",
        "databaseSchemaVersion": "1",
        "databaseContentVersion": "1",
    });
    if c.rev.is_v13() {
        v["veeamRegistration"] = json!({ "isRegistered": false });
        v["platform"] = json!("Windows");
    }
    Ok(Json(v))
}

/// `GET /api/v1/serverTime` — "Available to: Anyone", `security: []`: no token needed.
pub async fn server_time(Rev(rev): Rev) -> Json<Value> {
    let mut v =
        json!({ "serverTime": timefmt::format(SystemTime::now()), "timeZone": "(UTC) Coordinated Universal Time" });
    if rev >= ApiRevision::V1_3Rev2 {
        v["ianaTimeZoneId"] = json!("Etc/UTC");
    }
    Json(v)
}

/// `nameFilter`: case-insensitive; `*` is a wildcard; without one, a substring match.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.to_lowercase(), name.to_lowercase());
    if !p.contains('*') {
        return n.contains(&p);
    }
    let parts: Vec<&str> = p.split('*').collect();
    let mut rest = n.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(pos) = rest.find(part) {
            rest = &rest[pos + part.len()..];
        } else {
            return false;
        }
    }
    rest.is_empty()
}

/// `GET /api/v1/backupObjects`.
pub async fn backup_objects(AxState(sh): AxState<Arc<Shared>>, c: Caller, q: Qr) -> Result<Json<Value>, ApiError> {
    c.require(OBJECTS)?;
    let q = Q::from(q)?;
    let paging = Paging::parse(&q, c.rev)?;
    let order = q.one_of("orderColumn", &["Name", "ObjectId", "PlatformId", "Type"])?;
    let asc = q.bool("orderAsc")?.unwrap_or(true);
    let platform = q.one_of("platformNameFilter", PLATFORMS)?;
    let st = sh.lock();
    let name = q.get("nameFilter");
    let mut vms: Vec<&Vm> = st
        .inventory
        .vms
        .iter()
        .filter(|vm| name.is_none_or(|n| name_matches(n, &vm.name)))
        .filter(|_| platform.as_deref().is_none_or(|p| p == "VMware"))
        .filter(|_| q.get("typeFilter").is_none_or(|t| t.eq_ignore_ascii_case("VM")))
        .filter(|_| q.get("viTypeFilter").is_none_or(|t| t == "VirtualMachine"))
        .collect();
    if order.as_deref() == Some("Name") {
        vms.sort_by_key(|vm| vm.name.to_lowercase());
        if !asc {
            vms.reverse();
        }
    }
    let all = vms.into_iter().map(|vm| models::backup_object(&st, vm)).collect();
    Ok(Json(paging.page(all)))
}

const PLATFORMS: &[&str] = &[
    "VMware",
    "HyperV",
    "CloudDirector",
    "WindowsPhysical",
    "LinuxPhysical",
    "Tape",
    "CustomPlatform",
    "EntraID",
    "UnstructuredData",
    "Test",
    "MongoDb",
    "AWSEC2",
    "AzureCompute",
    "GCE",
];

/// `GET /api/v1/backupObjects/{id}/restorePoints`.
pub async fn object_points(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
    q: Qr,
) -> Result<Json<Value>, ApiError> {
    c.require(POINTS)?;
    let id = path_uuid(&id)?;
    let q = Q::from(q)?;
    let st = sh.lock();
    if !st.inventory.vms.iter().any(|vm| vm.id == id) {
        return Err(ApiError::not_found("Backup object", id));
    }
    list_points(&st, &q, c.rev, Some(id)).map(Json)
}

/// `GET /api/v1/restorePoints`.
pub async fn restore_points(AxState(sh): AxState<Arc<Shared>>, c: Caller, q: Qr) -> Result<Json<Value>, ApiError> {
    c.require(POINTS)?;
    let q = Q::from(q)?;
    let st = sh.lock();
    list_points(&st, &q, c.rev, None).map(Json)
}

/// Filters and orders points. Without `orderColumn` the order is the inventory's (not newest
/// first): the spec promises no default order, so a client must ask for one.
fn list_points(st: &State, q: &Q, rev: ApiRevision, object: Option<uuid::Uuid>) -> Result<Value, ApiError> {
    let paging = Paging::parse(q, rev)?;
    let order = q.one_of("orderColumn", &["CreationTime", "PlatformId", "BackupId"])?;
    let asc = q.bool("orderAsc")?.unwrap_or(true);
    let after = q.time("createdAfterFilter")?;
    let before = q.time("createdBeforeFilter")?;
    let object = match object {
        Some(o) => Some(o),
        None => q.uuid("backupObjectIdFilter")?,
    };
    let backup = q.uuid("backupIdFilter")?;
    let platform_id = q.uuid("platformIdFilter")?;
    let platform = q.one_of("platformNameFilter", PLATFORMS)?;
    let malware_values: &[&str] = if rev.is_v13() {
        &["Clean", "Suspicious", "Infected", "Informative"]
    } else {
        &["Clean", "Suspicious", "Infected"]
    };
    let malware = q.one_of("malwareStatusFilter", malware_values)?;
    let name = q.get("nameFilter");
    let mut pts: Vec<(&Vm, &Point, SystemTime)> = Vec::new();
    for vm in &st.inventory.vms {
        for p in &vm.points {
            let t = st.point_time(p);
            let keep = name.is_none_or(|n| name_matches(n, &vm.name))
                && after.is_none_or(|a| t > a)
                && before.is_none_or(|b| t < b)
                && object.is_none_or(|o| o == vm.id)
                && backup.is_none_or(|b| b == vm.backup_id)
                && platform_id.is_none_or(|p| p == st.inventory.platform_id)
                && platform.as_deref().is_none_or(|p| p == "VMware")
                && malware.as_deref().is_none_or(|m| Some(m) == models::malware_name(p.malware, rev));
            if keep {
                pts.push((vm, p, t));
            }
        }
    }
    match order.as_deref() {
        Some("CreationTime") => pts.sort_by_key(|(_, _, t)| *t),
        Some("BackupId") => pts.sort_by_key(|(vm, _, _)| vm.backup_id),
        _ => {}
    }
    if order.is_some() && !asc {
        pts.reverse();
    }
    let all = pts.into_iter().map(|(vm, p, _)| models::point(st, vm, p, rev)).collect();
    Ok(paging.page(all))
}

/// `GET /api/v1/restorePoints/{id}`.
pub async fn restore_point(
    AxState(sh): AxState<Arc<Shared>>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    c.require(POINTS)?;
    let id = path_uuid(&id)?;
    let st = sh.lock();
    let (vm, p) = st.point(id).ok_or_else(|| ApiError::not_found("Restore point", id))?;
    Ok(Json(models::point(&st, vm, p, c.rev)))
}
