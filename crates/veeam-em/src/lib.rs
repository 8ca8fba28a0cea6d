//! Client for the Veeam Backup Enterprise Manager REST API (`https://<em>:9398/api/`), XML or
//! JSON, written from Veeam's documentation.
//!
//! **Architecture invariant:** this crate knows nothing of metrics, probes, scheduling or
//! axum. It turns EM calls into typed values and typed [`Error`]s; polling and retries belong
//! to the caller. Request accounting is exposed through [`RequestObserver`].

mod client;
mod error;
pub(crate) mod model;
mod session;
pub(crate) mod wire;

pub use client::{Client, ClientConfig, Endpoint, Format, OsKind, RequestObserver, SESSION_HEADER};
pub use error::{Error, Result};
pub use model::{
    DirectoryEntry, EntryPoint, FileEntry, FileSystemEntries, Link, LogonInfo, Mount, PointKind, RestorePoint,
    RestoreSession, RestoreSessionResult, RestoreSessionState, Task, TaskResult, TaskState, id_from_href, parse_time,
};
pub use session::Session;
pub use session::quote_filter_value;
pub use veeam_secret::Secret;

pub mod fuzzing;

/// Decoders exposed for fixture tests of the documented example bodies.
#[doc(hidden)]
pub mod decode {
    use super::wire::Doc;
    use super::*;

    fn doc(body: &[u8]) -> Result<Doc> {
        Doc::parse(body).map_err(Error::Decode)
    }
    pub fn task(body: &[u8]) -> Result<Task> {
        Task::decode(doc(body)?.root())
    }
    pub fn restore_points(body: &[u8], kind: PointKind) -> Result<Vec<RestorePoint>> {
        RestorePoint::decode_query(doc(body)?.root(), kind)
    }
    pub fn restore_point(body: &[u8], kind: PointKind) -> Result<RestorePoint> {
        RestorePoint::decode(doc(body)?.root(), kind)
    }
    pub fn mount(body: &[u8]) -> Result<Mount> {
        Mount::decode(doc(body)?.root())
    }
    pub fn mounts(body: &[u8], kind: PointKind) -> Result<Vec<Mount>> {
        Mount::decode_list(doc(body)?.root(), kind)
    }
    pub fn restore_session(body: &[u8]) -> Result<RestoreSession> {
        RestoreSession::decode(doc(body)?.root())
    }
    pub fn logon(body: &[u8]) -> Result<LogonInfo> {
        LogonInfo::decode(doc(body)?.root())
    }
    pub fn entry_point(body: &[u8]) -> Result<EntryPoint> {
        Ok(EntryPoint::decode(doc(body)?.root()))
    }
    pub fn error_message(body: &[u8]) -> Result<Option<String>> {
        Ok(model::error_message(doc(body)?.root()))
    }
    pub fn file_system_entries(body: &[u8]) -> Result<FileSystemEntries> {
        Ok(FileSystemEntries::decode(doc(body)?.root()))
    }
}
