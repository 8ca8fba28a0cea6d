//! Cleanup of what probe runs leave on a server, owned by what it cleans: one record type per
//! thing a probe can leave behind, in a file of its own (`em_mount.rs`: an EM mount;
//! `em_session.rs`: an EM logon session, which owns its mounts), stored in [`crate::ledger`].
//!
//! **Invariants:**
//! - A record is written (and synced) *before* the thing is asked for, and removed only once the
//!   server confirmed the thing gone. So a crash at any moment leaves a record of anything that
//!   may exist, with what is needed to reach it (for EM, the owning session's token).
//! - Records are followed up on their own timer ([`FollowUp`]), not only at start-up or before
//!   a run: every few seconds while the server is still working on an earlier run's request (a
//!   mount task in flight), backing off while something else keeps a record open. Each pass
//!   sends at least one request with the owning session's token, at most [`FollowUp::MAX`]
//!   apart, which keeps that session inside EM's 15-minute idle timeout until its records are
//!   resolved; then it is logged off.
//! - Cleanup never touches what a run in progress owns ([`crate::probe::InFlight`]).
//! - Every deletion made on behalf of an earlier run is logged and counted in
//!   `veeam_restore_orphaned_mounts_cleaned_total`.

mod em_mount;
mod em_session;
mod vbr_flr;

use std::time::Duration;

pub use em_mount::MountRecord;
pub use em_session::SessionRecord;
pub use vbr_flr::FlrRecord;

use crate::probe::Api;
use crate::target::TargetRuntime;

/// What one pass did with one record.
enum Outcome {
    /// Nothing the record stands for is left on the server: the record goes.
    Resolved,
    /// Something may still be left: look again soon. `waiting` while the server is still working
    /// on the earlier run's request (a mount task): shutdown waits for those.
    Pending { why: String, waiting: bool },
    /// Out of the API's reach (the owning logon session expired): reported, checked again.
    Unresolved,
}

/// What a pass left open, for the follow-up timer, shutdown and the orphan gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Open {
    /// Records still to follow up (including `waiting`).
    pub pending: u32,
    /// Of those, records whose server-side request is still in progress.
    pub waiting: u32,
    pub unresolved: u32,
}

/// One pass over everything recorded for the target: deletes what earlier runs or processes
/// left and can still be reached, reports the rest, sweeps the current session for mounts no
/// running probe owns, and logs off recorded sessions once nothing needs them.
pub async fn pass(target: &TargetRuntime) -> Open {
    let _one_at_a_time = target.state.cleanup_lock.lock().await;
    let open = match target.config.api {
        Api::Em => em_pass(target).await,
        Api::Vbr => vbr_pass(target).await,
    };
    target.report_orphans(open.pending, open.unresolved);
    open
}

/// Follows up every FLR mount record of a VBR target with the current (or a new) logon: VBR
/// scopes no mount to a logon, so any session reaches any mount.
async fn vbr_pass(target: &TargetRuntime) -> Open {
    let records = target.ledger.all::<FlrRecord>(target.name());
    let mut open = Open::default();
    let pending = records.iter().filter(|r| !target.in_flight().has_record(&r.id)).count() as u32;
    if pending == 0 {
        return open;
    }
    let session = match target.vbr_session().await {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(target_name = target.name(), err = %e, records = pending, "cannot log on to follow up FLR mounts; will retry");
            return Open { pending, ..open };
        }
    };
    let claimed: std::collections::HashSet<String> = records.iter().filter_map(|r| r.session_id.clone()).collect();
    for record in records.iter().filter(|r| !target.in_flight().has_record(&r.id)) {
        let (outcome, deleted) = vbr_flr::clean(target, record, &session, &claimed).await;
        settle_outcome(target, record, &record.id, &record.probe, outcome, deleted, &mut open);
    }
    open
}

