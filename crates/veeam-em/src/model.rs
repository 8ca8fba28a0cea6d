//! EM resources as the client hands them out, each with one decoder for both wire formats.
//!
//! Decoders are liberal: only the fields a caller cannot do without are required (an `Href`, a
//! task `State`); everything else is optional, unknown values are kept as `Other`, and unknown
//! fields are ignored.

use std::time::{Duration, SystemTime};

use super::error::{Error, Result};
use super::wire::Node;

/// A `<Link>`. `Type` and `Name` are optional: EM omits `Type` on some links (e.g. task `Delete`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub rel: String,
    pub href: String,
    pub kind: Option<String>,
    pub name: Option<String>,
}

fn links(node: Node<'_>) -> Vec<Link> {
    node.items("Links", "Link")
        .into_iter()
        .filter_map(|l| {
            Some(Link { rel: l.str("Rel")?, href: l.str("Href")?, kind: l.str("Type"), name: l.str("Name") })
        })
        .collect()
}

fn find_link<'l>(links: &'l [Link], rel: &str) -> Option<&'l Link> {
    links.iter().find(|l| l.rel.eq_ignore_ascii_case(rel))
}

fn required(node: Node<'_>, field: &str, what: &str) -> Result<String> {
    node.str(field).ok_or_else(|| Error::Decode(format!("{what}: missing {field}")))
}

/// Parses an EM UTC date-time: ISO-8601 with `Z` and any number of fractional digits.
///
/// Returns `None` for EM's "never" (`1753-01-01T00:00:00Z`, SQL's minimum date) and for any date
/// before the Unix epoch, and for values it cannot read: a date is never worth failing a probe.
pub fn parse_time(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let value = value.strip_suffix('Z').or_else(|| value.strip_suffix('z')).unwrap_or(value);
    let (main, fraction) = match value.split_once('.') {
        Some((main, fraction)) => (main, fraction),
        None => (value, ""),
    };
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = humantime::parse_rfc3339(&format!("{main}Z")).ok()?;
    let nanos: String = fraction.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(whole + Duration::from_nanos(nanos.parse().ok()?))
}

/// The last path segment of an href, without query: the id EM uses in URLs.
pub fn id_from_href(href: &str) -> Option<&str> {
    let path = href.split(['?', '#']).next()?;
    path.trim_end_matches('/').rsplit('/').next().filter(|s| !s.is_empty())
}

/// Backup restore points and replica restore points share one contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    Backup,
    Replica,
}

impl PointKind {
    /// The `/query?type=` value.
    pub fn query_type(self) -> &'static str {
        match self {
            PointKind::Backup => "VmRestorePoint",
            PointKind::Replica => "VmReplicaPoint",
        }
    }

    /// The collection path segment.
    pub fn collection(self) -> &'static str {
        match self {
            PointKind::Backup => "vmRestorePoints",
            PointKind::Replica => "vmReplicaPoints",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            PointKind::Backup => "VmRestorePoints",
            PointKind::Replica => "VmReplicaPoints",
        }
    }

    fn mount_types(self) -> (&'static str, &'static str) {
        match self {
            PointKind::Backup => ("VmRestorePointMounts", "VmRestorePointMount"),
            PointKind::Replica => ("VmReplicaPointMounts", "VmReplicaPointMount"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PointKind::Backup => "backup",
            PointKind::Replica => "replica",
        }
    }
}

/// A `VmRestorePoint` or `VmReplicaPoint` entity.
#[derive(Clone, Debug)]
pub struct RestorePoint {
    pub kind: PointKind,
    /// The entity href (may carry `?format=Entity`).
    pub href: String,
    pub id: String,
    pub name: Option<String>,
    pub vm_display_name: Option<String>,
    pub creation_time: Option<SystemTime>,
    pub links: Vec<Link>,
}

impl RestorePoint {
    pub(crate) fn decode(node: Node<'_>, kind: PointKind) -> Result<RestorePoint> {
        let href = required(node, "Href", kind.query_type())?;
        let uid = node.str("UID");
        let id = uid
            .as_deref()
            .and_then(|u| u.rsplit(':').next())
            .or_else(|| id_from_href(&href))
            .ok_or_else(|| Error::Decode(format!("{}: no id in Href or UID", kind.query_type())))?
            .to_owned();
        Ok(RestorePoint {
            kind,
            id,
            name: node.str("Name"),
            vm_display_name: node.str("VmDisplayName"),
            creation_time: node.str("CreationTimeUTC").as_deref().and_then(parse_time),
            links: links(node),
            href,
        })
    }

