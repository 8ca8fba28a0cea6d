//! The simulator's own names for what it serves. Deliberately not the client's types
//! (`crate::em`): the simulator is a second, independent reading of the documentation, and a
//! type shared by both sides would let one mistake pass on both.

use serde::{Deserialize, Serialize};

/// The documented calls the simulator tells apart: fault-injection points and request-log
/// entries (`"endpoint": "mount_create"` in the admin API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    ApiRoot,
    Logon,
    Logoff,
    LogonSession,
    Query,
    MountCreate,
    MountList,
    MountGet,
    MountBrowse,
    MountDelete,
    FileRestore,
    Download,
    CatalogBrowse,
    CatalogRestore,
    Task,
    TaskList,
    TaskDelete,
    RestoreSession,
}

/// The two representations EM serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

/// Backup restore points (`vmRestorePoints`) and replica points (`vmReplicaPoints`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    Backup,
    Replica,
}

/// A guest OS as the inventory declares it and a mount request names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OsKind {
    Windows,
    Linux,
}
