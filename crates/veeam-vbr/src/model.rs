//! What VBR answers, decoded liberally.
//!
//! The specs (`vbr_rest_1.2-rev1.json`, `vbr_rest_1.3-rev1.json`, `vbr_rest_1.3-rev2.json`)
//! disagree with their own examples often enough (README of the reference folder) that the
//! decoders follow one rule: a field this client needs to act is required (an FLR mount
//! without `sessionId` is a [`crate::Error::Decode`]); everything else is optional, enums keep
//! unknown values as `Other(..)`, `null` is the same as absent, and unknown fields are ignored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer};
use veeam_secret::Secret;

pub use crate::enums::*;

/// `TokenModel`: the answer to `POST /api/oauth2/token`. Both tokens are [`Secret`]s.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    pub access_token: Secret,
    /// Single use ("A refresh token can be used only once"). Required by the spec; `None` when
    /// a server left it out, in which case renewal logs on again with the password.
    pub refresh_token: Option<Secret>,
    pub token_type: Option<String>,
    /// Lifetime of the access token in seconds (900 in every example).
    pub expires_in: Option<u64>,
    pub issued: Option<String>,
    pub expires: Option<String>,
}

impl TokenGrant {
    /// How long the access token lives: `expires_in` when sane (1 s to 1 day), else `.expires`
    /// minus `.issued`, else the documented 15 minutes.
    pub fn lifetime(&self) -> Duration {
        const DOCUMENTED: Duration = Duration::from_secs(15 * 60);
        if let Some(secs) = self.expires_in.filter(|s| (1..=86_400).contains(s)) {
            return Duration::from_secs(secs);
        }
        let issued = self.issued.as_deref().and_then(parse_timestamp);
        let expires = self.expires.as_deref().and_then(parse_timestamp);
        match (issued, expires) {
            (Some(i), Some(e)) => e
                .duration_since(i)
                .ok()
                .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(d))
                .unwrap_or(DOCUMENTED),
            _ => DOCUMENTED,
        }
    }
}

/// `ServerInfoModel` (`GET /api/v1/serverInfo`, Backup Administrator only).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerInfo {
    pub vbr_id: Option<String>,
    /// Full DNS name or IP address of the backup server.
    pub name: Option<String>,
    /// e.g. `13.0.0.4883`.
    pub build_version: Option<String>,
    #[serde(deserialize_with = "null_vec")]
    pub patches: Vec<String>,
    pub database_vendor: Option<String>,
    /// `EVBRServerPlatform` (1.3: `Windows`/`Linux`); absent on 1.2.
    pub platform: Option<String>,
}

/// `ServerTimeModel` (`GET /api/v1/serverTime`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTime {
    pub server_time: String,
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// `BackupObjectModel`: a machine (or container) that has backups.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupObject {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub object_type: Option<String>,
    #[serde(default)]
    pub platform_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub restore_points_count: Option<u64>,
}

/// `ObjectRestorePointModel`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestorePoint {
    pub id: String,
    /// The object's name (for agent backups the examples show `"<machine> <job>"`).
    #[serde(default)]
    pub name: Option<String>,
    /// `EPlatformType`, e.g. `VMware`, `HyperV`, `LinuxPhysical`.
    #[serde(default)]
    pub platform_name: Option<String>,
    #[serde(default)]
    pub platform_id: Option<String>,
    /// RFC 3339 date-time as VBR sent it; see [`RestorePoint::created_at`].
    pub creation_time: String,
    #[serde(default)]
    pub backup_id: Option<String>,
    /// `ERestorePointType` (`Full`, `Increment`, …).
    #[serde(default, rename = "type")]
    pub point_type: Option<String>,
    /// `EObjectRestorePointOperation` values, kept as strings. `None` when absent (required by
    /// the spec, so absent means "the server did not say", not "nothing allowed").
    #[serde(default)]
    pub allowed_operations: Option<Vec<String>>,
    /// Absent before 1.2-rev1 (and whenever the server has not scanned the point).
    #[serde(default)]
    pub malware_status: Option<MalwareStatus>,
    /// `EGuestOSFamily` (1.3 only), e.g. `Windows`, `Linux`.
    #[serde(default)]
    pub guest_os_family: Option<String>,
    #[serde(default)]
    pub backup_file_id: Option<String>,
}

impl RestorePoint {
    /// `creationTime` as a point in time, when it parses.
    pub fn created_at(&self) -> Option<SystemTime> {
        parse_timestamp(&self.creation_time)
    }

