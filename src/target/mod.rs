//! One EM target at run time: its logon session, logon backoff and concurrency limit. What
//! earlier runs or processes left on EM is [`crate::cleanup`]'s business.
//!
//! **Invariants:**
//! - A probe run takes the current session when it starts and keeps it to the end, so a new
//!   logon (after expiry) never happens in the middle of a mount; mounts belong to the session
//!   that created them.
//! - A session that still owns a recorded mount is never logged off: after log-off nobody could
//!   delete the mount. Its records stay, with the token, for the next cleanup or the next start.
//! - After a refused logon, the next attempt waits (exponential backoff), whatever the probe
//!   schedules say: Active Directory locks accounts after a few bad passwords.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::Digest;
use tokio::sync::{Mutex, Semaphore};

mod vbr;

pub use vbr::vbr_client;

use crate::cleanup::{self, MountRecord, SessionRecord};
use crate::config::Target;
use crate::em::{self, Client, ClientConfig, Session};
use crate::ledger::Ledger;
use crate::metrics::{ApiObserver, Metrics};
use crate::probe::Api;
use crate::probe::InFlight;
use crate::secret::Secret;

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
    /// One cleanup pass at a time (see [`crate::cleanup`]).
    pub(crate) cleanup_lock: Mutex<()>,
    /// Wakes the keeper's follow-up timer: a run that failed may have left a record behind.
    pub(crate) follow_up: tokio::sync::Notify,
    session: Mutex<Option<CurrentSession>>,
    /// The logon of a VBR target (`api: vbr`).
    vbr: Mutex<Option<vbr::CurrentVbr>>,
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

/// An EM client with the target's settings.
pub fn em_client(c: &Target, password: Secret, observer: Option<Arc<dyn em::RequestObserver>>) -> em::Result<Client> {
    let mut config = ClientConfig::new(c.url.clone(), c.username.clone(), password);
    config.format = c.format;
    config.ca_file = c.ca_file.clone();
    config.insecure_skip_verify = c.insecure_skip_verify;
    config.request_timeout = c.request_timeout;
    Client::new(config, observer)
}

impl TargetRuntime {
    pub fn new(config: Target, metrics: Arc<Metrics>, ledger: Ledger, state: Arc<TargetState>) -> TargetRuntime {
        TargetRuntime { permits: Semaphore::new(config.max_concurrent_probes), config, metrics, ledger, state }
    }

    pub fn in_flight(&self) -> &InFlight {
        &self.state.in_flight
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// `veeam_restore_server_up`: whether the last logon or keep-alive got through.
    fn set_up(&self, up: bool) {
        let labels = [self.name(), self.config.api.as_str()];
        self.metrics.write().server_up.with_label_values(&labels).set(i64::from(up));
    }

    /// Everything the client is built from but the password.
    fn identity(&self) -> String {
        let c = &self.config;
        format!(
            "{} {} {:?} {:?} {} {:?}",
            c.url, c.username, c.format, c.ca_file, c.insecure_skip_verify, c.request_timeout
        )
    }

    pub(crate) fn client(&self, password: Secret) -> em::Result<Client> {
        let observer = Arc::new(ApiObserver { metrics: self.metrics.clone(), target: self.config.name.clone() });
        em_client(&self.config, password, Some(observer))
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
        if !self.session_needed(session.id(), &self.ledger.all::<MountRecord>(self.name())) {
            self.log_off(session).await;
        }
        true
    }

    /// True while the logon session `id` owns one of `records` (this target's mount records) or
    /// a run uses it.
    pub(crate) fn session_needed(&self, id: &str, records: &[MountRecord]) -> bool {
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
                self.set_up(true);
                self.note_logon_accepted();
                if let Err(e) = self.ledger.put(&SessionRecord::of(name, s)) {
                    tracing::error!(target_name = name, err = %e, "cannot record the logon session; after a crash it would stay open on EM");
                }
            }
            Err(e) => {
                let refused = matches!(e, em::Error::LogonFailed { .. } | em::Error::Forbidden { .. });
                let wait = if refused { Some(self.note_logon_refused(&password)) } else { None };
                tracing::warn!(target_name = name, reason = e.reason(), err = %e, next_attempt_in = ?wait, "EM logon failed");
                self.metrics.write().logon_failures.with_label_values(&[name, e.reason()]).inc();
                self.set_up(false);
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

    /// Keeps the session alive (EM expires it after 15 idle minutes) and refreshes `veeam_restore_server_up`.
    /// An expired session is replaced here, between runs; runs in progress keep theirs.
    pub async fn keep_alive(&self) {
        if self.config.api == Api::Vbr {
            return self.vbr_keep_alive().await;
        }
        let current = self.state.session.lock().await.as_ref().map(|c| c.session.clone());
        let Some(session) = current else {
            let _ = self.session().await;
            return;
        };
        match session.keep_alive().await {
            Ok(()) => self.set_up(true),
            Err(em::Error::SessionExpired { .. }) => {
                if self.drop_if_lost(&session).await {
                    tracing::info!(target_name = self.name(), "EM logon session expired; logging on again");
                    let _ = self.session().await;
                }
            }
            Err(e) => {
                tracing::warn!(target_name = self.name(), err = %e, "EM keep-alive failed");
                self.set_up(false);
            }
        }
    }

    /// Logs off at shutdown (or when the target is removed): first follows up every record,
    /// waiting for an earlier process's mount task still in flight (see [`cleanup::settle`]);
    /// if a mount is still there, its session stays open and its records stay for the next
    /// start, which can still reach the mount with the recorded token.
    pub async fn logoff(&self) {
        if self.config.api == Api::Vbr {
            return self.vbr_logoff().await;
        }
        cleanup::settle(self).await;
        let Some(current) = self.state.session.lock().await.take() else { return };
        self.retire(current.session).await;
    }

    /// Logs `session` off unless it still owns a mount (recorded, or of a run in progress).
    async fn retire(&self, session: Session) {
        let owned = self
            .ledger
            .all::<MountRecord>(self.name())
            .iter()
            .filter(|r| r.session_id.expose() == session.id())
            .count();
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
    pub(crate) async fn log_off(&self, session: &Session) -> bool {
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
        if gone && let Err(e) = self.ledger.remove(&SessionRecord::of(self.name(), session)) {
            tracing::warn!(target_name = self.name(), err = %e, "cannot remove session record");
        }
        gone
    }

    /// The current logon session, if there is one; never logs on.
    pub(crate) async fn current_session(&self) -> Option<Session> {
        self.state.session.lock().await.as_ref().map(|c| c.session.clone())
    }

    /// `veeam_restore_orphaned_mounts` as a cleanup pass found them.
    pub(crate) fn report_orphans(&self, retrying: u32, unresolved: u32) {
        let m = self.metrics.write();
        m.orphaned_mounts.with_label_values(&[self.name(), "retrying"]).set(i64::from(retrying));
        m.orphaned_mounts.with_label_values(&[self.name(), "unresolved"]).set(i64::from(unresolved));
    }

    pub(crate) fn count_orphan_cleaned(&self) {
        self.metrics.write().orphans_cleaned.with_label_values(&[self.name()]).inc();
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
