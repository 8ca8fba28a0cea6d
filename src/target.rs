//! One EM target at run time: its logon session, logon backoff, concurrency limit, and the
//! cleanup of mounts and sessions that earlier runs or processes left behind.
//!
//! **Invariants:**
//! - A probe run takes the current session when it starts and keeps it to the end, so a new
//!   logon (after expiry) never happens in the middle of a mount; mounts belong to the session
//!   that created them.
//! - A session that still owns a recorded mount is never logged off: after log-off nobody could
//!   delete the mount. Its records stay, with the token, for the next cleanup or the next start.
//! - Cleanup never touches what a run in progress owns (see [`InFlight`]).
//! - After a refused logon, the next attempt waits (exponential backoff), whatever the probe
//!   schedules say: Active Directory locks accounts after a few bad passwords.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use sha2::Digest;
use tokio::sync::{Mutex, Semaphore};

use crate::config::Target;
use crate::em::{self, Client, ClientConfig, Session, TaskState};
use crate::ledger::{Ledger, MountRecord, SessionRecord};
use crate::metrics::{ApiObserver, Metrics};
use crate::probe::InFlight;
use crate::secret::Secret;

/// How long the record of a mount request whose answer was lost is kept looking for the mount
/// that request may still create (longer than any sane mount step timeout).
const LOST_MOUNT_GRACE: Duration = Duration::from_secs(30 * 60);

/// First wait after a refused logon; it doubles per refusal up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(30 * 60);

pub struct TargetRuntime {
    pub config: Target,
    pub permits: Semaphore,
    pub metrics: Arc<Metrics>,
    pub ledger: Ledger,
    /// Shared with the runtimes of the same target in other configuration generations.
    pub state: Arc<TargetState>,
}

/// What must outlive a configuration reload for one target name: a run started under the old
/// configuration may still be mid-mount while the new configuration's cleanup runs, and an
/// unchanged target keeps its logon session.
#[derive(Default)]
pub struct TargetState {
    pub in_flight: InFlight,
    cleanup_lock: Mutex<()>,
    session: Mutex<Option<CurrentSession>>,
    backoff: std::sync::Mutex<Backoff>,
    /// What the restore watch has counted (loaded from `--storage.path` on first use); one
    /// read at a time, even while two configuration generations overlap.
    pub watch: Mutex<Option<crate::watch::Counted>>,
}

struct CurrentSession {
    /// The client settings it was opened with; a reload that changes them opens a new one.
    identity: String,
    session: Session,
}

/// Refused logons in a row, and when the next attempt may go out.
#[derive(Default)]
struct Backoff {
    refusals: u32,
    until: Option<Instant>,
    /// Hash of the password that was refused: a changed password is tried at once.
    password: Option<[u8; 32]>,
}

impl TargetState {
    /// Forgets the logon backoff, e.g. after a configuration reload.
    pub fn reset_backoff(&self) {
        *self.backoff.lock().unwrap_or_else(|p| p.into_inner()) = Backoff::default();
    }
}

/// What became of one orphan record.
enum Cleanup {
    Cleaned,
    Retry(String),
    /// The owning logon session is gone: EM will not let anyone reach the mount through the API.
    Unresolved,
}

/// A short, non-reversible reference to a logon session for logs: ids are secrets (the token
/// is their base64), but operators need to tell sessions apart.
pub fn session_ref(id: &str) -> String {
    hex::encode(&sha2::Sha256::digest(id.as_bytes())[..4])
}

fn password_hash(password: &Secret) -> [u8; 32] {
    sha2::Sha256::digest(password.expose().as_bytes()).into()
}

/// `BACKOFF_FIRST` doubled per earlier refusal, capped, moved by up to ±10%.
fn backoff_after(refusals: u32) -> Duration {
    let base = BACKOFF_FIRST.saturating_mul(1 << refusals.saturating_sub(1).min(16)).min(BACKOFF_MAX);
    base.mul_f64(rand::rng().random_range(0.9..=1.1))
}

impl TargetRuntime {
    pub fn new(config: Target, metrics: Arc<Metrics>, ledger: Ledger, state: Arc<TargetState>) -> TargetRuntime {
        TargetRuntime { permits: Semaphore::new(config.max_concurrent_probes), config, metrics, ledger, state }
    }

