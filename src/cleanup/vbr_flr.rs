//! A VBR file-level-restore (FLR) mount: what a probe run against VBR leaves on the server
//! until it unmounts it.
//!
//! VBR addresses an FLR mount by its session id, whoever is logged on, so the record needs no
//! token: it is written before the mount is requested (restore point, time) and gets the session
//! id once VBR answers. When that answer was lost, the file-level-restore sessions started since
//! the record (`GET /api/v1/sessions?createdAfterFilter=`) tell what became of the request: one
//! of the recorded machine, not claimed by another record, and (on 1.3, which says who started
//! it) started by our own account, is ours, mounted or still mounting; none means the request
//! never reached VBR. Someone else's mount is never unmounted.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use veeam_vbr::Session;

use super::Outcome;
use crate::ledger::Record;
use crate::target::TargetRuntime;

/// Clocks of the exporter and VBR may differ: sessions this much older than the record count.
const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// One FLR mount in flight, as stored on disk (`flr/<id>.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlrRecord {
    /// File name stem; unique.
    pub id: String,
    pub target: String,
    pub probe: String,
    pub vm: String,
    pub restore_point_id: String,
    /// The FLR session id, once VBR answered the mount request.
    pub session_id: Option<String>,
    #[serde(with = "humantime_serde")]
    pub created_at: SystemTime,
}

impl Record for FlrRecord {
    const DIR: &'static str = "flr";
    fn file_stem(&self) -> String {
        self.id.clone()
    }
    fn target(&self) -> &str {
        &self.target
    }
    fn created_at(&self) -> SystemTime {
        self.created_at
    }
}

impl FlrRecord {
    /// The record of an FLR mount of `restore_point_id` about to be requested.
    pub fn before_mount(target: &str, probe: &str, vm: &str, restore_point_id: &str) -> FlrRecord {
        FlrRecord {
            id: uuid::Uuid::new_v4().to_string(),
            target: target.to_owned(),
            probe: probe.to_owned(),
            vm: vm.to_owned(),
            restore_point_id: restore_point_id.to_owned(),
            session_id: None,
            created_at: SystemTime::now(),
        }
    }
}

/// Follows one record up; returns the outcome and how many mounts it unmounted (each logged
/// and counted). `claimed`: the FLR session ids other records know.
pub(super) async fn clean(
    t: &TargetRuntime,
    r: &FlrRecord,
    session: &Session,
    claimed: &HashSet<String>,
) -> (Outcome, u32) {
    let id = match &r.session_id {
        Some(id) => id.clone(),
        // A run in progress may hold a mount whose answer it has not recorded yet.
        None if !t.in_flight().is_idle() => return (pending_for("probe runs in progress on this target"), 0),
        None => match find_lost(t, r, session, claimed).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                tracing::info!(target_name = t.name(), probe = %r.probe, "no FLR session came of a mount request whose answer was lost; dropping its record");
                return (Outcome::Resolved, 0);
            }
            Err(e) => return (pending(e), 0),
        },
    };
    match session.session_info(&id).await {
        Ok(info) if info.is_stopped() => return (Outcome::Resolved, 0),
        Err(veeam_vbr::Error::NotFound { .. }) => return (Outcome::Resolved, 0),
        // Still mounting: VBR answers the mount request, and accepts an unmount, once mounted.
        Ok(info) if !session.mounts().await.is_ok_and(|m| m.iter().any(|m| m.session_id == id)) => {
            let why = format!("its FLR session is {:?}; waiting for the mount to unmount it", info.state);
            return (Outcome::Pending { why, waiting: true }, 0);
        }
        Ok(_) => {}
        Err(e) => return (pending(e), 0),
    }
    match session.unmount(&id).await {
        Ok(_) => {
            tracing::info!(target_name = t.name(), probe = %r.probe, vm = %r.vm, "unmounted an FLR mount left behind by an earlier run");
            t.count_orphan_cleaned();
            // Resolved once a later pass sees the session stopped.
            (Outcome::Pending { why: "unmounted; confirming the FLR session stopped".into(), waiting: true }, 1)
        }
        // Gone already, or a 404 from elsewhere: the session's state decides, next pass.
        Err(veeam_vbr::Error::NotFound { .. }) => (
            Outcome::Pending {
                why: "VBR answered 404 to the unmount; confirming the FLR session stopped".into(),
                waiting: true,
            },
            0,
        ),
        Err(e) => (pending(e), 0),
    }
}

fn pending(e: veeam_vbr::Error) -> Outcome {
    pending_for(&e.to_string())
}

fn pending_for(why: &str) -> Outcome {
    Outcome::Pending { why: why.to_owned(), waiting: false }
}

/// The FLR session a lost mount request started, if one can be told apart as ours.
async fn find_lost(
    t: &TargetRuntime,
    r: &FlrRecord,
    session: &Session,
    claimed: &HashSet<String>,
) -> veeam_vbr::Result<Option<String>> {
    let since = r.created_at.checked_sub(CLOCK_SKEW).unwrap_or(r.created_at);
    let sessions = session.sessions_created_after(since).await?;
    let ours = sessions.into_iter().find(|s| {
        let flr = s.session_type.as_deref().is_some_and(|k| k.to_ascii_lowercase().contains("filelevelrestore"));
        // 1.3 says who started a session. Before 1.3 only the name can tell, and it must name the
        // machine: when in doubt the mount is left to VBR's auto-unmount, never taken for ours.
        let by_us = match s.initiated_by.as_deref() {
            Some(by) => initiated_by(by, &t.config.username),
            None => s.name.as_deref().is_some_and(|n| n.to_ascii_lowercase().contains(&r.vm.to_ascii_lowercase())),
        };
        flr && by_us && !claimed.contains(&s.id) && !s.is_stopped()
    });
    Ok(ours.map(|s| s.id))
}

/// `initiatedBy` (1.3) names an account as `DOMAIN\user` or `user`; the configured username
/// may carry the domain or not.
fn initiated_by(by: &str, username: &str) -> bool {
    let short = |s: &str| s.rsplit(['\\', '/']).next().unwrap_or(s).split('@').next().unwrap_or(s).to_ascii_lowercase();
    by.eq_ignore_ascii_case(username) || short(by) == short(username)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initiator_matches_with_or_without_its_domain() {
        assert!(initiated_by("CORP\\svc-canary", "svc-canary"));
        assert!(initiated_by("svc-canary", "CORP\\svc-canary"));
        assert!(initiated_by("svc-canary@corp.example", "svc-canary"));
        assert!(!initiated_by("CORP\\backup-admin2", "svc-canary"));
    }
}
