//! What the simulated backup server knows: users and their roles, machines, their restore points
//! and the guest files inside those points. Fixed ids so tests and docs can name them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Built-in roles of VBR. Names as the spec's "Available to" lines spell them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    #[serde(rename = "Veeam Backup Administrator")]
    BackupAdministrator,
    #[serde(rename = "Veeam Backup Operator")]
    BackupOperator,
    #[serde(rename = "Veeam Restore Operator")]
    RestoreOperator,
    #[serde(rename = "Veeam Backup Viewer")]
    BackupViewer,
    #[serde(rename = "Veeam Tape Operator")]
    TapeOperator,
    #[serde(rename = "Veeam Security Administrator")]
    SecurityAdministrator,
}

/// An account that can ask for a token.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub name: String,
    pub password: String,
    pub role: Role,
    /// A disabled account is refused a token (401) even with the right password.
    #[serde(default)]
    pub disabled: bool,
    /// After this many consecutive wrong passwords the account is locked out (401 for every
    /// password) until the simulator restarts. 0 = never.
    #[serde(default)]
    pub lockout_after: u32,
}

/// Guest OS family; decides the FLR type (`Windows`/`Linux`) a point can be mounted with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GuestOs {
    Windows,
    Linux,
}

/// `ESuspiciousActivitySeverity`; `Informative` exists only from 1.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Malware {
    Clean,
    Suspicious,
    Infected,
    Informative,
}

/// One restore point of a machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub id: Uuid,
    /// Age at simulator start (`creationTime` = start − age), humantime on the wire (`"1h"`).
    #[serde(with = "human")]
    pub age: Duration,
    pub malware: Malware,
    /// `Full` or `Increment`.
    #[serde(default = "full")]
    pub kind: String,
    /// Guest path → content. Empty in a file means "the VM's `files`".
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

fn full() -> String {
    "Full".into()
}

/// A backed-up machine (a VMware VM).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vm {
    pub id: Uuid,
    pub name: String,
    pub os: GuestOs,
    /// The backup (job's backup) the points belong to: `backupId` of each point.
    pub backup_id: Uuid,
    /// Guest files present in every point that does not list its own.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    pub points: Vec<Point>,
}

/// A mount somebody else started before the simulator came up.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForeignMount {
    pub session_id: Uuid,
    pub restore_point_id: Uuid,
    pub initiator: String,
}

/// The whole inventory; a JSON or YAML file can replace the built-in one.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub users: Vec<User>,
    pub vms: Vec<Vm>,
    #[serde(default)]
    pub foreign_mounts: Vec<ForeignMount>,
    /// `platformId` of every point: the VMware platform's id.
    #[serde(default = "vmware_platform")]
    pub platform_id: Uuid,
}

fn vmware_platform() -> Uuid {
    Uuid::from_u128(0x00000000_0000_0000_0000_000000000000)
}

/// Fixed ids: `5a1e0000-0000-4000-8000-0000000000NN` for VMs, `…-0000000001NN` for points.
pub fn fixed(n: u128) -> Uuid {
    Uuid::from_u128(0x5a1e0000_0000_4000_8000_000000000000 | n)
}

fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(p, c)| ((*p).into(), (*c).into())).collect()
}

fn point(id: u128, hours: u64, malware: Malware, kind: &str) -> Point {
    Point { id: fixed(id), age: Duration::from_secs(hours * 3600), malware, kind: kind.into(), files: BTreeMap::new() }
}

fn user(name: &str, password: &str, role: Role) -> User {
    User { name: name.into(), password: password.into(), role, disabled: false, lockout_after: 0 }
}

/// Content of the built-in canary files (documented in the README).
pub const WIN_CANARY: &str = "veeam-restore-exporter canary file on canary-win01\n";
pub const LNX_CANARY: &str = "veeam-restore-exporter canary file on canary-lnx01\n";
pub const INFECTED_CANARY: &str = "veeam-restore-exporter canary file on canary-infected01\n";

impl Inventory {
    /// The inventory documented in the README.
    pub fn builtin() -> Inventory {
        let users = vec![
            user("svc-canary", "canary", Role::RestoreOperator),
            user("admin", "admin", Role::BackupAdministrator),
            user("viewer", "viewer", Role::BackupViewer),
            User { disabled: true, ..user("disabled", "disabled", Role::RestoreOperator) },
            User { lockout_after: 3, ..user("lockme", "lockme", Role::RestoreOperator) },
        ];
        let win = Vm {
            id: fixed(1),
            name: "canary-win01".into(),
            os: GuestOs::Windows,
            backup_id: fixed(0x201),
            files: files(&[
                ("C:\\canary\\canary.txt", WIN_CANARY),
                ("C:\\canary\\sub\\nested.txt", "nested\n"),
                ("D:\\data\\readme.txt", "data drive\n"),
            ]),
            points: vec![
                point(0x101, 1, Malware::Clean, "Increment"),
                point(0x102, 25, Malware::Clean, "Increment"),
                point(0x103, 49, Malware::Clean, "Full"),
            ],
        };
        let lnx = Vm {
            id: fixed(2),
            name: "canary-lnx01".into(),
            os: GuestOs::Linux,
            backup_id: fixed(0x202),
            files: files(&[("/canary/canary.txt", LNX_CANARY), ("/etc/hostname", "canary-lnx01\n")]),
            points: vec![
                point(0x111, 2, Malware::Clean, "Increment"),
                point(0x112, 26, Malware::Informative, "Increment"),
                point(0x113, 50, Malware::Clean, "Full"),
            ],
        };
        let infected = Vm {
            id: fixed(3),
            name: "canary-infected01".into(),
            os: GuestOs::Windows,
            backup_id: fixed(0x203),
            files: files(&[("C:\\canary\\canary.txt", INFECTED_CANARY)]),
            points: vec![point(0x121, 1, Malware::Infected, "Increment"), point(0x122, 25, Malware::Clean, "Full")],
        };
        Inventory {
            users,
            vms: vec![win, lnx, infected],
            foreign_mounts: vec![ForeignMount {
                session_id: fixed(0x301),
                restore_point_id: fixed(0x102),
                initiator: "CORP\\backup-admin2".into(),
            }],
            platform_id: vmware_platform(),
        }
    }

    /// Reads a JSON file, or YAML if the name ends in `.yml`/`.yaml`, and fills each point's
    /// `files` from its VM's where empty.
    pub fn load(path: &Path) -> Result<Inventory, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"));
        let inv: Inventory = if yaml {
            serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        };
        Ok(inv)
    }

    /// Each point's own files, the VM's where the point lists none.
    pub fn resolve_files(&mut self) {
        for vm in &mut self.vms {
            for p in &mut vm.points {
                if p.files.is_empty() {
                    p.files = vm.files.clone();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_round_trips_through_json_and_yaml_files() {
        let inv = Inventory::builtin();
        let dir = std::env::temp_dir().join(format!("vbr-sim-inv-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let json_path = dir.join("inv.json");
        std::fs::write(&json_path, serde_json::to_string(&inv).unwrap()).unwrap();
        let yaml_path = dir.join("inv.yaml");
        std::fs::write(&yaml_path, serde_norway::to_string(&inv).unwrap()).unwrap();
        for p in [json_path, yaml_path] {
            let back = Inventory::load(&p).unwrap();
            assert_eq!(back.vms.len(), 3);
            assert_eq!(back.vms[0].points[1].age, Duration::from_secs(25 * 3600));
            assert_eq!(back.users[0].role, Role::RestoreOperator);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Durations as humantime strings (`"25h"`).
mod human {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}
