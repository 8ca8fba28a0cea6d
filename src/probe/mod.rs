//! Probe runs: one shared context ([`Run`]) and one module per probe kind.
//!
//! **Invariants:**
//! - Every step has its own deadline; no timeout ever wraps a whole probe. A request that
//!   creates something on EM (mount, restore) is bounded only by the client's request timeout,
//!   so we never drop a future whose effect we would not know about.
//! - A mount, once requested, is recorded in the [`Ledger`] first and is always followed by an
//!   unmount attempt: after errors, after step timeouts and during shutdown.
//! - Shutdown skips optional work (browse, download, following a restore) but never the wait for
//!   a mount task in flight, because the mount it creates must be deleted.

mod file_restore;
mod mount;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::config::{Probe, ProbeKind, RestoreMode, Target};
use crate::em::{self, Mount, OsKind, PointKind, RestorePoint, Session, Task};
use crate::ledger::{Ledger, MountRecord};
use crate::metrics::{Metrics, unix_seconds};

/// Reasons only a probe run produces; the client's own come from [`em::Error::REASONS`].
const PROBE_REASONS: &[&str] = &[
    "step_timeout",
    "no_restore_point",
    "empty_mount",
    "verify_failed",
    "restore_failed",
    "unmount_failed",
    "cancelled",
    "state_error",
];

/// Every value [`ProbeError::reason`] can return (a run's failure may be the client's).
pub fn failure_reasons() -> impl Iterator<Item = &'static str> {
    em::Error::REASONS.iter().chain(PROBE_REASONS).copied()
}