    /// Decodes a `/query?...&format=Entities` result: zero or more points.
    pub(crate) fn decode_query(root: Node<'_>, kind: PointKind) -> Result<Vec<RestorePoint>> {
        let entities = match root.child("Entities") {
            Some(entities) => entities,
            None => return Ok(Vec::new()),
        };
        let singular = kind.query_type();
        entities.items(kind.plural(), singular).into_iter().map(|n| RestorePoint::decode(n, kind)).collect()
    }

    /// Where to `POST` a mount: the `Create` link, else `<entity>/mounts`.
    pub fn mounts_href(&self) -> String {
        find_link(&self.links, "Create")
            .filter(|l| l.kind.as_deref().is_none_or(|k| k.ends_with("Mount")))
            .map(|l| l.href.clone())
            .unwrap_or_else(|| format!("{}/mounts", self.href.split('?').next().unwrap_or(&self.href)))
    }
}

/// Task states as documented; only `Finished` is terminal and carries the result links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    Running,
    /// Finished on the backup server, but EM has not collected the data yet.
    OperationFinished,
    Finished,
    /// A state this client does not know; treated as still in progress.
    Other(String),
}

impl TaskState {
    fn parse(s: &str) -> TaskState {
        match s {
            _ if s.eq_ignore_ascii_case("Running") => TaskState::Running,
            _ if s.eq_ignore_ascii_case("OperationFinished") => TaskState::OperationFinished,
            _ if s.eq_ignore_ascii_case("Finished") => TaskState::Finished,
            _ => TaskState::Other(s.to_owned()),
        }
    }
}

/// A task's `Result`: absent while running; `Message` may be missing even when finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskResult {
    pub success: bool,
    pub message: Option<String>,
}

/// An EM task (`/tasks/{id}`), returned by every asynchronous operation.
#[derive(Clone, Debug)]
pub struct Task {
    pub href: String,
    pub id: String,
    pub state: TaskState,
    pub operation: String,
    pub result: Option<TaskResult>,
    pub links: Vec<Link>,
}

impl Task {
    pub(crate) fn decode(node: Node<'_>) -> Result<Task> {
        let href = required(node, "Href", "Task")?;
        let result = node.child("Result").map(|r| TaskResult {
            success: r.str("Success").is_some_and(|s| s.eq_ignore_ascii_case("true")),
            message: r.str("Message"),
        });
        Ok(Task {
            id: node.str("TaskId").or_else(|| id_from_href(&href).map(str::to_owned)).unwrap_or_default(),
            state: TaskState::parse(&required(node, "State", "Task")?),
            operation: node.str("Operation").unwrap_or_default(),
            result,
            links: links(node),
            href,
        })
    }

    /// Only `Finished` is terminal: `OperationFinished` may still lack the result links.
    pub fn is_finished(&self) -> bool {
        self.state == TaskState::Finished
    }

    /// For a finished task: `Ok(self)` on success, [`Error::TaskFailed`] with EM's message on
    /// `Success="false"` or a missing result.
    pub fn into_outcome(self) -> Result<Task> {
        match &self.result {
            Some(TaskResult { success: true, .. }) => Ok(self),
            Some(TaskResult { success: false, message }) => Err(Error::TaskFailed {
                operation: self.operation.clone(),
                message: message.clone().unwrap_or_else(|| "no message".to_owned()),
            }),
            None => Err(Error::TaskFailed {
                operation: self.operation.clone(),
                message: "task finished without a result".to_owned(),
            }),
        }
    }

    /// The `Related` link: the mount for `MountRestorePoint`, the restore session for `RestoreFile`.
    pub fn related(&self) -> Option<&Link> {
        find_link(&self.links, "Related")
    }

    /// The `Download` link of a finished `FileRestoreFromMountPoint` task.
    pub fn download(&self) -> Option<&Link> {
        find_link(&self.links, "Download")
    }

    /// The `Delete` link (task housekeeping), else the task href.
    pub fn delete_href(&self) -> &str {
        find_link(&self.links, "Delete").map(|l| l.href.as_str()).unwrap_or(&self.href)
    }
}

/// A guest-file-system directory (an `FSRoots` entry or a listed directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub href: Option<String>,
    pub path: Option<String>,
    pub name: Option<String>,
}

