//! One EM target at run time: its logon session, its concurrency limit, and orphan cleanup.
//!
//! **Invariants:**
//! - A probe run takes the current session when it starts and keeps it to the end, so a new
//!   logon (after expiry) never happens in the middle of a mount; mounts belong to the session
//!   that created them.
//! - Cleanup never touches what a run in progress owns (see [`InFlight`]).

use std::sync::Arc;

use tokio::sync::{Mutex, Semaphore};

use crate::config::Target;
use crate::em::{self, Client, ClientConfig, Session, TaskState};
use crate::ledger::{Ledger, MountRecord};
use crate::metrics::{ApiObserver, Metrics};
use crate::probe::InFlight;
use crate::secret::Secret;

pub struct TargetRuntime {
    pub config: Target,
    pub permits: Semaphore,
    pub metrics: Arc<Metrics>,
    pub ledger: Ledger,
    /// Shared with the runtimes of the same target in other configuration generations.
    pub state: Arc<TargetState>,
    session: Mutex<Option<Session>>,
}

/// What must outlive a configuration reload for one target name: a run started under the old
/// configuration may still be mid-mount while the new configuration's cleanup runs.
#[derive(Default)]
pub struct TargetState {
    pub in_flight: InFlight,
    cleanup_lock: Mutex<()>,
}

/// What became of one orphan record.
enum Cleanup {
    Cleaned,
    Retry(String),
    /// The owning logon session is gone: EM will not let anyone reach the mount through the API.
    Unresolved,
}

impl TargetRuntime {
    pub fn new(config: Target, metrics: Arc<Metrics>, ledger: Ledger, state: Arc<TargetState>) -> TargetRuntime {
        TargetRuntime {
            permits: Semaphore::new(config.max_concurrent_probes),
            config,
            metrics,
            ledger,
            state,
            session: Mutex::new(None),
        }
    }

    pub fn in_flight(&self) -> &InFlight {
        &self.state.in_flight
    }

    fn name(&self) -> &str {
        &self.config.name
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
        let mut current = self.session.lock().await;
        if let Some(s) = &*current {
            return Ok(s.clone());
        }
        let session = self.logon().await?;
        *current = Some(session.clone());
        Ok(session)
    }

    async fn logon(&self) -> em::Result<Session> {
        let name = self.name();
        self.metrics.logons.with_label_values(&[name]).inc();
        let result = match self.config.password.read() {
            Ok(password) => match self.client(password) {
                Ok(client) => client.logon().await,
                Err(e) => Err(e),
            },
            Err(e) => Err(em::Error::Config(e)),
        };
        match &result {
            Ok(s) => {
                tracing::info!(target_name = name, session = s.id(), "logged on to EM");
                self.metrics.em_up.with_label_values(&[name]).set(1);
            }
            Err(e) => {
                tracing::warn!(target_name = name, reason = e.reason(), err = %e, "EM logon failed");
                self.metrics.logon_failures.with_label_values(&[name, e.reason()]).inc();
                self.metrics.em_up.with_label_values(&[name]).set(0);
            }
        }
        result
    }

    /// Keeps the session alive (EM expires it after 15 idle minutes) and refreshes `veeam_em_up`.
    /// An expired session is replaced here, between runs; runs in progress keep theirs.
    pub async fn keep_alive(&self) {
        let current = self.session.lock().await.clone();
        let Some(session) = current else {
            let _ = self.session().await;
            return;
        };
        match session.keep_alive().await {
            Ok(()) => self.metrics.em_up.with_label_values(&[self.name()]).set(1),
            Err(em::Error::SessionExpired { .. }) => {
                tracing::info!(target_name = self.name(), "EM logon session expired; logging on again");
                let mut slot = self.session.lock().await;
                if slot.as_ref().is_some_and(|s| s.id() == session.id()) {
                    *slot = None;
                }
                drop(slot);
                let _ = self.session().await;
            }
            Err(e) => {
                tracing::warn!(target_name = self.name(), err = %e, "EM keep-alive failed");
                self.metrics.em_up.with_label_values(&[self.name()]).set(0);
            }
        }
    }

    /// Logs off, if no run still holds a mount (after log-off its mounts could not be deleted).
    pub async fn logoff(&self) {
        let Some(session) = self.session.lock().await.take() else { return };
        if !self.in_flight().is_idle() {
            tracing::warn!(
                target_name = self.name(),
                "not logging off: a mount is still in progress; its record stays for the next start"
            );
            return;
        }
        match session.logoff().await {
            Ok(()) => tracing::info!(target_name = self.name(), "logged off from EM"),
            Err(e) => tracing::warn!(target_name = self.name(), err = %e, "log-off failed"),
        }
    }

    /// Deletes every mount earlier runs left behind that can still be reached, reports the rest,
    /// and sweeps the current session for mounts no running probe owns.
    pub async fn cleanup(&self) {
        let _one_at_a_time = self.state.cleanup_lock.lock().await;
        let current = self.session.lock().await.clone();
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
        let name = self.name();
        self.metrics.orphaned_mounts.with_label_values(&[name, "retrying"]).set(retrying);
        self.metrics.orphaned_mounts.with_label_values(&[name, "unresolved"]).set(unresolved);
    }

    fn cleaned(&self) {
        self.metrics.orphans_cleaned.with_label_values(&[self.name()]).inc();
    }

    async fn clean_record(&self, r: &MountRecord, current: Option<&Session>) -> Cleanup {
        // Use the session that owns the mount: the current one, or the recorded token.
        let session = match current.filter(|s| s.id() == r.session_id) {
            Some(s) => s.clone(),
            None => match self.client(Secret::new(String::new())) {
                Ok(client) => client.resume(r.session_id.clone(), r.token.clone()),
                Err(e) => return Cleanup::Retry(e.to_string()),
            },
        };
        let is_current = current.is_some_and(|s| s.id() == r.session_id);
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
        if task_running { Cleanup::Retry("its mount task is still running".into()) } else { Cleanup::Cleaned }
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

    /// Deletes mounts of the probed restore points that the current session holds but no
    /// running probe owns (e.g. from a mount task that finished after its step timed out).
    /// Only while no run is in flight: a run may hold a mount it has not registered yet.
    async fn sweep(&self, session: &Session) {
        if !self.in_flight().is_idle() {
            return;
        }
        for (kind, href) in self.in_flight().points() {
            let Ok(mounts) = session.mounts_at(&href, kind).await else { continue };
            for m in mounts.iter().filter(|m| !self.in_flight().has_mount(&m.href)) {
                match session.delete_mount(m.delete_href()).await {
                    Ok(()) => {
                        tracing::info!(target_name = self.name(), "deleted a stray mount no probe owns");
                        self.cleaned();
                    }
                    Err(e) => tracing::warn!(target_name = self.name(), err = %e, "cannot delete a stray mount"),
                }
            }
        }
    }
}
