//! What the simulated EM knows about: accounts, VMs, their restore points and indexed guest files.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::vocab::{OsKind, PointKind};

/// The inventory file (YAML; JSON is valid YAML too). Unknown keys are errors.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// Accounts allowed to log on.
    pub users: Vec<UserSpec>,
    pub vms: Vec<VmSpec>,
    /// Backup and replication jobs with their recent sessions (the reporting endpoints).
    #[serde(default)]
    pub jobs: Vec<JobSpec>,
    #[serde(default)]
    pub repositories: Vec<RepositorySpec>,
}

/// A job of the backup server and its sessions, newest last.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    /// `Backup` or `Replica`.
    #[serde(default = "backup_job")]
    pub job_type: String,
    #[serde(default)]
    pub vms: Vec<String>,
    #[serde(default)]
    pub sessions: Vec<JobSessionSpec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSessionSpec {
    /// `Success`, `Warning`, `Failed`, or `None` while it runs.
    pub result: String,
    #[serde(with = "humantime_serde")]
    pub age: Duration,
    /// Absent while it runs.
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySpec {
    pub name: String,
    #[serde(default = "windows_repository")]
    pub kind: String,
    pub capacity_bytes: u64,
    pub free_bytes: u64,
}

fn backup_job() -> String {
    "Backup".into()
}

fn windows_repository() -> String {
    "WinLocal".into()
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSpec").field("name", &self.name).field("password", &"<secret>").finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    pub name: String,
    #[serde(default = "default_os")]
    pub os: OsKind,
    /// Whether guest files are indexed (the catalog only knows indexed VMs).
    #[serde(default = "yes")]
    pub indexed: bool,
    /// Restore points by age; the newest has the smallest age.
    pub points: Vec<PointSpec>,
    /// Guest files by path (`C:/dir/file.txt`) and their contents.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    pub kind: PointKind,
    #[serde(with = "humantime_serde")]
    pub age: Duration,
}

fn default_os() -> OsKind {
    OsKind::Windows
}
fn yes() -> bool {
    true
}

/// The demo/test default: a Windows and a Linux canary VM, backup and replica points, files.
pub const DEFAULT_INVENTORY: &str = r#"
users:
  - name: svc-canary
    password: canary
vms:
  - name: canary-win01
    os: Windows
    points:
      - { kind: backup, age: 26h }
      - { kind: backup, age: 2h }
      - { kind: replica, age: 1h }
    files:
      "C:/canary/canary.txt": "veeam-restore-exporter canary file\n"
      "C:/canary/sub dir/report 2026.txt": "a file with spaces in its path\n"
      "D:/data/readme.txt": "second volume\n"
  - name: canary-lnx01
    os: Linux
    points:
      - { kind: backup, age: 3h }
    files:
      "/etc/canary.conf": "canary=1\n"
jobs:
  - name: Canary backup
    vms: [canary-win01, canary-lnx01]
    sessions:
      - { result: Success, age: 26h, duration: 20m }
      - { result: Warning, age: 2h, duration: 25m }
  - name: File servers
    vms: [canary-win01]
    sessions:
      - { result: Failed, age: 5h, duration: 3m }
  - name: Canary replica
    job_type: Replica
    vms: [canary-win01]
    sessions:
      - { result: Success, age: 1h, duration: 10m }
repositories:
  - { name: Backup Volume 01, capacity_bytes: 1079639011328, free_bytes: 881812750336 }
"#;

/// One restore point with its fixed identity.
#[derive(Clone, Debug)]
pub(crate) struct Point {
    pub id: String,
    pub kind: PointKind,
    pub vm: String,
    pub created: SystemTime,
}

/// The inventory as the simulator uses it.
#[derive(Clone, Debug)]
pub(crate) struct Inventory {
    pub users: Vec<UserSpec>,
    pub vms: Vec<VmSpec>,
    pub points: Vec<Point>,
    pub jobs: Vec<JobSpec>,
    pub repositories: Vec<RepositorySpec>,
}

impl Inventory {
    pub(crate) fn build(file: InventoryFile) -> Result<Inventory, String> {
        if file.users.is_empty() {
            return Err("inventory: at least one user is required".to_owned());
        }
        let now = SystemTime::now();
        let mut points = Vec::new();
        for vm in &file.vms {
            for spec in &vm.points {
                points.push(Point {
                    id: uuid::Uuid::new_v4().to_string(),
                    kind: spec.kind,
                    vm: vm.name.clone(),
                    // Whole seconds, like the `Name` EM derives from it.
                    created: truncate_to_secs(now - spec.age),
                });
            }
        }
        Ok(Inventory { users: file.users, vms: file.vms, points, jobs: file.jobs, repositories: file.repositories })
    }

    pub(crate) fn parse(text: &str) -> Result<Inventory, String> {
        let file: InventoryFile = serde_norway::from_str(text).map_err(|e| format!("inventory: {e}"))?;
        Inventory::build(file)
    }

    pub(crate) fn vm(&self, name: &str) -> Option<&VmSpec> {
        self.vms.iter().find(|v| v.name.eq_ignore_ascii_case(name))
    }

    /// Writes a guest file (creating it), as a scheduled task inside the VM would before the
    /// next backup. Returns false for an unknown VM.
    pub(crate) fn set_file(&mut self, vm: &str, path: &str, content: &str) -> bool {
        let Some(spec) = self.vms.iter_mut().find(|v| v.name.eq_ignore_ascii_case(vm)) else { return false };
        let key = path_key(path);
        spec.files.retain(|p, _| path_key(p) != key);
        spec.files.insert(path.to_owned(), content.to_owned());
        true
    }

    pub(crate) fn point(&self, kind: PointKind, id: &str) -> Option<&Point> {
        self.points.iter().find(|p| p.kind == kind && p.id == id)
    }
}

fn truncate_to_secs(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// Normalises a guest path for comparison: `/` separators, no empty segments, lower case.
pub(crate) fn path_key(path: &str) -> Vec<String> {
    path.split(['/', '\\']).filter(|s| !s.is_empty()).map(str::to_lowercase).collect()
}

/// A directory listing derived from the file paths of a VM.
pub(crate) struct Listing {
    pub directories: Vec<String>,
    pub files: Vec<(String, u64)>,
}

impl VmSpec {
    /// The top-level volumes (`C:`, `D:`, or `/` children for Linux).
    pub(crate) fn roots(&self) -> Vec<String> {
        let mut roots: Vec<String> =
            self.files.keys().filter_map(|p| p.split(['/', '\\']).find(|s| !s.is_empty()).map(str::to_owned)).collect();
        roots.sort();
        roots.dedup();
        roots
    }

    pub(crate) fn file(&self, path: &str) -> Option<&str> {
        let key = path_key(path);
        self.files.iter().find(|(p, _)| path_key(p) == key).map(|(_, c)| c.as_str())
    }

    /// Lists one directory; `None` when no file lies under it.
    pub(crate) fn list(&self, directory: &str) -> Option<Listing> {
        let dir = path_key(directory);
        let mut directories = Vec::new();
        let mut files = Vec::new();
        let mut found = false;
        for (path, content) in &self.files {
            let original: Vec<&str> = path.split(['/', '\\']).filter(|s| !s.is_empty()).collect();
            if original.len() <= dir.len() || path_key(path)[..dir.len()] != dir[..] {
                continue;
            }
            found = true;
            if original.len() == dir.len() + 1 {
                files.push((original[dir.len()].to_owned(), content.len() as u64));
            } else {
                directories.push(original[dir.len()].to_owned());
            }
        }
        directories.sort();
        directories.dedup();
        found.then_some(Listing { directories, files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_inventory_parses_and_lists() {
        let inv = Inventory::parse(DEFAULT_INVENTORY).unwrap();
        let vm = inv.vm("CANARY-WIN01").unwrap();
        assert_eq!(vm.roots(), vec!["C:", "D:"]);
        let root = vm.list("C:").unwrap();
        assert_eq!(root.directories, vec!["canary"]);
        let dir = vm.list("c:/canary").unwrap();
        assert_eq!(dir.directories, vec!["sub dir"]);
        assert_eq!(dir.files, vec![("canary.txt".to_owned(), 35)]);
        assert!(vm.list("E:").is_none());
        assert_eq!(vm.file(r"C:\canary\canary.txt"), Some("veeam-restore-exporter canary file\n"));
        assert_eq!(inv.points.len(), 4);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Inventory::parse("users: [{name: a, password: b}]\nvms: []\nextra: 1\n").unwrap_err();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }
}