impl DirectoryEntry {
    fn decode(node: Node<'_>) -> DirectoryEntry {
        DirectoryEntry { href: node.str("Href"), path: node.str("Path"), name: node.str("Name") }
    }
}

/// A guest file in a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub href: Option<String>,
    pub path: Option<String>,
    pub name: Option<String>,
    pub size: Option<u64>,
}

/// A mount point (`VmRestorePointMount` or `VmReplicaPointMount`).
#[derive(Clone, Debug)]
pub struct Mount {
    pub href: String,
    pub fs_roots: Vec<DirectoryEntry>,
    pub links: Vec<Link>,
}

impl Mount {
    pub(crate) fn decode(node: Node<'_>) -> Result<Mount> {
        Ok(Mount {
            href: required(node, "Href", "mount")?,
            fs_roots: node.items("FSRoots", "DirectoryEntry").into_iter().map(DirectoryEntry::decode).collect(),
            links: links(node),
        })
    }

    /// Decodes a mount list; both collection names are accepted whatever `kind` was asked for.
    pub(crate) fn decode_list(root: Node<'_>, kind: PointKind) -> Result<Vec<Mount>> {
        let (plural, singular) = kind.mount_types();
        let mut items = root.items(plural, singular);
        if items.is_empty() {
            let other = if kind == PointKind::Backup { PointKind::Replica } else { PointKind::Backup };
            let (plural, singular) = other.mount_types();
            items = root.items(plural, singular);
        }
        items.into_iter().map(Mount::decode).collect()
    }

    /// Where to `DELETE`: the mount's own `Delete` link (preferred, see docs/em-api-notes.md §4.2), else its href.
    pub fn delete_href(&self) -> &str {
        find_link(&self.links, "Delete").map(|l| l.href.as_str()).unwrap_or(&self.href)
    }
}

/// The result of listing a directory (`FileSystemEntries`).
#[derive(Clone, Debug, Default)]
pub struct FileSystemEntries {
    pub directories: Vec<DirectoryEntry>,
    pub files: Vec<FileEntry>,
}

impl FileSystemEntries {
    pub(crate) fn decode(node: Node<'_>) -> FileSystemEntries {
        FileSystemEntries {
            directories: node.items("Directories", "DirectoryEntry").into_iter().map(DirectoryEntry::decode).collect(),
            files: node
                .items("Files", "FileEntry")
                .into_iter()
                .map(|f| FileEntry {
                    href: f.str("Href"),
                    path: f.str("Path"),
                    name: f.str("Name"),
                    size: f.str("Size").and_then(|s| s.parse().ok()),
                })
                .collect(),
        }
    }
}

/// Restore session states as documented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreSessionState {
    Starting,
    Working,
    Stopping,
    Stopped,
    Other(String),
}

/// Restore session results as documented; anything else (e.g. `None` while running) is `Other`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreSessionResult {
    Success,
    Warning,
    Failed,
    Other(String),
}

impl RestoreSessionResult {
    pub fn as_str(&self) -> &str {
        match self {
            RestoreSessionResult::Success => "Success",
            RestoreSessionResult::Warning => "Warning",
            RestoreSessionResult::Failed => "Failed",
            RestoreSessionResult::Other(s) => s,
        }
    }
}

/// A `RestoreSession` entity (`/restoreSessions/{id}?format=Entity`).
#[derive(Clone, Debug)]
pub struct RestoreSession {
    pub href: String,
    /// `urn:veeam:RestoreSession:<id>`.
    pub uid: Option<String>,
    pub name: Option<String>,
    pub vm_display_name: Option<String>,
    pub job_type: Option<String>,
    pub state: RestoreSessionState,
    pub result: Option<RestoreSessionResult>,
    /// Percent, 0..=100 (clamped).
    pub progress: u8,
    pub creation_time: Option<SystemTime>,
    pub end_time: Option<SystemTime>,
}