/// Removes a resolved record, or counts and logs an open one.
fn settle_outcome<R: crate::ledger::Record>(
    target: &TargetRuntime,
    record: &R,
    id: &str,
    probe: &str,
    outcome: Outcome,
    deleted: u32,
    open: &mut Open,
) {
    match outcome {
        Outcome::Resolved => {
            if let Err(e) = target.ledger.remove(record) {
                tracing::error!(target_name = target.name(), err = %e, "cannot remove a resolved record");
            }
        }
        Outcome::Pending { why, waiting } => {
            open.pending += 1;
            open.waiting += u32::from(waiting);
            if deleted > 0 {
                tracing::info!(target_name = target.name(), record = %id, probe = %probe, state = %why, "deleted what an earlier run left; confirming");
            } else if waiting {
                tracing::info!(target_name = target.name(), record = %id, probe = %probe, state = %why, "following up an earlier run's mount request");
            } else {
                tracing::warn!(target_name = target.name(), record = %id, probe = %probe, err = %why, "orphaned mount not cleaned yet; will retry");
            }
        }
        Outcome::Unresolved => open.unresolved += 1,
    }
}

/// The EM pass: mounts belong to logon sessions, reached with the recorded tokens.
async fn em_pass(target: &TargetRuntime) -> Open {
    let current = target.current_session().await;
    let mut open = Open::default();
    for record in target.ledger.all::<MountRecord>(target.name()) {
        if target.in_flight().has_record(&record.id) {
            continue;
        }
        let (outcome, deleted) = em_mount::clean(target, &record, current.as_ref()).await;
        settle_outcome(target, &record, &record.id, &record.probe, outcome, deleted, &mut open);
    }
    if let Some(session) = &current {
        em_mount::sweep(target, session).await;
    }
    em_session::log_off_stale(target, current.as_ref()).await;
    open
}

/// At shutdown: passes until nothing recorded is still being worked on by the server (an
/// earlier process's mount task), so its mount can be deleted and its session logged off like
/// the current run's own. The caller bounds it with the shutdown grace period.
pub async fn settle(target: &TargetRuntime) -> Open {
    let mut follow_up = FollowUp::default();
    loop {
        let open = pass(target).await;
        if open.waiting == 0 {
            return open;
        }
        tokio::time::sleep(follow_up.next(open, Duration::MAX)).await;
    }
}

/// When the next follow-up pass is due.
#[derive(Debug, Default)]
pub struct FollowUp {
    delay: Option<Duration>,
}

impl FollowUp {
    /// The first follow-up of an open record: soon, since a mount task takes seconds to minutes.
    pub const FIRST: Duration = Duration::from_secs(2);
    /// Never longer between passes while a record is open: well inside EM's 15-minute idle
    /// timeout, so the owning session stays alive.
    pub const MAX: Duration = Duration::from_secs(30);

    /// The wait after a pass that left `open`: from [`FollowUp::FIRST`], ×1.5 per pass that
    /// leaves something open, up to [`FollowUp::MAX`]; `idle` (the keep-alive interval) once
    /// nothing is open.
    pub fn next(&mut self, open: Open, idle: Duration) -> Duration {
        if open.pending == 0 && open.unresolved == 0 {
            self.delay = None;
            return idle;
        }
        let delay = match self.delay {
            None => Self::FIRST,
            Some(d) if open.waiting > 0 => d.min(Self::FIRST * 2),
            Some(d) => (d * 3 / 2).min(Self::MAX),
        };
        self.delay = Some(delay);
        delay.min(idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_up_is_quick_while_the_server_works_then_backs_off_then_idles() {
        let idle = Duration::from_secs(300);
        let mut f = FollowUp::default();
        let waiting = Open { pending: 1, waiting: 1, unresolved: 0 };
        let stuck = Open { pending: 1, waiting: 0, unresolved: 0 };
        assert_eq!(f.next(waiting, idle), FollowUp::FIRST);
        assert!(f.next(waiting, idle) <= FollowUp::FIRST * 2, "a task in flight is checked every few seconds");
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            let d = f.next(stuck, idle);
            assert!(d >= last && d <= FollowUp::MAX);
            last = d;
        }
        assert_eq!(last, FollowUp::MAX, "backs off to the cap, well inside EM's idle timeout");
        assert_eq!(f.next(Open::default(), idle), idle);
        assert_eq!(f.next(stuck, idle), FollowUp::FIRST, "starts quick again after a quiet spell");
        assert_eq!(f.next(stuck, Duration::from_secs(1)), Duration::from_secs(1), "never longer than idle");
    }
}
