//! An EM logon session: it owns every mount it created, so it is recorded at logon and logged
//! off once nothing needs it; a session a crash left open is logged off by the next process
//! instead of piling up on EM.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::MountRecord;
use crate::em::Session;
use crate::ledger::{Record, stored_secret};
use crate::secret::Secret;
use crate::target::TargetRuntime;

/// A logon session this exporter opened and has not logged off yet (`sessions/<hash>.json`).
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

impl Record for SessionRecord {
    const DIR: &'static str = "sessions";
    /// Session ids are secrets: the file is named by a hash of the id.
    fn file_stem(&self) -> String {
        hex::encode(&sha2::Sha256::digest(self.session_id.expose().as_bytes())[..16])
    }
    fn target(&self) -> &str {
        &self.target
    }
    fn created_at(&self) -> SystemTime {
        self.created_at
    }
}

impl SessionRecord {
    pub fn of(target: &str, session: &Session) -> SessionRecord {
        SessionRecord {
            target: target.to_owned(),
            session_id: Secret::new(session.id()),
            token: session.token().clone(),
            created_at: SystemTime::now(),
        }
    }
}

/// Logs off recorded sessions that are not the current one, own no recorded mount and no run
/// uses: those of a crashed earlier process (once their mounts are resolved), or retired ones
/// nothing needs any more.
pub(super) async fn log_off_stale(t: &TargetRuntime, current: Option<&Session>) {
    let records = t.ledger.all::<MountRecord>(t.name());
    for stale in t.ledger.all::<SessionRecord>(t.name()) {
        let id = stale.session_id.expose();
        if current.is_some_and(|s| s.id() == id) || t.session_needed(id, &records) {
            continue;
        }
        let Ok(client) = t.client(Secret::new(String::new())) else { continue };
        t.log_off(&client.resume(id, stale.token.clone())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;

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
        ledger.put(&record).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path().join("state/sessions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(!names[0].contains("SESSION-ID-1"));
        let listed = ledger.all::<SessionRecord>("t");
        assert_eq!(listed[0].session_id.expose(), "SESSION-ID-1");
        assert!(ledger.all::<SessionRecord>("other").is_empty());
        assert!(!format!("{:?}", listed[0]).contains("SESSION-ID-1"));
        ledger.remove(&record).unwrap();
        assert!(ledger.all::<SessionRecord>("t").is_empty());
    }
}