    /// Whether `allowedOperations` lists `StartFlrRestore`; `None` when the list is absent.
    pub fn allows_file_restore(&self) -> Option<bool> {
        self.allowed_operations.as_ref().map(|ops| ops.iter().any(|op| op.eq_ignore_ascii_case("StartFlrRestore")))
    }
}

/// `FlrBrowseMountError` (1.3): a disk or volume that did not mount.
#[derive(Clone, Debug, Deserialize)]
pub struct MountError {
    #[serde(default, rename = "type")]
    pub kind: Option<MountErrorKind>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WireMountProperties {
    path_separator: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WireSourceProperties {
    machine_name: Option<String>,
    restore_point_name: Option<String>,
}

/// `FlrBrowseMountModel`: one file-level restore mount (= one FLR session).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", from = "WireMount")]
pub struct FlrMount {
    /// The restore session id: every later FLR call is addressed by it.
    pub session_id: String,
    pub guest_os: Option<GuestOs>,
    /// Required since 1.3; absent on 1.2.
    pub restore_point_id: Option<String>,
    /// `\` for Windows, `/` for Linux in the examples.
    pub path_separator: Option<String>,
    pub machine_name: Option<String>,
    pub restore_point_name: Option<String>,
    /// Required since 1.3 (may be empty); absent on 1.2, where it is empty here.
    pub mount_errors: Vec<MountError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMount {
    session_id: String,
    #[serde(default, rename = "type")]
    guest_os: Option<GuestOs>,
    #[serde(default)]
    restore_point_id: Option<String>,
    #[serde(default)]
    properties: Option<WireMountProperties>,
    #[serde(default)]
    source_properties: Option<WireSourceProperties>,
    #[serde(default, deserialize_with = "null_vec")]
    mount_errors: Vec<MountError>,
}

impl From<WireMount> for FlrMount {
    fn from(w: WireMount) -> FlrMount {
        let source = w.source_properties.unwrap_or_default();
        FlrMount {
            session_id: w.session_id,
            guest_os: w.guest_os,
            restore_point_id: w.restore_point_id,
            path_separator: w.properties.unwrap_or_default().path_separator,
            machine_name: source.machine_name,
            restore_point_name: source.restore_point_name,
            mount_errors: w.mount_errors,
        }
    }
}

/// `FlrBrowserItemModel`: one drive, folder, file or link.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrowseItem {
    pub name: String,
    /// 1.3 only.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The folder the item is in, e.g. `C:\Users` (optional in every revision).
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default, rename = "type")]
    pub item_type: Option<ItemType>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub size: Option<u64>,
    #[serde(default)]
    pub creation_date: Option<String>,
    #[serde(default)]
    pub modified_date: Option<String>,
    #[serde(default)]
    pub item_state: Option<ItemState>,
}

impl BrowseItem {
    /// The item's full guest path: `location`, the mount's path separator, `name` (just
    /// `name` when there is no `location`, e.g. for drives).
    pub fn path(&self, separator: &str) -> String {
        match self.location.as_deref().filter(|l| !l.is_empty()) {
            Some(location) if location.ends_with(separator) => format!("{location}{}", self.name),
            Some(location) => format!("{location}{separator}{}", self.name),
            None => self.name.clone(),
        }
    }

    /// `modifiedDate` as a point in time, when it parses.
    pub fn modified_at(&self) -> Option<SystemTime> {
        self.modified_date.as_deref().and_then(parse_timestamp)
    }
}

/// `FlrBrowseFolderModel`, with every page of the folder merged.
#[derive(Clone, Debug, Deserialize)]
pub struct BrowseResult {
    pub path: Option<String>,
    #[serde(default, deserialize_with = "null_vec")]
    pub items: Vec<BrowseItem>,
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

/// `PaginationResult`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Pagination {
    #[serde(deserialize_with = "lenient_u64")]
    pub total: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub count: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub skip: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    pub limit: Option<u64>,
}

/// A `*Result` page: `data` plus `pagination`.
#[derive(Clone, Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    #[serde(deserialize_with = "null_vec")]
    pub data: Vec<T>,
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

/// `TaskModel` (with `additionalInfo.message` lifted up). FLR download and restore tasks are
/// read at `GET /api/v1/tasks/{id}`: the spec has no task path under `backupBrowser/flr`, and
/// `GetTask` "gets a restore task".
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "WireTask")]
pub struct Task {
    pub id: String,
    /// `ETaskType`: `FlrDownload`, `FlrRestore`, …
    pub task_type: Option<String>,
    pub name: Option<String>,
    pub state: Option<TaskState>,
    pub progress_percent: Option<u64>,
    pub result: Option<TaskResult>,
    pub creation_time: Option<String>,
    pub end_time: Option<String>,
    /// `additionalInfo.message`.
    pub message: Option<String>,
}

