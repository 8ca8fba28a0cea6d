//! One probe run: the context every kind uses, its timed steps, polling, mount and unmount.

use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::{
    Failure, InFlight, Operation, Phase, ProbeError, RestoreResult, RunObserver, RunReport, Spec, TaskOutcome,
};
use crate::cleanup::MountRecord;
use crate::em::{self, Mount, OsKind, RestorePoint, RestoreSession, RestoreSessionState, Session, Task};
use crate::ledger::Ledger;

/// How task and restore-session polls back off: from `initial`, ×1.5 per poll, up to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Polling {
    pub initial: Duration,
    pub max: Duration,
}

impl Polling {
    /// The pause after `delay`: ×1.5, capped at `max`.
    pub(super) fn next(&self, delay: Duration) -> Duration {
        (delay * 3 / 2).min(self.max)
    }
}

/// Everything a probe run needs, and what it has measured so far.
pub struct Run<'a> {
    pub session: &'a Session,
    /// The `target` name, for records and logs.
    pub target: &'a str,
    pub spec: &'a Spec,
    pub polling: Polling,
    pub ledger: &'a Ledger,
    pub in_flight: &'a InFlight,
    /// Fires when the process is shutting down.
    pub shutdown: &'a CancellationToken,
    pub observer: &'a dyn RunObserver,
    started: Instant,
    phases: Vec<(Phase, Duration)>,
    /// Set once a request that creates something on EM (mount, browse, restore) may have done so.
    changed_em: bool,
}

/// A mount this run created and must delete.
pub(super) struct Mounted {
    pub point: RestorePoint,
    pub mount: Mount,
    record: MountRecord,
}

/// Why polling stopped without reaching the awaited state.
enum PollEnd {
    Timeout,
    Cancelled,
    Failed(em::Error),
}

