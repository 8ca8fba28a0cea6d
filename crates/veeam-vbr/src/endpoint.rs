//! The bounded vocabulary of calls the client makes, and the observer the exporter hangs its
//! request metrics on. Names match the EM client's where the meaning is the same (`logon`,
//! `logoff`, `query`-family, `mount_*`, `file_restore`, `download`, `task`, `restore_session`)
//! so dashboards read the same for both APIs.

use std::time::Duration;

/// One VBR REST operation this client calls. The label value is its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Endpoint {
    /// `POST /api/oauth2/token`, `grant_type=password`.
    Logon,
    /// `POST /api/oauth2/token`, `grant_type=refresh_token`.
    TokenRefresh,
    /// `POST /api/oauth2/logout`.
    Logoff,
    /// `GET /api/v1/serverInfo`.
    ServerInfo,
    /// `GET /api/v1/serverTime`.
    ServerTime,
    /// `GET /api/v1/backupObjects`.
    BackupObjects,
    /// `GET /api/v1/restorePoints`.
    RestorePoints,
    /// `POST /api/v1/restore/flr`.
    MountCreate,
    /// `GET /api/v1/backupBrowser/flr`.
    MountList,
    /// `GET /api/v1/backupBrowser/flr/{sessionId}`.
    MountGet,
    /// `POST /api/v1/backupBrowser/flr/{sessionId}/browse`.
    MountBrowse,
    /// `POST /api/v1/restore/flr/{sessionId}/unmount`.
    MountDelete,
    /// `POST /api/v1/backupBrowser/flr/{sessionId}/prepareDownload`.
    PrepareDownload,
    /// `POST /api/v1/backupBrowser/flr/{sessionId}/prepareDownload/{taskId}/download`.
    Download,
    /// `POST /api/v1/backupBrowser/flr/{sessionId}/restore`.
    FileRestore,
    /// `GET /api/v1/tasks/{id}`.
    Task,
    /// `GET /api/v1/sessions/{id}`.
    RestoreSession,
    /// `GET /api/v1/sessions` (cleanup looks for an FLR session a lost mount request started).
    Sessions,
}

impl Endpoint {
    pub const ALL: &'static [Endpoint] = <Endpoint as strum::VariantArray>::VARIANTS;

    /// The groups request durations are kept by: few, so histograms stay cheap.
    pub const FAMILIES: &'static [&'static str] = &["session", "query", "mount", "restore", "task"];

    pub fn family(self) -> &'static str {
        match self {
            Endpoint::Logon
            | Endpoint::TokenRefresh
            | Endpoint::Logoff
            | Endpoint::ServerInfo
            | Endpoint::ServerTime => "session",
            Endpoint::BackupObjects | Endpoint::RestorePoints => "query",
            Endpoint::MountCreate
            | Endpoint::MountList
            | Endpoint::MountGet
            | Endpoint::MountBrowse
            | Endpoint::MountDelete => "mount",
            Endpoint::PrepareDownload
            | Endpoint::Download
            | Endpoint::FileRestore
            | Endpoint::RestoreSession
            | Endpoint::Sessions => "restore",
            Endpoint::Task => "task",
        }
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Told about every request the client makes. The client knows nothing of metrics; the
/// exporter plugs its counters in here.
pub trait RequestObserver: Send + Sync {
    /// `status` is `None` when no HTTP status was received (timeout, transport error).
    fn observe(&self, endpoint: Endpoint, status: Option<u16>, elapsed: Duration);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_bounded_and_snake_case() {
        let mut names: Vec<_> = Endpoint::ALL.iter().map(|e| e.as_str()).collect();
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Endpoint::ALL.len());
        assert!(Endpoint::ALL.iter().all(|e| Endpoint::FAMILIES.contains(&e.family())));
    }
}