impl RestoreSession {
    pub(crate) fn decode(node: Node<'_>) -> Result<RestoreSession> {
        let state = required(node, "State", "RestoreSession")?;
        let state = match state.as_str() {
            s if s.eq_ignore_ascii_case("Starting") => RestoreSessionState::Starting,
            s if s.eq_ignore_ascii_case("Working") => RestoreSessionState::Working,
            s if s.eq_ignore_ascii_case("Stopping") => RestoreSessionState::Stopping,
            s if s.eq_ignore_ascii_case("Stopped") => RestoreSessionState::Stopped,
            s => RestoreSessionState::Other(s.to_owned()),
        };
        let result = node.str("Result").map(|r| match r.as_str() {
            s if s.eq_ignore_ascii_case("Success") => RestoreSessionResult::Success,
            s if s.eq_ignore_ascii_case("Warning") => RestoreSessionResult::Warning,
            s if s.eq_ignore_ascii_case("Failed") => RestoreSessionResult::Failed,
            s => RestoreSessionResult::Other(s.to_owned()),
        });
        let progress = node.str("Progress").and_then(|p| p.parse::<f64>().ok()).unwrap_or(0.0);
        Ok(RestoreSession {
            href: required(node, "Href", "RestoreSession")?,
            uid: node.str("UID"),
            name: node.str("Name"),
            vm_display_name: node.str("VmDisplayName"),
            job_type: node.str("JobType"),
            state,
            result,
            progress: progress.clamp(0.0, 100.0) as u8,
            creation_time: node.str("CreationTimeUTC").as_deref().and_then(parse_time),
            end_time: node.str("EndTimeUTC").as_deref().and_then(parse_time),
        })
    }

    pub(crate) fn decode_query(root: Node<'_>) -> Result<Vec<RestoreSession>> {
        let Some(entities) = root.child("Entities") else {
            return Ok(Vec::new());
        };
        entities.items("RestoreSessions", "RestoreSession").into_iter().map(RestoreSession::decode).collect()
    }
}

/// A logon session (`LogonSession`). `Debug` prints only the user: the id, and the hrefs that
/// carry it, are secrets (the session token is the id's base64).
#[derive(Clone)]
pub struct LogonInfo {
    pub session_id: String,
    pub user_name: Option<String>,
    pub href: Option<String>,
    pub links: Vec<Link>,
}

impl std::fmt::Debug for LogonInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogonInfo").field("user_name", &self.user_name).finish_non_exhaustive()
    }
}

impl LogonInfo {
    pub(crate) fn decode(node: Node<'_>) -> Result<LogonInfo> {
        let href = node.str("Href");
        let session_id = node
            .str("SessionId")
            .or_else(|| href.as_deref().and_then(id_from_href).map(str::to_owned))
            .ok_or_else(|| Error::Decode("LogonSession: missing SessionId".to_owned()))?;
        Ok(LogonInfo { session_id, user_name: node.str("UserName"), href, links: links(node) })
    }

    /// The log-off href: the `Delete` link, else `Href`.
    pub fn delete_href(&self) -> Option<&str> {
        find_link(&self.links, "Delete").map(|l| l.href.as_str()).or(self.href.as_deref())
    }
}

/// EM's `Error` body, XML or JSON, reduced to its message.
pub(crate) fn error_message(root: Node<'_>) -> Option<String> {
    root.str("Message").or_else(|| root.str("FirstChanceExceptionMessage"))
}

/// `GET /api/`: the API versions the server supports.
#[derive(Clone, Debug)]
pub struct EntryPoint {
    pub versions: Vec<String>,
}

impl EntryPoint {
    pub(crate) fn decode(root: Node<'_>) -> EntryPoint {
        EntryPoint {
            versions: root
                .items("SupportedVersions", "SupportedVersion")
                .into_iter()
                .filter_map(|v| v.str("Name"))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_any_fraction() {
        let base = humantime::parse_rfc3339("2017-01-12T16:56:28Z").unwrap();
        assert_eq!(parse_time("2017-01-12T16:56:28Z"), Some(base));
        assert_eq!(parse_time("2017-01-12T16:56:28.7Z"), Some(base + Duration::from_millis(700)));
        assert_eq!(parse_time("2017-01-12T16:56:28.783Z"), Some(base + Duration::from_millis(783)));
        assert_eq!(parse_time("2017-01-12T16:56:28.1234567891234Z"), Some(base + Duration::from_nanos(123_456_789)));
        assert_eq!(parse_time("2017-01-12T16:56:28"), Some(base));
        assert_eq!(parse_time("1753-01-01T00:00:00Z"), None);
        assert_eq!(parse_time("garbage"), None);
        assert_eq!(parse_time("2017-01-12T16:56:28.x1Z"), None);
    }

    #[test]
    fn ids_from_hrefs() {
        assert_eq!(id_from_href("https://h/api/tasks/task-1"), Some("task-1"));
        assert_eq!(id_from_href("https://h/api/restoreSessions/8f20?format=Entity"), Some("8f20"));
        assert_eq!(id_from_href("https://h/api/logonSessions/abc/"), Some("abc"));
    }
}