/// Why a probe run failed. [`ProbeError::reason`] is the bounded label value.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{phase}: {source}")]
    Em { phase: &'static str, source: em::Error },
    #[error("{phase}: no answer within the step timeout of {after:?}")]
    StepTimeout { phase: &'static str, after: Duration },
    #[error("lookup: no {kind} restore point found for VM {vm:?}")]
    NoRestorePoint { kind: &'static str, vm: String },
    #[error("mount: the mount has no file-system roots")]
    EmptyMount,
    #[error("verify: {0}")]
    Verify(String),
    #[error("restore_session: restore ended with result {0}")]
    RestoreFailed(String),
    #[error("unmount: {0}")]
    Unmount(String),
    #[error("{0}: skipped because the exporter is shutting down")]
    Cancelled(&'static str),
    #[error("state directory: {0}")]
    State(String),
}

impl ProbeError {
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::Em { source, .. } => source.reason(),
            ProbeError::StepTimeout { .. } => "step_timeout",
            ProbeError::NoRestorePoint { .. } => "no_restore_point",
            ProbeError::EmptyMount => "empty_mount",
            ProbeError::Verify(_) => "verify_failed",
            ProbeError::RestoreFailed(_) => "restore_failed",
            ProbeError::Unmount(_) => "unmount_failed",
            ProbeError::Cancelled(_) => "cancelled",
            ProbeError::State(_) => "state_error",
        }
    }
}

/// What one run did, for metrics and the landing page.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub finished_at: SystemTime,
    pub duration: Duration,
    pub phases: Vec<(&'static str, Duration)>,
    /// `Ok(note)` on success (the note says e.g. that EM reported a warning).
    pub outcome: Result<Option<String>, (&'static str, String)>,
    /// A cleanup problem that came after an earlier failure (the earlier one is the reason).
    pub cleanup_error: Option<String>,
    /// EM answered 401 before the run asked it to change anything: logging on again and
    /// starting over is safe.
    pub session_lost_before_changes: bool,
}

/// What the probe runs of one target have in flight, so cleanup leaves it alone: their ledger
/// records and mounts. Also remembers which restore points the probes use, for the sweep.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<Tracked>);

#[derive(Debug, Default)]
struct Tracked {
    records: HashSet<String>,
    mounts: HashSet<String>,
    points: HashSet<(PointKind, String)>,
}

impl InFlight {
    fn with<T>(&self, f: impl FnOnce(&mut Tracked) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
    pub fn has_record(&self, id: &str) -> bool {
        self.with(|t| t.records.contains(id))
    }
    pub fn has_mount(&self, href: &str) -> bool {
        self.with(|t| t.mounts.contains(href))
    }
    /// The restore points probes have mounted, as `(kind, mounts href)`.
    pub fn points(&self) -> Vec<(PointKind, String)> {
        self.with(|t| t.points.iter().cloned().collect())
    }
    /// True when no run holds a record (so no mount can be in progress).
    pub fn is_idle(&self) -> bool {
        self.with(|t| t.records.is_empty())
    }
}

/// Everything a probe run needs, and what it has measured so far.
pub struct Run<'a> {
    pub session: &'a Session,
    pub target: &'a Target,
    pub probe: &'a Probe,
    pub metrics: &'a Metrics,
    pub ledger: &'a Ledger,
    pub in_flight: &'a InFlight,
    /// Fires when the process is shutting down.
    pub shutdown: &'a CancellationToken,
    started: Instant,
    phases: Vec<(&'static str, Duration)>,
    /// Set before the first request that may create something on EM (mount, browse, restore).
    changed_em: bool,
}

/// A mount this run created and must delete.
struct Mounted {
    point: RestorePoint,
    mount: Mount,
    record: MountRecord,
}

impl<'a> Run<'a> {
    pub fn new(
        session: &'a Session,
        target: &'a Target,
        probe: &'a Probe,
        metrics: &'a Metrics,
        ledger: &'a Ledger,
        in_flight: &'a InFlight,
        shutdown: &'a CancellationToken,
    ) -> Run<'a> {
        Run {
            session,
            target,
            probe,
            metrics,
            ledger,
            in_flight,
            shutdown,
            started: Instant::now(),
            phases: Vec::new(),
            changed_em: false,
        }
    }

    /// Runs the probe to the end, cleanup included, and reports.
    pub async fn execute(mut self) -> RunReport {
        let result = match self.probe.kind.clone() {
            ProbeKind::Mount { point, os_kind, browse } => mount::run(&mut self, point, os_kind, browse).await,
            ProbeKind::FileRestore { path, mode: RestoreMode::Catalog, .. } => {
                file_restore::catalog(&mut self, &path).await
            }
            ProbeKind::FileRestore { path, mode: RestoreMode::Download, os_kind, expected_size, expected_sha256 } => {
                file_restore::download(&mut self, &path, os_kind, expected_size, expected_sha256.as_deref()).await
            }
        };
        let session_lost_before_changes = !self.changed_em
            && matches!(&result, Err(Failure { first, .. }) if matches!(**first, ProbeError::Em { source: em::Error::SessionExpired { .. }, .. }));
        let (outcome, cleanup_error) = match result {
            Ok(note) => (Ok(note), None),
            Err(Failure { first, cleanup }) => {
                (Err((first.reason(), first.to_string())), cleanup.map(|c| c.to_string()))
            }
        };
        RunReport {
            finished_at: SystemTime::now(),
            duration: self.started.elapsed(),
            phases: self.phases,
            outcome,
            cleanup_error,
            session_lost_before_changes,
        }
    }

    fn labels(&self) -> [&str; 2] {
        [self.target.name.as_str(), self.probe.name.as_str()]
    }

    fn record_phase(&mut self, phase: &'static str, took: Duration) {
        let [target, probe] = self.labels();
        self.metrics.phase_duration.with_label_values(&[target, probe, phase]).observe(took.as_secs_f64());
        self.metrics.phase_last_duration.with_label_values(&[target, probe, phase]).set(took.as_secs_f64());
        self.phases.push((phase, took));
    }

    /// The deadline of a work step: its own timeout, cut short by the probe's overall budget.
    fn deadline(&self, step_timeout: Duration) -> Instant {
        (Instant::now() + step_timeout).min(self.started + self.probe.timeout)
    }

    /// Runs one read-only request-level step under its deadline. Dropping such a step on
    /// timeout is harmless: it changes nothing on EM.
    async fn read_step<T>(
        &mut self,
        phase: &'static str,
        step_timeout: Duration,
        fut: impl Future<Output = em::Result<T>>,
    ) -> Result<T, ProbeError> {
        let started = Instant::now();
        let limit = self.deadline(step_timeout).saturating_duration_since(started);
        let result = tokio::time::timeout(limit, fut).await;
        self.record_phase(phase, started.elapsed());
        match result {
            Ok(r) => r.map_err(|source| ProbeError::Em { phase, source }),
            Err(_) => Err(ProbeError::StepTimeout { phase, after: limit }),
        }
    }

    /// Finds the newest point and exports its creation time.
    async fn lookup(&mut self, kind: PointKind) -> Result<RestorePoint, ProbeError> {
        let session = self.session;
        let vm = self.probe.vm.clone();
        let point = self.read_step("lookup", self.probe.steps.lookup, session.newest_point(kind, &vm)).await?;
        let point = point.ok_or(ProbeError::NoRestorePoint { kind: kind.as_str(), vm })?;
        if let Some(created) = point.creation_time {
            let [target, probe] = self.labels();
            self.metrics.point_creation.with_label_values(&[target, probe]).set(unix_seconds(created));
        }
        Ok(point)
    }

    /// A step that starts an EM task and waits for it (browse, restore): its phase covers both.
    /// A shutdown ends the wait; such tasks need no cleanup of their own (a mount, if any, is
    /// the caller's). The finished task is returned for its links; deleting it is the caller's.
    async fn task_step(
        &mut self,
        phase: &'static str,
        step_timeout: Duration,
        operation: &'static str,
        start: impl Future<Output = em::Result<Task>>,
    ) -> Result<Task, ProbeError> {
        let started = Instant::now();
        let deadline = self.deadline(step_timeout);
        self.changed_em = true;
        let task = match start.await {
            Ok(task) => self.wait_task(task, operation, phase, deadline, true).await,
            Err(source) => Err(ProbeError::Em { phase, source }),
        };
        self.record_phase(phase, started.elapsed());
        task
    }

    /// Polls a task until `Finished`, backing off from `poll_initial` to `poll_max`.
    ///
    /// Transient poll failures (5xx, transport, timeouts, garbled bodies) are retried until the
    /// deadline; an expired session or a vanished task ends the wait. With `cancellable`, a
    /// shutdown ends the wait too.
    async fn wait_task(
        &mut self,
        task: Task,
        operation: &'static str,
        phase: &'static str,
        deadline: Instant,
        cancellable: bool,
    ) -> Result<Task, ProbeError> {
        let target = self.target.name.as_str();
        let polls = self.metrics.task_polls.with_label_values(&[target, operation]);
        let count = |result: &str| self.metrics.tasks.with_label_values(&[target, operation, result]).inc();
        let mut task = task;
        let mut delay = self.target.poll_initial;
        loop {
            if task.is_finished() {
                let outcome = task.into_outcome();
                count(if outcome.is_ok() { "success" } else { "failed" });
                return outcome.map_err(|source| ProbeError::Em { phase, source });
            }
            let now = Instant::now();
            if now >= deadline {
                count("timeout");
                return Err(ProbeError::StepTimeout { phase, after: self.step_timeout_of(phase) });
            }
            let pause = delay.min(deadline - now);
            if cancellable {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = self.shutdown.cancelled() => return Err(ProbeError::Cancelled(phase)),
                }
            } else {
                tokio::time::sleep(pause).await;
            }
            delay = self.next_poll_delay(delay);
            polls.inc();
            match self.session.task(&task.href).await {
                Ok(t) => task = t,
                Err(
                    e @ (em::Error::SessionExpired { .. } | em::Error::NotFound { .. } | em::Error::Forbidden { .. }),
                ) => {
                    return Err(ProbeError::Em { phase, source: e });
                }
                Err(e) => {
                    tracing::warn!(target_name = target, probe = %self.probe.name, err = %e, "task poll failed; retrying")
                }
            }
        }
    }

    /// Polling backs off ×1.5 per poll, up to the target's `poll_max`.
    fn next_poll_delay(&self, delay: Duration) -> Duration {
        (delay * 3 / 2).min(self.target.poll_max)
    }

    fn step_timeout_of(&self, phase: &str) -> Duration {
        let s = &self.probe.steps;
        match phase {
            "mount" => s.mount,
            "browse" => s.browse,
            "restore" => s.restore,
            "restore_session" => s.restore_session,
            _ => self.probe.timeout,
        }
    }

    /// Best-effort housekeeping: finished tasks are removed, as EM's own clients do.
    async fn forget_task(&self, task: &Task) {
        if let Err(e) = self.session.delete_task(task).await {
            tracing::debug!(err = %e, task = %task.id, "could not delete finished task");
        }
    }

    /// Mounts `point`: record first, then POST, then wait for the task and read the mount.
    ///
    /// On error the ledger record stays whenever a mount may exist, so cleanup finds it later.
    async fn mount(&mut self, point: RestorePoint, os: Option<OsKind>) -> Result<Mounted, ProbeError> {
        let started = Instant::now();
        let result = self.mount_inner(point, os).await;
        self.record_phase("mount", started.elapsed());
        result
    }

    async fn mount_inner(&mut self, point: RestorePoint, os: Option<OsKind>) -> Result<Mounted, ProbeError> {
        let record = MountRecord {
            id: uuid::Uuid::new_v4().to_string(),
            target: self.target.name.clone(),
            probe: self.probe.name.clone(),
            vm: self.probe.vm.clone(),
            session_id: crate::secret::Secret::new(self.session.id()),
            token: self.session.token().clone(),
            point_kind: point.kind,
            point_id: point.id.clone(),
            point_mounts_href: point.mounts_href(),
            task_href: None,
            mount_href: None,
            created_at: SystemTime::now(),
        };
        self.changed_em = true;
        self.in_flight.with(|t| {
            t.records.insert(record.id.clone());
            t.points.insert((point.kind, point.mounts_href()));
        });
        let saved = self.ledger.save(&record).map_err(ProbeError::State);
        let result = match saved {
            Ok(()) => self.mount_recorded(point, os, record.clone()).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Whatever is left is now the cleanup's business.
            self.in_flight.with(|t| t.records.remove(&record.id));
        }
        result
    }

    async fn mount_recorded(
        &mut self,
        point: RestorePoint,
        os: Option<OsKind>,
        mut record: MountRecord,
    ) -> Result<Mounted, ProbeError> {
        let deadline = self.deadline(self.probe.steps.mount);
        let task = match self.session.start_mount(&point, os).await {
            Ok(task) => task,
            Err(source) => {
                // A refused POST created nothing; a lost answer might have: keep the record then.
                if matches!(source, em::Error::Timeout(_) | em::Error::Transport(_) | em::Error::Decode(_)) {
                    tracing::warn!(err = %source, "mount request outcome unknown; keeping its record for cleanup");
                } else {
                    let _ = self.ledger.remove(&record.id);
                }
                return Err(ProbeError::Em { phase: "mount", source });
            }
        };
        record.task_href = Some(task.href.clone());
        self.ledger.save(&record).map_err(ProbeError::State)?;
        // Not cancellable: the mount this task creates has to be found and deleted.
        let finished = match self.wait_task(task.clone(), "MountRestorePoint", "mount", deadline, false).await {
            Ok(t) => t,
            Err(e) => {
                if let ProbeError::Em { source: em::Error::TaskFailed { .. }, .. } = &e {
                    let _ = self.ledger.remove(&record.id);
                } else if let ProbeError::StepTimeout { .. } = &e {
                    // "To stop the task execution, send DELETE /tasks/{ID}" (em-api.md §4.1). The
                    // record stays: cleanup sweeps any mount the task still produced.
                    self.forget_task(&task).await;
                }
                return Err(e);
            }
        };
        let mount = match self.session.mount_from_task(&finished, point.kind).await {
            Ok(m) => m,
            Err(source) => return Err(ProbeError::Em { phase: "mount", source }),
        };
        self.in_flight.with(|t| t.mounts.insert(mount.href.clone()));
        record.mount_href = Some(mount.delete_href().to_owned());
        if let Err(e) = self.ledger.save(&record) {
            // The mount exists and must still be deleted; report after unmounting.
            tracing::error!(err = %e, "cannot update mount record");
        }
        self.forget_task(&finished).await;
        Ok(Mounted { point, mount, record })
    }

    /// Deletes the mount, confirms it is gone, then drops its record. Always runs to its own
    /// timeout, whatever happened before and even during shutdown.
    async fn unmount(&mut self, mounted: Mounted) -> Result<(), ProbeError> {
        let started = Instant::now();
        let result = self.delete_and_confirm(&mounted, started + self.probe.steps.unmount).await;
        self.record_phase("unmount", started.elapsed());
        self.in_flight.with(|t| {
            t.mounts.remove(&mounted.mount.href);
            t.records.remove(&mounted.record.id);
        });
        match result {
            Ok(()) => {
                self.ledger.remove(&mounted.record.id).map_err(ProbeError::State)?;
                Ok(())
            }
            Err(e) => {
                tracing::error!(target_name = %self.target.name, probe = %self.probe.name, err = %e, "unmount failed; the mount stays recorded and will be retried");
                Err(ProbeError::Unmount(e))
            }
        }
    }

    /// `DELETE` the mount, then list the point's mounts to confirm it is gone. Transient
    /// failures (5xx, timeouts, transport, garbled bodies, a mount still listed) are retried
    /// with backoff until `deadline`; a 404 on `DELETE` means already gone (the listing
    /// confirms it). Each attempt shows in `veeam_em_api_requests_total{endpoint="mount_delete"}`.
    async fn delete_and_confirm(&self, mounted: &Mounted, deadline: Instant) -> Result<(), String> {
        let session = self.session;
        let href = mounted.mount.delete_href();
        let attempt_once = async || -> em::Result<bool> {
            match session.delete_mount(href).await {
                Ok(()) | Err(em::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            let remaining = session.mounts(&mounted.point).await?;
            Ok(remaining.iter().any(|m| m.href == mounted.mount.href))
        };
        let mut delay = self.target.poll_initial;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let problem = match tokio::time::timeout(left, attempt_once()).await {
                Err(_) => return Err(format!("no confirmation within the unmount timeout ({attempt} attempts)")),
                Ok(Ok(false)) => return Ok(()),
                Ok(Ok(true)) => "EM still lists the mount after deleting it".to_owned(),
                // Only the owning session can delete the mount; retrying cannot help.
                Ok(Err(e @ (em::Error::SessionExpired { .. } | em::Error::Forbidden { .. }))) => {
                    return Err(format!("delete failed: {e}"));
                }
                Ok(Err(e)) => e.to_string(),
            };
            if Instant::now() + delay >= deadline {
                return Err(format!("{problem} (gave up after {attempt} attempts)"));
            }
            tracing::warn!(target_name = %self.target.name, probe = %self.probe.name, attempt, err = %problem, "unmount attempt failed; retrying");
            tokio::time::sleep(delay).await;
            delay = self.next_poll_delay(delay);
        }
    }
}

/// A failed run: the first failure, and a cleanup failure that followed it, if any.
pub struct Failure {
    pub first: Box<ProbeError>,
    pub cleanup: Option<Box<ProbeError>>,
}

impl From<ProbeError> for Failure {
    fn from(first: ProbeError) -> Failure {
        Failure { first: Box::new(first), cleanup: None }
    }
}

/// Combines the outcome of the work done on a mount with that of the unmount that followed.
fn with_cleanup<T>(work: Result<T, ProbeError>, cleanup: Result<(), ProbeError>) -> Result<T, Failure> {
    match (work, cleanup) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(c)) | (Err(c), Ok(())) => Err(c.into()),
        (Err(first), Err(c)) => Err(Failure { first: Box::new(first), cleanup: Some(Box::new(c)) }),
    }
}
