//! Durable records of mounts this exporter created, so a crash never loses track of one.
//!
//! **Invariant:** a record is written (and synced) *before* the mount is requested, updated
//! with the task and then the mount link as they become known, and removed only after EM
//! confirmed the unmount. A record holds the logon session token that owns the mount (mounts
//! are only reachable from that session), so the directory is `0700` and files are `0600`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

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
    pub session_id: String,
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
    dir: PathBuf,
}

impl Ledger {
    /// Opens (creating if needed) the state directory and tightens its permissions.
    pub fn open(dir: &Path) -> Result<Ledger, String> {
        let mounts = dir.join("mounts");
        fs::create_dir_all(&mounts).map_err(|e| format!("cannot create state directory {}: {e}", mounts.display()))?;
        for d in [dir, mounts.as_path()] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot restrict permissions of {}: {e}", d.display()))?;
        }
        Ok(Ledger { dir: mounts })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes a record atomically and durably (temp file, fsync, rename, fsync the directory).
    pub fn save(&self, record: &MountRecord) -> Result<(), String> {
        let path = self.path(&record.id);
        let tmp = self.dir.join(format!(".{}.tmp", record.id));
        let body = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            file.write_all(&body)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| format!("cannot write mount record {}: {e}", path.display()))
    }

    /// Removes a record once its mount is confirmed gone.
    pub fn remove(&self, id: &str) -> Result<(), String> {
        match fs::remove_file(self.path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove mount record {id}: {e}")),
        }
    }

    /// All records of one target. Unreadable files are reported, not fatal: they are logged and
    /// skipped so one corrupt file cannot stop cleanup of the rest.
    pub fn records(&self, target: &str) -> Vec<MountRecord> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut records: Vec<MountRecord> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| match fs::read(&p).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(file = %p.display(), err = %e, "unreadable mount record; remove it by hand after checking EM for a leftover mount");
                    None
                }
            })
            .filter(|r: &MountRecord| r.target == target)
            .collect();
        records.sort_by_key(|r| r.created_at);
        records
    }
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
            session_id: "s".into(),
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
        let mode = fs::metadata(ledger.path("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(dir.path().join("state")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(!format!("{:?}", listed[0]).contains("TOKEN"));
        ledger.remove("a").unwrap();
        ledger.remove("a").unwrap();
        assert!(ledger.records("t1").is_empty());
    }

    #[test]
    fn corrupt_records_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        fs::write(dir.path().join("mounts/bad.json"), "{").unwrap();
        ledger.save(&record("ok", "t")).unwrap();
        assert_eq!(ledger.records("t").len(), 1);
    }
}
