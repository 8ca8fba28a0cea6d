//! Durable state in `--storage.path`: records of mounts in flight and of live logon sessions,
//! so a crash never loses track of either.
//!
//! **Invariants:**
//! - A mount record is written (and synced) *before* the mount is requested, updated with the
//!   task and then the mount link as they become known, and removed only after EM confirmed the
//!   unmount. It holds the logon session token that owns the mount (mounts are only reachable
//!   from that session).
//! - A session record is written right after each logon and removed after the log-off, so a
//!   session a crash left behind is logged off by the next start instead of piling up on EM.
//! - Records hold tokens, so the exporter keeps them in subdirectories it owns with mode `0700`
//!   and files `0600`. An existing `--storage.path` keeps its mode; one that others could write
//!   to (or owned by another user) is refused. File names never contain a session id.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::em::PointKind;
use crate::secret::Secret;

/// One mount in flight, as stored on disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountRecord {
    /// File name stem; unique.
    pub id: String,
    pub target: String,
    pub probe: String,
    pub vm: String,
    /// The logon session that owns the mount (a secret like the token: the token is its base64).
    #[serde(with = "stored_secret")]
    pub session_id: Secret,
    #[serde(with = "stored_secret")]
    pub token: Secret,
    pub point_kind: PointKind,
    pub point_id: String,
    /// Where the point's mounts are listed (and created).
    pub point_mounts_href: String,
    pub task_href: Option<String>,
    pub mount_href: Option<String>,
    #[serde(with = "humantime_serde")]
    pub created_at: SystemTime,
}

/// A logon session this exporter opened and has not logged off yet, as stored on disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    pub target: String,
    #[serde(with = "stored_secret")]
    pub session_id: Secret,
    #[serde(with = "stored_secret")]
    pub token: Secret,
    #[serde(with = "humantime_serde")]
    pub created_at: SystemTime,
}

/// The token must be stored for real in the record file; everywhere else it stays hidden.
mod stored_secret {
    use super::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// The state directory (`--storage.path`).
#[derive(Clone, Debug)]
pub struct Ledger {
    root: PathBuf,
    mounts: PathBuf,
    sessions: PathBuf,
}

impl Ledger {
    /// Opens the state directory: created `0700` when missing; when it exists its mode is left
    /// alone, but it must be ours and writable by nobody else (records hold session tokens).
    pub fn open(dir: &Path) -> Result<Ledger, String> {
        let dir_text = dir.display();
        match fs::metadata(dir) {
            Ok(meta) => check_private(dir, &meta)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create state directory {dir_text}: {e}"))?,
            Err(e) => return Err(format!("cannot open state directory {dir_text}: {e}")),
        }
        let ledger = Ledger { root: dir.to_owned(), mounts: dir.join("mounts"), sessions: dir.join("sessions") };
        for sub in [&ledger.mounts, &ledger.sessions] {
            match DirBuilder::new().mode(0o700).create(sub) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // Our own subdirectory: keep it private whatever happened to it.
                    let meta = fs::metadata(sub).map_err(|e| format!("cannot open {}: {e}", sub.display()))?;
                    check_owner(sub, &meta)?;
                    fs::set_permissions(sub, fs::Permissions::from_mode(0o700))
                        .map_err(|e| format!("cannot restrict permissions of {}: {e}", sub.display()))?;
                }
                Err(e) => return Err(format!("cannot create {}: {e}", sub.display())),
            }
        }
        for dir in [&ledger.root, &ledger.mounts, &ledger.sessions] {
            remove_interrupted_writes(dir);
        }
        Ok(ledger)
    }

    fn mount_path(&self, id: &str) -> PathBuf {
        self.mounts.join(format!("{id}.json"))
    }

    /// Session ids are secrets too: the file is named by a hash of the id.
    fn session_path(&self, session_id: &str) -> PathBuf {
        let digest = hex::encode(sha2::Sha256::digest(session_id.as_bytes()));
        self.sessions.join(format!("{}.json", &digest[..32]))
    }

    /// Writes a mount record atomically and durably.
    pub fn save(&self, record: &MountRecord) -> Result<(), String> {
        write_durably(&self.mount_path(&record.id), record)
    }

    /// Removes a mount record once its mount is confirmed gone.
    pub fn remove(&self, id: &str) -> Result<(), String> {
        remove_file(&self.mount_path(id))
    }

    /// All mount records of one target, oldest first.
    pub fn records(&self, target: &str) -> Vec<MountRecord> {
        let mut records: Vec<MountRecord> =
            read_all(&self.mounts).into_iter().filter(|r: &MountRecord| r.target == target).collect();
        records.sort_by_key(|r| r.created_at);
        records
    }

    /// Records a new logon session (before it can own anything).
    pub fn save_session(&self, record: &SessionRecord) -> Result<(), String> {
        write_durably(&self.session_path(record.session_id.expose()), record)
    }

    /// Forgets a session once it is logged off (or EM no longer knows it).
    pub fn remove_session(&self, session_id: &str) -> Result<(), String> {
        remove_file(&self.session_path(session_id))
    }

    /// A small state file of another module (e.g. the schedule); the default when missing.
    pub fn load_state<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, String> {
        let path = self.root.join(name);
        match fs::read(&path) {
            Ok(bytes) => decode_record(&bytes).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes a small state file atomically and durably.
    pub fn save_state<T: Serialize>(&self, name: &str, value: &T) -> Result<(), String> {
        write_durably(&self.root.join(name), value)
    }

    /// All session records of one target.
    pub fn sessions(&self, target: &str) -> Vec<SessionRecord> {
        read_all(&self.sessions).into_iter().filter(|r: &SessionRecord| r.target == target).collect()
    }
}

/// The effective user id, to check who owns the state directory.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), String> {
    if meta.uid() != euid() {
        return Err(format!(
            "state directory {} is owned by uid {}, not by this process (uid {}); records hold session tokens",
            path.display(),
            meta.uid(),
            euid()
        ));
    }
    Ok(())
}

fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), String> {
    if !meta.is_dir() {
        return Err(format!("state directory {} is not a directory", path.display()));
    }
    check_owner(path, meta)?;
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "state directory {} is writable by group or others (mode {mode:04o}); records hold session tokens, \
             so use a directory only this user can write to (e.g. chmod go-w)",
            path.display()
        ));
    }
    Ok(())
}

/// Writes a record atomically and durably (temp file, fsync, rename, fsync the directory).
fn write_durably(path: &Path, record: &impl Serialize) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let body = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write record {}: {e}", path.display())
    })
}

/// Removes the temporary files of writes a crash interrupted before their rename. Such a file
/// is never the only copy of anything: the record it was to replace is still there, and a new
/// mount record is written before the mount is requested.
fn remove_interrupted_writes(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') && name.ends_with(".tmp") && path.is_file() {
            match fs::remove_file(&path) {
                Ok(()) => tracing::info!(file = %path.display(), "removed a write interrupted by a crash"),
                Err(e) => tracing::warn!(file = %path.display(), err = %e, "cannot remove an interrupted write"),
            }
        }
    }
}

fn remove_file(path: &Path) -> Result<(), String> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove record {}: {e}", path.display())),
    }
}

/// One record file's contents (a [`MountRecord`], [`SessionRecord`] or state file).
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Every record in `dir`. Unreadable files are logged and skipped, so one corrupt file cannot
/// stop cleanup of the rest.
fn read_all<T: DeserializeOwned>(dir: &Path) -> Vec<T> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let read = fs::read(&p).map_err(|e| e.to_string());
            match read.and_then(|b| decode_record(&b)) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(file = %p.display(), err = %e, "unreadable record; remove it by hand after checking EM for a leftover mount or session");
                    None
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, target: &str) -> MountRecord {
        MountRecord {
            id: id.into(),
            target: target.into(),
            probe: "p".into(),
            vm: "vm".into(),
            session_id: Secret::new("s"),
            token: Secret::new("TOKEN"),
            point_kind: PointKind::Backup,
            point_id: "pt".into(),
            point_mounts_href: "h".into(),
            task_href: None,
            mount_href: None,
            created_at: SystemTime::now(),
        }
    }

    #[test]
    fn save_list_remove_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("state")).unwrap();
        ledger.save(&record("a", "t1")).unwrap();
        ledger.save(&record("b", "t2")).unwrap();
        let mut a = record("a", "t1");
        a.mount_href = Some("m".into());
        ledger.save(&a).unwrap();
        let listed = ledger.records("t1");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].mount_href.as_deref(), Some("m"));
        assert_eq!(listed[0].token.expose(), "TOKEN");
        let mode = fs::metadata(ledger.mount_path("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for d in ["state", "state/mounts", "state/sessions"] {
            let dir_mode = fs::metadata(dir.path().join(d)).unwrap().permissions().mode() & 0o777;
            assert_eq!(dir_mode, 0o700, "{d}");
        }
        assert!(!format!("{:?}", listed[0]).contains("TOKEN"));
        ledger.remove("a").unwrap();
        ledger.remove("a").unwrap();
        assert!(ledger.records("t1").is_empty());
    }

    #[test]
    fn writes_a_crash_interrupted_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let ledger = Ledger::open(&state).unwrap();
        ledger.save(&record("kept", "t")).unwrap();
        for stray in ["mounts/.new.json.tmp", "sessions/.abc.json.tmp", ".schedule.json.tmp"] {
            fs::write(state.join(stray), "{\"half\":").unwrap();
        }
        let ledger = Ledger::open(&state).unwrap();
        let mut left: Vec<String> = ["", "mounts", "sessions"]
            .iter()
            .flat_map(|d| fs::read_dir(state.join(d)).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "mounts" && n != "sessions")
            .collect();
        left.sort();
        assert_eq!(left, ["kept.json"]);
        assert_eq!(ledger.records("t").len(), 1);
    }

    #[test]
    fn corrupt_records_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("state")).unwrap();
        fs::write(dir.path().join("state/mounts/bad.json"), "{").unwrap();
        ledger.save(&record("ok", "t")).unwrap();
        assert_eq!(ledger.records("t").len(), 1);
    }

    #[test]
    fn an_existing_directory_keeps_its_mode_and_a_writable_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
        Ledger::open(&shared).unwrap();
        assert_eq!(fs::metadata(&shared).unwrap().permissions().mode() & 0o777, 0o755);
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Ledger::open(&shared).unwrap_err();
        assert!(err.contains("writable by group or others"), "{err}");
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(Ledger::open(&file).unwrap_err().contains("not a directory"));
    }

    #[test]
    fn session_records_are_named_without_the_session_id() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("state")).unwrap();
        let record = SessionRecord {
            target: "t".into(),
            session_id: Secret::new("SESSION-ID-1"),
            token: Secret::new("TOKEN"),
            created_at: SystemTime::now(),
        };
        ledger.save_session(&record).unwrap();
        let names: Vec<String> = fs::read_dir(dir.path().join("state/sessions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(!names[0].contains("SESSION-ID-1"));
        let listed = ledger.sessions("t");
        assert_eq!(listed[0].session_id.expose(), "SESSION-ID-1");
        assert!(ledger.sessions("other").is_empty());
        assert!(!format!("{:?}", listed[0]).contains("SESSION-ID-1"));
        ledger.remove_session("SESSION-ID-1").unwrap();
        assert!(ledger.sessions("t").is_empty());
    }
}
