//! Durable state in `--storage.path`: plain storage, one file per record, so a crash never loses
//! track of anything a run left on a server. What the records mean, and when they are written
//! and removed, belongs to [`crate::cleanup`]; this module only keeps them safe.
//!
//! **Invariants:**
//! - Every write is atomic and durable (temp file, fsync, rename, fsync the directory); a write a
//!   crash interrupted is removed on open, and it is never the only copy of anything.
//! - Records hold tokens, so the exporter keeps them in subdirectories it owns with mode `0700`
//!   and files `0600`. An existing `--storage.path` keeps its mode; one that others could write
//!   to (or owned by another user) is refused. On Windows the directories get a protected ACL
//!   instead (SYSTEM, Administrators, the exporter's account), which files inherit
//!   ([`crate::platform`]). File names never contain a secret.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::platform;

/// A kind of record: kept one file per record in a subdirectory of its own.
pub trait Record: Serialize + DeserializeOwned {
    /// The subdirectory, e.g. `mounts`.
    const DIR: &'static str;
    /// The file name without `.json`; unique within [`Record::DIR`] and never a secret.
    fn file_stem(&self) -> String;
    /// The configured target the record belongs to.
    fn target(&self) -> &str;
    fn created_at(&self) -> SystemTime;
}

/// Stores a [`crate::secret::Secret`] for real in a record file (`#[serde(with = …)]`); everywhere
/// else it stays hidden.
pub mod stored_secret {
    use crate::secret::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// The state directory, held by this process until dropped (see [`Ledger::lock`]).
#[derive(Debug)]
pub struct StateLock {
    _file: fs::File,
}

/// The state directory (`--storage.path`).
#[derive(Clone, Debug)]
pub struct Ledger {
    root: PathBuf,
}

impl Ledger {
    /// Opens the state directory: created `0700` when missing; when it exists its mode is left
    /// alone, but it must be ours and writable by nobody else (records hold session tokens).
    /// Subdirectories are ours: they are made private again whatever happened to them.
    pub fn open(dir: &Path) -> Result<Ledger, String> {
        let dir_text = dir.display();
        match fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => return Err(format!("state directory {dir_text} is not a directory")),
            Ok(meta) => platform::adopt_state_dir(dir, &meta)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => platform::create_private_dir(dir, true)
                .map_err(|e| format!("cannot create state directory {dir_text}: {e}"))?,
            Err(e) => return Err(format!("cannot open state directory {dir_text}: {e}")),
        }
        remove_interrupted_writes(dir);
        let entries = fs::read_dir(dir).map_err(|e| format!("cannot read state directory {dir_text}: {e}"))?;
        for sub in entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()) {
            let meta = fs::metadata(&sub).map_err(|e| format!("cannot open {}: {e}", sub.display()))?;
            platform::adopt_subdir(&sub, &meta)?;
            remove_interrupted_writes(&sub);
        }
        Ok(Ledger { root: dir.to_owned() })
    }

    /// Takes the state directory for this process, or says who has it. One process at a time:
    /// two would each take the other's mounts in flight for orphans and unmount them. The
    /// operating system drops the lock when the process ends, however it ends.
    pub fn lock(&self) -> Result<StateLock, String> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(format!(
                "state directory {} is in use by another veeam-restore-exporter process (the running service?); \
                 stop it, or give this one another --storage.path",
                self.root.display()
            )),
            Err(fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }

    fn dir_of<R: Record>(&self) -> PathBuf {
        self.root.join(R::DIR)
    }

    fn path_of<R: Record>(&self, record: &R) -> PathBuf {
        self.dir_of::<R>().join(format!("{}.json", record.file_stem()))
    }

    /// Writes a record atomically and durably (its subdirectory is created `0700` if missing).
    pub fn put<R: Record>(&self, record: &R) -> Result<(), String> {
        let dir = self.dir_of::<R>();
        match platform::create_private_dir(&dir, false) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
        write_durably(&self.path_of(record), record)
    }

    /// Removes a record; removing one that is gone already is no error.
    pub fn remove<R: Record>(&self, record: &R) -> Result<(), String> {
        remove_file(&self.path_of(record))
    }

    /// Every record of one kind and target, oldest first.
    pub fn all<R: Record>(&self, target: &str) -> Vec<R> {
        let mut records: Vec<R> =
            read_all(&self.dir_of::<R>()).into_iter().filter(|r: &R| r.target() == target).collect();
        records.sort_by_key(|r| r.created_at());
        records
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
}

/// Writes a record atomically and durably (temp file, fsync, rename, fsync the directory).
fn write_durably(path: &Path, record: &impl Serialize) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let body = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
    let write = || -> std::io::Result<()> {
        let mut file = platform::create_private_file(&tmp)?;
        file.write_all(&body)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        platform::sync_dir(dir)
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

/// One record file's contents (a [`Record`] or a state file).
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
    struct Note {
        id: String,
        target: String,
        #[serde(with = "stored_secret")]
        token: crate::secret::Secret,
        #[serde(with = "humantime_serde")]
        at: SystemTime,
    }

    impl Record for Note {
        const DIR: &'static str = "notes";
        fn file_stem(&self) -> String {
            self.id.clone()
        }
        fn target(&self) -> &str {
            &self.target
        }
        fn created_at(&self) -> SystemTime {
            self.at
        }
    }

    fn note(id: &str, target: &str) -> Note {
        Note { id: id.into(), target: target.into(), token: crate::secret::Secret::new("TOKEN"), at: SystemTime::now() }
    }

    #[test]
    fn put_list_remove_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("state")).unwrap();
        ledger.put(&note("a", "t1")).unwrap();
        ledger.put(&note("b", "t2")).unwrap();
        ledger.put(&note("c", "t1")).unwrap();
        let listed: Vec<Note> = ledger.all("t1");
        assert_eq!(listed.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["a", "c"], "oldest first");
        assert_eq!(listed[0].token.expose(), "TOKEN");
        let mode = fs::metadata(dir.path().join("state/notes/a.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for d in ["state", "state/notes"] {
            let dir_mode = fs::metadata(dir.path().join(d)).unwrap().permissions().mode() & 0o777;
            assert_eq!(dir_mode, 0o700, "{d}");
        }
        assert!(!format!("{:?}", listed[0]).contains("TOKEN"));
        ledger.remove(&note("a", "t1")).unwrap();
        ledger.remove(&note("a", "t1")).unwrap();
        assert_eq!(ledger.all::<Note>("t1").len(), 1);
    }

    #[test]
    fn writes_a_crash_interrupted_are_removed_and_subdirectories_made_private_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let ledger = Ledger::open(&state).unwrap();
        ledger.put(&note("kept", "t")).unwrap();
        fs::set_permissions(state.join("notes"), fs::Permissions::from_mode(0o755)).unwrap();
        for stray in ["notes/.new.json.tmp", ".schedule.json.tmp"] {
            fs::write(state.join(stray), "{\"half\":").unwrap();
        }
        let ledger = Ledger::open(&state).unwrap();
        let mut left: Vec<String> = ["", "notes"]
            .iter()
            .flat_map(|d| fs::read_dir(state.join(d)).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "notes")
            .collect();
        left.sort();
        assert_eq!(left, ["kept.json"]);
        assert_eq!(ledger.all::<Note>("t").len(), 1);
        assert_eq!(fs::metadata(state.join("notes")).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn corrupt_records_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("state")).unwrap();
        ledger.put(&note("ok", "t")).unwrap();
        fs::write(dir.path().join("state/notes/bad.json"), "{").unwrap();
        assert_eq!(ledger.all::<Note>("t").len(), 1);
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
}