    pub fn in_flight(&self) -> &InFlight {
        &self.state.in_flight
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    /// Everything the client is built from but the password.
    fn identity(&self) -> String {
        let c = &self.config;
        format!(
            "{} {} {:?} {:?} {} {:?}",
            c.url, c.username, c.format, c.ca_file, c.insecure_skip_verify, c.request_timeout
        )
    }

    fn client(&self, password: Secret) -> em::Result<Client> {
        let c = &self.config;
        let mut config = ClientConfig::new(c.url.clone(), c.username.clone(), password);
        config.format = c.format;
        config.ca_file = c.ca_file.clone();
        config.insecure_skip_verify = c.insecure_skip_verify;
        config.request_timeout = c.request_timeout;
        let observer = Arc::new(ApiObserver { metrics: self.metrics.clone(), target: c.name.clone() });
        Client::new(config, Some(observer))
    }

    /// The current session, logging on first if there is none. Called only between probe runs.
    pub async fn session(&self) -> em::Result<Session> {
        let mut current = self.state.session.lock().await;
        let identity = self.identity();
        match current.take() {
            Some(c) if c.identity == identity => {
                let session = c.session.clone();
                *current = Some(c);
                return Ok(session);
            }
            Some(old) => {
                tracing::info!(
                    target_name = self.name(),
                    "EM connection settings changed; opening a new logon session"
                );
                self.retire(old.session).await;
            }
            None => {}
        }
        let session = self.logon().await?;
        *current = Some(CurrentSession { identity, session: session.clone() });
        Ok(session)
    }

    /// After a 401 on `session`: asks EM once more whether it knows the session (the keep-alive
    /// call). Only when EM confirms it is gone is it dropped, so that the next logon never opens
    /// a second live session beside one that a proxy or a glitch answered 401 for. Returns true
    /// when the session was dropped.
    ///
    /// A dropped session is logged off as well (a dead one just answers 401 again), unless it
    /// still owns a recorded mount or a run still uses it; then the next cleanup logs it off once
    /// nothing needs it.
    pub async fn drop_if_lost(&self, session: &Session) -> bool {
        match session.keep_alive().await {
            Err(em::Error::SessionExpired { .. } | em::Error::NotFound { .. }) => {}
            Ok(()) => {
                tracing::warn!(
                    target_name = self.name(),
                    session_ref = session_ref(session.id()),
                    "EM answered 401 but still knows the logon session; keeping it"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!(target_name = self.name(), err = %e, "cannot tell whether EM still knows the logon session; keeping it for now");
                return false;
            }
        }
        let mut current = self.state.session.lock().await;
        if current.as_ref().is_some_and(|c| c.session.id() == session.id()) {
            *current = None;
        }
        drop(current);
        if !self.session_needed(session.id(), &self.ledger.records(self.name())) {
            self.log_off(session).await;
        }
        true
    }

    /// True while the logon session `id` owns one of `records` (this target's mount records) or
    /// a run uses it.
    fn session_needed(&self, id: &str, records: &[MountRecord]) -> bool {
        self.in_flight().uses_session(id) || records.iter().any(|r| r.session_id.expose() == id)
    }

    async fn logon(&self) -> em::Result<Session> {
        let name = self.name();
        let password = match self.config.password.read() {
            Ok(p) => p,
            Err(e) => return Err(em::Error::Config(e)),
        };
        if let Some(wait) = self.backoff_left(&password) {
            return Err(em::Error::LogonFailed {
                message: format!(
                    "EM refused the last logon; not retrying for another {}s so the account is not locked out \
                     (a reload or a changed password file retries at once)",
                    wait.as_secs()
                ),
            });
        }
        self.metrics.write().logons.with_label_values(&[name]).inc();
        let result = match self.client(password.clone()) {
            Ok(client) => client.logon().await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(s) => {
                tracing::info!(target_name = name, session_ref = session_ref(s.id()), "logged on to EM");
                self.metrics.write().em_up.with_label_values(&[name]).set(1);
                self.note_logon_accepted();
                let record = SessionRecord {
                    target: name.to_owned(),
                    session_id: Secret::new(s.id()),
                    token: s.token().clone(),
                    created_at: SystemTime::now(),
                };
                if let Err(e) = self.ledger.save_session(&record) {
                    tracing::error!(target_name = name, err = %e, "cannot record the logon session; after a crash it would stay open on EM");
                }
            }
            Err(e) => {
                let refused = matches!(e, em::Error::LogonFailed { .. } | em::Error::Forbidden { .. });
                let wait = if refused { Some(self.note_logon_refused(&password)) } else { None };
                tracing::warn!(target_name = name, reason = e.reason(), err = %e, next_attempt_in = ?wait, "EM logon failed");
                self.metrics.write().logon_failures.with_label_values(&[name, e.reason()]).inc();
                self.metrics.write().em_up.with_label_values(&[name]).set(0);
            }
        }
        result
    }

    /// How much longer logons must wait after a refusal, unless the password changed since.
    fn backoff_left(&self, password: &Secret) -> Option<Duration> {
        let backoff = self.state.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let until = backoff.until?;
        if backoff.password != Some(password_hash(password)) {
            return None;
        }
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    fn note_logon_refused(&self, password: &Secret) -> Duration {
        let mut backoff = self.state.backoff.lock().unwrap_or_else(|p| p.into_inner());
        backoff.refusals += 1;
        let wait = backoff_after(backoff.refusals);
        backoff.until = Some(Instant::now() + wait);
        backoff.password = Some(password_hash(password));
        self.metrics.write().logon_backoff.with_label_values(&[self.name()]).set(wait.as_secs_f64());
        wait
    }

    fn note_logon_accepted(&self) {
        *self.state.backoff.lock().unwrap_or_else(|p| p.into_inner()) = Backoff::default();
        self.metrics.write().logon_backoff.with_label_values(&[self.name()]).set(0.0);
    }

    /// Keeps the session alive (EM expires it after 15 idle minutes) and refreshes `veeam_restore_em_up`.
    /// An expired session is replaced here, between runs; runs in progress keep theirs.
    pub async fn keep_alive(&self) {
        let current = self.state.session.lock().await.as_ref().map(|c| c.session.clone());
        let Some(session) = current else {
            let _ = self.session().await;
            return;
        };
        match session.keep_alive().await {
            Ok(()) => self.metrics.write().em_up.with_label_values(&[self.name()]).set(1),
            Err(em::Error::SessionExpired { .. }) => {
                if self.drop_if_lost(&session).await {
                    tracing::info!(target_name = self.name(), "EM logon session expired; logging on again");
                    let _ = self.session().await;
                }
            }
            Err(e) => {
                tracing::warn!(target_name = self.name(), err = %e, "EM keep-alive failed");
                self.metrics.write().em_up.with_label_values(&[self.name()]).set(0);
            }
        }
    }

    /// Logs off at shutdown (or when the target is removed): first deletes every recorded mount
    /// of the session; if one is still there, the session stays open and its records stay for
    /// the next start, which can still reach the mount with the recorded token.
    pub async fn logoff(&self) {
        self.cleanup().await;
        let Some(current) = self.state.session.lock().await.take() else { return };
        self.retire(current.session).await;
    }

    /// Logs `session` off unless it still owns a mount (recorded, or of a run in progress).
    async fn retire(&self, session: Session) {
        let owned = self.ledger.records(self.name()).iter().filter(|r| r.session_id.expose() == session.id()).count();
        if owned > 0 || self.in_flight().uses_session(session.id()) {
            tracing::warn!(
                target_name = self.name(),
                session_ref = session_ref(session.id()),
                mounts = owned,
                "not logging off: the EM session still owns mounts that could not be deleted yet; their records stay \
                 and the next start deletes them with the recorded session"
            );
            return;
        }
        self.log_off(&session).await;
    }

    /// `DELETE /logonSessions/{id}`; the session record goes once EM no longer knows the session.
    async fn log_off(&self, session: &Session) -> bool {
        let gone = match session.logoff().await {
            Ok(()) => {
                tracing::info!(
                    target_name = self.name(),
                    session_ref = session_ref(session.id()),
                    "logged off from EM"
                );
                self.metrics.write().logoffs.with_label_values(&[self.name()]).inc();
                true
            }
            Err(em::Error::SessionExpired { .. } | em::Error::NotFound { .. }) => true,
            Err(e) => {
                tracing::warn!(target_name = self.name(), err = %e, "log-off failed");
                false
            }
        };
        if gone && let Err(e) = self.ledger.remove_session(session.id()) {
            tracing::warn!(target_name = self.name(), err = %e, "cannot remove session record");
        }
        gone
    }

    /// Deletes every mount earlier runs left behind that can still be reached, reports the rest,
    /// sweeps the current session for mounts no running probe owns, and logs off sessions that
    /// earlier processes left open once no record needs them.
    pub async fn cleanup(&self) {
        let _one_at_a_time = self.state.cleanup_lock.lock().await;
        let current = self.state.session.lock().await.as_ref().map(|c| c.session.clone());
        let (mut retrying, mut unresolved) = (0, 0);
        for record in self.ledger.records(self.name()) {
            if self.in_flight().has_record(&record.id) {
                continue;
            }
            let outcome = match self.clean_record(&record, current.as_ref()).await {
                Cleanup::Unresolved => self.check_unresolved(&record, current.as_ref()).await,
                other => other,
            };
            match outcome {
                Cleanup::Cleaned => {
                    if let Err(e) = self.ledger.remove(&record.id) {
                        tracing::error!(target_name = self.name(), err = %e, "cannot remove cleaned mount record");
                    }
                }
                Cleanup::Retry(why) => {
                    retrying += 1;
                    tracing::warn!(target_name = self.name(), record = %record.id, probe = %record.probe, err = %why, "orphaned mount not cleaned yet; will retry");
                }
                Cleanup::Unresolved => unresolved += 1,
            }
        }
        if let Some(session) = &current {
            self.sweep(session).await;
        }
        self.log_off_stale_sessions(current.as_ref()).await;
        let name = self.name();
        self.metrics.write().orphaned_mounts.with_label_values(&[name, "retrying"]).set(retrying);
        self.metrics.write().orphaned_mounts.with_label_values(&[name, "unresolved"]).set(unresolved);
    }

    /// Logs off recorded sessions that are not the current one, own no recorded mount and no
    /// run uses: those of a crashed earlier process, or retired ones nothing needs any more.
    async fn log_off_stale_sessions(&self, current: Option<&Session>) {
        let records = self.ledger.records(self.name());
        for stale in self.ledger.sessions(self.name()) {
            let id = stale.session_id.expose();
            if current.is_some_and(|s| s.id() == id) || self.session_needed(id, &records) {
                continue;
            }
            let Ok(client) = self.client(Secret::new(String::new())) else { continue };
            self.log_off(&client.resume(id, stale.token.clone())).await;
        }
    }

    fn cleaned(&self) {
        self.metrics.write().orphans_cleaned.with_label_values(&[self.name()]).inc();
    }

    async fn clean_record(&self, r: &MountRecord, current: Option<&Session>) -> Cleanup {
        // Use the session that owns the mount: the current one, or the recorded token.
        let recorded = r.session_id.expose();
        let is_current = current.is_some_and(|s| s.id() == recorded);
        let session = match current.filter(|s| s.id() == recorded) {
            Some(s) => s.clone(),
            None => match self.client(Secret::new(String::new())) {
                Ok(client) => client.resume(recorded, r.token.clone()),
                Err(e) => return Cleanup::Retry(e.to_string()),
            },
        };
        if let Some(href) = &r.mount_href {
            return match session.delete_mount(href).await {
                Ok(()) | Err(em::Error::NotFound { .. }) => {
                    tracing::info!(target_name = self.name(), probe = %r.probe, "deleted a mount left behind by an earlier run");
                    self.cleaned();
                    Cleanup::Cleaned
                }
                Err(em::Error::SessionExpired { .. }) => Cleanup::Unresolved,
                Err(e) => Cleanup::Retry(e.to_string()),
            };
        }
        // The mount link was never learnt: find out from the task, then from the point's mounts.
        let mut task_running = false;
        if let Some(task_href) = &r.task_href {
            match session.task(task_href).await {
                Ok(t) if t.state != TaskState::Finished => task_running = true,
                Ok(t) if t.result.as_ref().is_some_and(|res| !res.success) => return Cleanup::Cleaned,
                Ok(_) | Err(em::Error::NotFound { .. }) => {}
                Err(em::Error::SessionExpired { .. }) => return Cleanup::Unresolved,
                Err(e) => return Cleanup::Retry(e.to_string()),
            }
        }
        // A run in progress may hold a mount it has not registered yet: listing-and-deleting in
        // the current session waits until no run is in flight.
        if is_current && !self.in_flight().is_idle() {
            return Cleanup::Retry("probe runs in progress on this session".into());
        }
        let mounts = match session.mounts_at(&r.point_mounts_href, r.point_kind).await {
            Ok(m) => m,
            Err(em::Error::SessionExpired { .. }) => return Cleanup::Unresolved,
            Err(e) => return Cleanup::Retry(e.to_string()),
        };
        for m in &mounts {
            match session.delete_mount(m.delete_href()).await {
                Ok(()) | Err(em::Error::NotFound { .. }) => self.cleaned(),
                Err(e) => return Cleanup::Retry(e.to_string()),
            }
        }
        if task_running {
            return Cleanup::Retry("its mount task is still running".into());
        }
        // The answer to the mount request was lost, so its task is unknown: the mount it may
        // have started can still appear. Keep looking for a while before trusting "none".
        let unknown_task = r.task_href.is_none();
        let young = r.created_at.elapsed().is_ok_and(|age| age < LOST_MOUNT_GRACE);
        if unknown_task && mounts.is_empty() && young {
            return Cleanup::Retry("the answer to its mount request was lost; a mount may still appear".into());
        }
        Cleanup::Cleaned
    }

    /// An unreachable mount may still exist on the backup server. While EM still lists a
    /// `Working` file-level restore session for the VM, it is reported as unresolved; once there
    /// is none, the mount is gone and the record is dropped.
    async fn check_unresolved(&self, r: &MountRecord, current: Option<&Session>) -> Cleanup {
        let Some(session) = current else { return Cleanup::Unresolved };
        match session.working_flr_sessions(&r.vm).await {
            Ok(sessions) if sessions.is_empty() => {
                tracing::info!(target_name = self.name(), probe = %r.probe, vm = %r.vm, "orphaned mount no longer shows as a working restore session; dropping its record");
                Cleanup::Cleaned
            }
            Ok(sessions) => {
                let names: Vec<&str> = sessions.iter().filter_map(|s| s.name.as_deref()).collect();
                tracing::error!(
                    target_name = self.name(),
                    probe = %r.probe,
                    vm = %r.vm,
                    created_at = %humantime::format_rfc3339_seconds(r.created_at),
                    restore_sessions = ?names,
                    "UNRESOLVED orphaned mount: its EM logon session expired, so the API cannot delete it. \
                     Stop the file-level restore session for this VM in the Veeam console (or the VBR REST API); \
                     this record is dropped automatically once EM no longer lists it as Working (see docs/runbook.md)"
                );
                Cleanup::Unresolved
            }
            Err(e) => {
                tracing::warn!(target_name = self.name(), err = %e, "cannot look for the orphan's restore session");
                Cleanup::Unresolved
            }
        }
    }

    /// Deletes mounts that the current session holds but no running probe owns, at the restore
    /// points where a mount step failed (e.g. a mount task that finished after its step timed
    /// out). Only while no run is in flight: a run may hold a mount it has not registered yet.
    /// A point stays to sweep until no record of it is left and a listing shows nothing stray.
    async fn sweep(&self, session: &Session) {
        if !self.in_flight().is_idle() {
            return;
        }
        for point in self.in_flight().to_sweep() {
            let Ok(mounts) = session.mounts_at(&point.1, point.0).await else { continue };
            let mut all_gone = true;
            for m in mounts.iter().filter(|m| !self.in_flight().has_mount(&m.href)) {
                match session.delete_mount(m.delete_href()).await {
                    Ok(()) => {
                        tracing::info!(target_name = self.name(), "deleted a stray mount no probe owns");
                        self.cleaned();
                    }
                    Err(e) => {
                        all_gone = false;
                        tracing::warn!(target_name = self.name(), err = %e, "cannot delete a stray mount");
                    }
                }
            }
            // While a record of that point is left, its task may still produce a mount.
            let recorded = self.ledger.records(self.name()).iter().any(|r| r.point_mounts_href == point.1);
            if all_gone && !recorded {
                self.in_flight().swept(&point);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter() {
        let within = |d: Duration, base: u64| {
            let (lo, hi) = (Duration::from_secs(base).mul_f64(0.9), Duration::from_secs(base).mul_f64(1.1));
            assert!(d >= lo && d <= hi, "{d:?} not within 10% of {base}s");
        };
        within(backoff_after(1), 30);
        within(backoff_after(2), 60);
        within(backoff_after(3), 120);
        within(backoff_after(7), 1800);
        within(backoff_after(40), 1800);
    }

    #[test]
    fn session_refs_do_not_reveal_the_id() {
        let r = session_ref("8f20b44a-b96f-47c6-9a17-ba9d1c17a342");
        assert_eq!(r.len(), 8);
        assert!(!"8f20b44a-b96f-47c6-9a17-ba9d1c17a342".contains(&r));
    }
}