impl Task {
    /// The task will not change any more. `state` `Stopped` is the spec's end state; a final
    /// `result` (anything but `None`) is accepted too, in case a server sets it first.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, Some(TaskState::Stopped))
            || matches!(
                self.result,
                Some(TaskResult::Success | TaskResult::Warning | TaskResult::Failed | TaskResult::Cancelled)
            )
    }

    /// Finished with `Success` or `Warning`.
    pub fn succeeded(&self) -> bool {
        self.is_finished() && matches!(self.result, Some(TaskResult::Success | TaskResult::Warning))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTask {
    id: String,
    #[serde(default, rename = "type")]
    task_type: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    state: Option<TaskState>,
    #[serde(default, deserialize_with = "lenient_u64")]
    progress_percent: Option<u64>,
    #[serde(default)]
    result: Option<TaskResult>,
    #[serde(default)]
    creation_time: Option<String>,
    #[serde(default)]
    end_time: Option<String>,
    #[serde(default)]
    additional_info: Option<WireAdditionalInfo>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct WireAdditionalInfo {
    message: Option<String>,
}

impl From<WireTask> for Task {
    fn from(w: WireTask) -> Task {
        Task {
            id: w.id,
            task_type: w.task_type,
            name: w.name,
            state: w.state,
            progress_percent: w.progress_percent,
            result: w.result,
            creation_time: w.creation_time,
            end_time: w.end_time,
            message: w.additional_info.and_then(|a| a.message),
        }
    }
}

/// `SessionResultModel`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResult {
    #[serde(default)]
    pub result: Option<SessionResultKind>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub is_canceled: Option<bool>,
}

/// `SessionModel`: a VBR session (job run, restore, FLR). Named `SessionInfo` so it is not
/// confused with [`crate::Session`], the logged-on API session.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `ESessionType`, e.g. `FileLevelRestore`, `LinuxFileLevelRestore`.
    #[serde(default)]
    pub session_type: Option<String>,
    #[serde(default)]
    pub state: Option<SessionState>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub progress_percent: Option<u64>,
    #[serde(default)]
    pub result: Option<SessionResult>,
    /// 1.3 only.
    #[serde(default)]
    pub initiated_by: Option<String>,
    #[serde(default)]
    pub creation_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
}

impl SessionInfo {
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, Some(SessionState::Stopped))
    }
}

/// `null` or absent → empty.
fn null_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A non-negative integer sent as a number, a float or a numeric string; anything else → `None`.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde_json::Value;
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.is_finite()).map(|f| f as u64))
        }
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Parses the spec's `date-time` values: `2024-11-05T18:01:26.520805+01:00`, `…Z`, and (seen in
/// 1.3-rev2 examples) no offset at all, which is taken as UTC. Any number of fraction digits.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let offset_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(offset_at);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next().unwrap_or(Some(0))?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(s: &str) -> u64 {
        parse_timestamp(s).unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn timestamps() {
        assert_eq!(unix("1970-01-01T00:00:00Z"), 0);
        assert_eq!(unix("2024-11-05T18:01:26.520805+01:00"), 1_730_826_086);
        assert_eq!(unix("2024-11-05T17:01:26"), 1_730_826_086);
        assert_eq!(unix("2025-04-24T15:39:18+02:00") - unix("2025-04-24T15:24:18+02:00"), 900);
        assert_eq!(unix("2000-03-01T00:00:00-05:30"), 951_888_600);
        for bad in
            ["", "yesterday", "2024-13-01T00:00:00Z", "2024-01-01", "2024-01-01T25:00:00Z", "2024-01-01T00:00:00+xx"]
        {
            assert!(parse_timestamp(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn liberal_enums() {
        assert_eq!(ItemState::from_wire("NotAvaliable"), ItemState::NotAvailable);
        assert_eq!(ItemState::from_wire("notavailable"), ItemState::NotAvailable);
        assert_eq!(MalwareStatus::from_wire("Quarantined"), MalwareStatus::Other("Quarantined".into()));
        assert_eq!(MalwareStatus::Other("X".into()).as_str(), "X");
        assert_eq!(TaskResult::from_wire("Canceled"), TaskResult::Cancelled);
    }
}