impl<'a> Run<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        session: &'a Session,
        target: &'a str,
        spec: &'a Spec,
        polling: Polling,
        ledger: &'a Ledger,
        in_flight: &'a InFlight,
        shutdown: &'a CancellationToken,
        observer: &'a dyn RunObserver,
    ) -> Run<'a> {
        Run {
            session,
            target,
            spec,
            polling,
            ledger,
            in_flight,
            shutdown,
            observer,
            started: Instant::now(),
            phases: Vec::new(),
            changed_em: false,
        }
    }

    /// Runs the probe to the end, cleanup included, and reports.
    pub async fn execute(mut self) -> RunReport {
        let spec = self.spec;
        let result = spec.kind.run(&mut self).await;
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
            manual: false,
        }
    }

    pub(super) fn record_phase(&mut self, phase: Phase, took: Duration) {
        self.observer.phase(phase, took);
        self.phases.push((phase, took));
    }

    /// The deadline of a work step: its own timeout, cut short by the probe's overall budget.
    fn deadline(&self, phase: Phase) -> Instant {
        (Instant::now() + self.spec.steps.get(phase)).min(self.started + self.spec.timeout)
    }

    /// Fails with `Cancelled` once shutdown began: for optional work only.
    pub(super) fn skip_if_shutting_down(&self, phase: Phase) -> Result<(), ProbeError> {
        if self.shutdown.is_cancelled() { Err(ProbeError::Cancelled(phase)) } else { Ok(()) }
    }

    /// Runs one read-only request-level step under its deadline. Dropping such a step on
    /// timeout or shutdown is harmless: it changes nothing on EM, so shutdown need not wait.
    pub(super) async fn read_step<T>(
        &mut self,
        phase: Phase,
        fut: impl Future<Output = em::Result<T>>,
    ) -> Result<T, ProbeError> {
        let started = Instant::now();
        let limit = self.deadline(phase).saturating_duration_since(started);
        let result = tokio::select! {
            result = tokio::time::timeout(limit, fut) => Some(result),
            _ = self.shutdown.cancelled() => None,
        };
        self.record_phase(phase, started.elapsed());
        match result {
            Some(Ok(r)) => r.map_err(|source| ProbeError::Em { phase, source }),
            Some(Err(_)) => Err(ProbeError::StepTimeout { phase, after: limit }),
            None => Err(ProbeError::Cancelled(phase)),
        }
    }

    /// Finds the newest point and reports its creation time.
    pub(super) async fn lookup(&mut self, kind: em::PointKind) -> Result<RestorePoint, ProbeError> {
        let session = self.session;
        let vm = self.spec.vm.clone();
        let point = self.read_step(Phase::Lookup, session.newest_point(kind, &vm)).await?;
        let point = point.ok_or(ProbeError::NoRestorePoint { kind: kind.as_str(), vm })?;
        if let Some(created) = point.creation_time {
            self.observer.point_created(created);
        }
        Ok(point)
    }

    /// A step that starts an EM task and waits for it (browse, restore): its phase covers both.
    /// A shutdown ends the wait; such tasks need no cleanup of their own (a mount, if any, is
    /// the caller's). The finished task is returned for its links.
    pub(super) async fn task_step(
        &mut self,
        phase: Phase,
        operation: Operation,
        start: impl Future<Output = em::Result<Task>>,
    ) -> Result<Task, ProbeError> {
        let started = Instant::now();
        let deadline = self.deadline(phase);
        let started_task = start.await;
        self.note_create_request(&started_task);
        let task = match started_task {
            Ok(task) => self.wait_task(task, operation, phase, deadline, true).await,
            Err(source) => Err(ProbeError::Em { phase, source }),
        };
        self.record_phase(phase, started.elapsed());
        task
    }

    /// Notes whether a request that creates something on EM may have done so: anything but a
    /// 401 (EM refused it without doing anything) counts, including lost answers.
    fn note_create_request<T>(&mut self, result: &em::Result<T>) {
        if !matches!(result, Err(em::Error::SessionExpired { .. })) {
            self.changed_em = true;
        }
    }

    /// Polls `fetch` until `done` says so, backing off per [`Polling`]. `current` is a value
    /// already in hand (checked before the first poll). Transient failures (5xx, transport,
    /// timeouts, garbled bodies) are retried until `deadline`; 401, 403 and 404 end the wait.
    /// With `cancellable`, a shutdown ends it too.
    async fn poll<T, F: Future<Output = em::Result<T>>>(
        &self,
        deadline: Instant,
        cancellable: bool,
        mut current: Option<T>,
        mut fetch: impl FnMut() -> F,
        mut done: impl FnMut(&T) -> bool,
    ) -> Result<T, PollEnd> {
        let mut delay = self.polling.initial;
        loop {
            if let Some(value) = current.take() {
                if done(&value) {
                    return Ok(value);
                }
                current = Some(value);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(PollEnd::Timeout);
            }
            let pause = tokio::time::sleep(delay.min(deadline - now));
            if cancellable {
                tokio::select! {
                    _ = pause => {}
                    _ = self.shutdown.cancelled() => return Err(PollEnd::Cancelled),
                }
            } else {
                pause.await;
            }
            delay = self.polling.next(delay);
            match fetch().await {
                Ok(value) => current = Some(value),
                Err(
                    e @ (em::Error::SessionExpired { .. } | em::Error::NotFound { .. } | em::Error::Forbidden { .. }),
                ) => {
                    return Err(PollEnd::Failed(e));
                }
                Err(e) => {
                    tracing::warn!(target_name = self.target, probe = %self.spec.name, err = %e, "poll failed; retrying")
                }
            }
        }
    }

    /// Polls a task until `Finished` and reports its outcome.
    async fn wait_task(
        &self,
        task: Task,
        operation: Operation,
        phase: Phase,
        deadline: Instant,
        cancellable: bool,
    ) -> Result<Task, ProbeError> {
        let session = self.session;
        let href = task.href.clone();
        let fetch = || session.task(&href);
        let outcome = match self.poll(deadline, cancellable, Some(task), fetch, Task::is_finished).await {
            Ok(task) => task.into_outcome().map_err(|source| ProbeError::Em { phase, source }),
            Err(PollEnd::Timeout) => {
                self.observer.task(operation, TaskOutcome::Timeout);
                return Err(ProbeError::StepTimeout { phase, after: self.spec.steps.get(phase) });
            }
            Err(PollEnd::Cancelled) => return Err(ProbeError::Cancelled(phase)),
            Err(PollEnd::Failed(source)) => return Err(ProbeError::Em { phase, source }),
        };
        let counted = if outcome.is_ok() { TaskOutcome::Success } else { TaskOutcome::Failed };
        self.observer.task(operation, counted);
        outcome
    }

    /// Follows a restore session to `Stopped`, reporting its progress as it goes.
    pub(super) async fn follow_restore_session(&mut self, href: &str) -> Result<Option<String>, ProbeError> {
        let started = Instant::now();
        let phase = Phase::RestoreSession;
        let deadline = self.deadline(phase);
        let session = self.session;
        let observer = self.observer;
        observer.restore_progress(0.0);
        let first = match session.restore_session(href).await {
            Ok(s) => Some(s),
            Err(e @ (em::Error::SessionExpired { .. } | em::Error::NotFound { .. } | em::Error::Forbidden { .. })) => {
                self.record_phase(phase, started.elapsed());
                return Err(ProbeError::Em { phase, source: e });
            }
            Err(_) => None,
        };
        let stopped = |s: &RestoreSession| {
            observer.restore_progress(f64::from(s.progress) / 100.0);
            s.state == RestoreSessionState::Stopped
        };
        let polled = self.poll(deadline, true, first, || session.restore_session(href), stopped).await;
        self.record_phase(phase, started.elapsed());
        let finished = match polled {
            Ok(s) => s,
            Err(PollEnd::Timeout) => return Err(ProbeError::StepTimeout { phase, after: self.spec.steps.get(phase) }),
            Err(PollEnd::Cancelled) => return Err(ProbeError::Cancelled(phase)),
            Err(PollEnd::Failed(source)) => return Err(ProbeError::Em { phase, source }),
        };
        use crate::em::RestoreSessionResult as R;
        let result = finished.result.unwrap_or(R::Other("none".into()));
        let (counted, outcome) = match &result {
            R::Success => (RestoreResult::Success, Ok(None)),
            R::Warning => (RestoreResult::Warning, Ok(Some("EM reported the restore with a warning".into()))),
            R::Failed => (RestoreResult::Failed, Err(ProbeError::RestoreFailed(result.as_str().to_owned()))),
            R::Other(_) => (RestoreResult::Unknown, Err(ProbeError::RestoreFailed(result.as_str().to_owned()))),
        };
        observer.restore_session(counted);
        outcome
    }

    /// Stops a task that is still running ("To stop the task execution, send DELETE
    /// /tasks/{ID}"). Finished tasks are left alone: they belong to the logon session, and
    /// deleting them would cost a request per run for housekeeping EM does not ask for.
    async fn stop_task(&self, task: &Task) {
        if let Err(e) = self.session.delete_task(task).await {
            tracing::debug!(err = %e, task = %task.id, "could not stop the task");
        }
    }

    /// Mounts `point`: record first, then POST, then wait for the task and read the mount.
    ///
    /// On error the ledger record stays whenever a mount may exist, so cleanup finds it later.
    pub(super) async fn mount(&mut self, point: RestorePoint, os: Option<OsKind>) -> Result<Mounted, ProbeError> {
        let started = Instant::now();
        let record = MountRecord::before_mount(self.target, &self.spec.name, &self.spec.vm, self.session, &point);
        self.in_flight.with(|t| t.records.insert(record.id.clone()));
        let mounts_href = point.mounts_href();
        let result = match self.ledger.put(&record).map_err(ProbeError::State) {
            Ok(()) => self.mount_recorded(point, os, record.clone()).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Whatever is left is now the cleanup's business, and a mount may exist that no
            // record knows (a task that finished after its step timed out): sweep the point.
            self.in_flight.with(|t| {
                t.records.remove(&record.id);
                t.to_sweep.insert((record.point_kind, mounts_href));
            });
        }
        self.record_phase(Phase::Mount, started.elapsed());
        result
    }

    async fn mount_recorded(
        &mut self,
        point: RestorePoint,
        os: Option<OsKind>,
        mut record: MountRecord,
    ) -> Result<Mounted, ProbeError> {
        let phase = Phase::Mount;
        let deadline = self.deadline(phase);
        let started_task = self.session.start_mount(&point, os).await;
        self.note_create_request(&started_task);
        let task = match started_task {
            Ok(task) => task,
            Err(source) => {
                // A refused POST created nothing; a lost answer might have: keep the record then.
                if matches!(source, em::Error::Timeout(_) | em::Error::Transport(_) | em::Error::Decode(_)) {
                    tracing::warn!(err = %source, "mount request outcome unknown; keeping its record for cleanup");
                } else {
                    let _ = self.ledger.remove(&record);
                }
                return Err(ProbeError::Em { phase, source });
            }
        };
        record.task_href = Some(task.href.clone());
        self.ledger.put(&record).map_err(ProbeError::State)?;
        // Not cancellable: the mount this task creates has to be found and deleted.
        let finished = match self.wait_task(task.clone(), Operation::MountRestorePoint, phase, deadline, false).await {
            Ok(t) => t,
            Err(e) => {
                if let ProbeError::Em { source: em::Error::TaskFailed { .. }, .. } = &e {
                    let _ = self.ledger.remove(&record);
                } else if let ProbeError::StepTimeout { .. } = &e {
                    // The record stays: cleanup sweeps any mount the task still produced.
                    self.stop_task(&task).await;
                }
                return Err(e);
            }
        };
        let mount = self
            .session
            .mount_from_task(&finished, point.kind)
            .await
            .map_err(|source| ProbeError::Em { phase, source })?;
        self.in_flight.with(|t| t.mounts.insert(mount.href.clone()));
        record.mount_href = Some(mount.delete_href().to_owned());
        if let Err(e) = self.ledger.put(&record) {
            // The mount exists and must still be deleted; report after unmounting.
            tracing::error!(err = %e, "cannot update mount record");
        }
        Ok(Mounted { point, mount, record })
    }

    /// Deletes the mount, confirms it is gone, then drops its record. Always runs to its own
    /// timeout, whatever happened before and even during shutdown.
    pub(super) async fn unmount(&mut self, mounted: Mounted) -> Result<(), ProbeError> {
        let started = Instant::now();
        let result = self.delete_and_confirm(&mounted, started + self.spec.steps.get(Phase::Unmount)).await;
        self.record_phase(Phase::Unmount, started.elapsed());
        self.in_flight.with(|t| {
            t.mounts.remove(&mounted.mount.href);
            t.records.remove(&mounted.record.id);
        });
        match result {
            Ok(()) => self.ledger.remove(&mounted.record).map_err(ProbeError::State),
            Err(e) => {
                tracing::error!(target_name = self.target, probe = %self.spec.name, err = %e, "unmount failed; the mount stays recorded and will be retried");
                Err(ProbeError::Unmount(e))
            }
        }
    }

    /// `DELETE` the mount, then list the point's mounts to confirm it is gone. Transient
    /// failures (5xx, timeouts, transport, garbled bodies, a mount still listed) are retried
    /// with backoff until `deadline`; a 404 on `DELETE` means already gone (the listing
    /// confirms it). Each attempt shows in `veeam_restore_server_requests_total{endpoint="mount_delete"}`.
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
        let mut delay = self.polling.initial;
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
            tracing::warn!(target_name = self.target, probe = %self.spec.name, attempt, err = %problem, "unmount attempt failed; retrying");
            tokio::time::sleep(delay).await;
            delay = self.polling.next(delay);
        }
    }
}
