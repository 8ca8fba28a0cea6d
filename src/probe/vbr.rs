//! One probe run against Veeam Backup & Replication's REST API: the same kinds as on EM, each
//! on a file-level-restore (FLR) mount. VBR scopes no mount to a logon, so the record holds the
//! FLR session id, and any later logon can unmount it.
//!
//! - `mount`: newest point, FLR mount (no `mountErrors` allowed), browse the root, unmount and
//!   confirm the FLR session stopped.
//! - `file_restore`, `mode: download`: mount, `prepareDownload` (a task), download the ZIP, find
//!   the file in it (in memory, capped), check it, unmount. Nothing touches the VM.
//! - `file_restore`, `mode: original_location`: mount, restore the file to where it was (a task,
//!   followed live: its `progressPercent` is the restore progress), unmount.
//!
//! The same invariants as on EM: the record is written before the mount is requested and
//! removed only once VBR confirms the session stopped; every step has its own deadline; the
//! mount request itself is bounded only by the client's (slow) request timeout.

use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use veeam_vbr::{FileRestoreRequest, FlrMount, GuestOs, MountRequest, RestorePoint, RestoreType, Session, ZipLimits};

use super::{
    Failure, InFlight, Kind, Operation, Phase, Polling, ProbeError, RestoreResult, RunObserver, RunReport, Spec,
    TaskOutcome, with_cleanup,
};
use crate::cleanup::FlrRecord;
use crate::em::OsKind;
use crate::ledger::Ledger;

/// A restored file read from VBR's ZIP is at most this large unless `expected_size` says more.
const DEFAULT_FILE_CAP: u64 = 8 << 20;

/// Everything a VBR probe run needs, and what it has measured so far.
pub struct VbrRun<'a> {
    pub session: &'a Session,
    /// The `target` name, for records and logs.
    pub target: &'a str,
    pub spec: &'a Spec,
    pub polling: Polling,
    pub ledger: &'a Ledger,
    pub in_flight: &'a InFlight,
    pub shutdown: &'a CancellationToken,
    pub observer: &'a dyn RunObserver,
    /// `autoUnmount.noActivityPeriodInMinutes` of every mount.
    pub auto_unmount_minutes: u32,
    started: Instant,
    phases: Vec<(Phase, Duration)>,
}

/// An FLR mount this run made and must unmount.
struct Mounted {
    mount: FlrMount,
    record: FlrRecord,
    guest: GuestOs,
}

impl<'a> VbrRun<'a> {
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
        auto_unmount_minutes: u32,
    ) -> VbrRun<'a> {
        VbrRun {
            session,
            target,
            spec,
            polling,
            ledger,
            in_flight,
            shutdown,
            observer,
            auto_unmount_minutes,
            started: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// Runs the probe to the end, unmount included, and reports.
    pub async fn execute(mut self) -> RunReport {
        let result = self.run().await;
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
            // A VBR session renews its own token and logs on again by itself.
            session_lost_before_changes: false,
            manual: false,
        }
    }

    async fn run(&mut self) -> Result<Option<String>, Failure> {
        let spec = self.spec;
        let point = self.lookup().await?;
        let os = match &spec.kind {
            Kind::Mount(m) => m.os_kind,
            Kind::Download(d) => d.os_kind,
            Kind::Catalog(_) => None,
        };
        let mounted = self.mount(&point, os).await?;
        let work = match &spec.kind {
            Kind::Mount(m) if m.browse => self.browse_root(&mounted).await,
            Kind::Mount(_) => Ok(()),
            Kind::Download(d) => self.download(&mounted, d).await,
            Kind::Catalog(c) => self.restore(&mounted, &c.path).await,
        };
        let unmounted = self.unmount(mounted).await;
        with_cleanup(work, unmounted).map(|()| None)
    }

    fn record_phase(&mut self, phase: Phase, took: Duration) {
        self.observer.phase(phase, took);
        self.phases.push((phase, took));
    }

    /// The deadline of a work step: its own timeout, cut short by the probe's overall budget.
    fn deadline(&self, phase: Phase) -> Instant {
        (Instant::now() + self.spec.steps.get(phase)).min(self.started + self.spec.timeout)
    }

    /// A read-only step under its deadline; dropping it on timeout or shutdown changes nothing.
    async fn read_step<T>(
        &mut self,
        phase: Phase,
        fut: impl Future<Output = veeam_vbr::Result<T>>,
    ) -> Result<T, ProbeError> {
        let started = Instant::now();
        let limit = self.deadline(phase).saturating_duration_since(started);
        let result = tokio::select! {
            result = tokio::time::timeout(limit, fut) => Some(result),
            _ = self.shutdown.cancelled() => None,
        };
        self.record_phase(phase, started.elapsed());
        match result {
            Some(Ok(r)) => r.map_err(|source| ProbeError::Vbr { phase, source }),
            Some(Err(_)) => Err(ProbeError::StepTimeout { phase, after: limit }),
            None => Err(ProbeError::Cancelled(phase)),
        }
    }

    /// The VM's newest restore point, its age and its malware status.
    async fn lookup(&mut self) -> Result<RestorePoint, ProbeError> {
        let session = self.session;
        let vm = self.spec.vm.clone();
        let point = match self.read_step(Phase::Lookup, session.newest_restore_point(&vm)).await {
            Err(ProbeError::Vbr { source: veeam_vbr::Error::NotFound { .. }, .. }) => {
                return Err(ProbeError::NoRestorePoint { kind: "backup", vm });
            }
            other => other?,
        };
        if let Some(created) = point.created_at() {
            self.observer.point_created(created);
        }
        self.observer.malware_status(point.malware_status.as_ref().map(|s| s.as_str()));
        Ok(point)
    }

    /// Records, then mounts. The request is not cancellable: VBR answers it once the file
    /// system is mounted, and a dropped answer would leave a mount only the record knows of.
    async fn mount(&mut self, point: &RestorePoint, os: Option<OsKind>) -> Result<Mounted, ProbeError> {
        let started = Instant::now();
        let phase = Phase::Mount;
        let guest = guest_os(os, point);
        let mut record = FlrRecord::before_mount(self.target, &self.spec.name, &self.spec.vm, &point.id);
        self.in_flight.with(|t| t.records.insert(record.id.clone()));
        let result = match self.ledger.put(&record).map_err(ProbeError::State) {
            Ok(()) => {
                let mut request = MountRequest::new(&point.id, guest.clone(), self.auto_unmount_minutes);
                request.reason = format!("veeam-restore-exporter probe {} (restore test)", self.spec.name);
                self.session.mount(&request).await.map_err(|source| ProbeError::Vbr { phase, source })
            }
            Err(e) => Err(e),
        };
        self.record_phase(phase, started.elapsed());
        let mount = match result {
            Ok(mount) => mount,
            Err(e) => {
                // A refused request mounted nothing; a lost answer may have: keep the record then.
                if let ProbeError::Vbr { source, .. } = &e
                    && !lost_answer(source)
                {
                    let _ = self.ledger.remove(&record);
                }
                self.in_flight.with(|t| t.records.remove(&record.id));
                return Err(e);
            }
        };
        record.session_id = Some(mount.session_id.clone());
        if let Err(e) = self.ledger.put(&record) {
            tracing::error!(err = %e, "cannot update the FLR mount record");
        }
        let mounted = Mounted { mount, record, guest };
        if !mounted.mount.mount_errors.is_empty() {
            let errors: Vec<String> = mounted.mount.mount_errors.iter().map(|e| format!("{e:?}")).collect();
            let failed = ProbeError::MountErrors(errors.join("; "));
            let unmounted = self.unmount(mounted).await;
            return Err(match unmounted {
                Ok(()) => failed,
                Err(e) => e,
            });
        }
        Ok(mounted)
    }

    /// Lists the root: the drives of a Windows guest (`""`), `/` of a Linux one (the spec's
    /// own examples).
    async fn browse_root(&mut self, mounted: &Mounted) -> Result<(), ProbeError> {
        if self.shutdown.is_cancelled() {
            return Err(ProbeError::Cancelled(Phase::Browse));
        }
        let root = if mounted.guest == GuestOs::Linux { "/" } else { "" };
        let session = self.session;
        let listed = self.read_step(Phase::Browse, session.browse(&mounted.mount.session_id, root)).await?;
        if listed.items.is_empty() {
            return Err(ProbeError::EmptyMount);
        }
        Ok(())
    }

    /// `prepareDownload`, its task, the ZIP, the file in it, the checks.
    async fn download(&mut self, mounted: &Mounted, probe: &super::download::DownloadProbe) -> Result<(), ProbeError> {
        if self.shutdown.is_cancelled() {
            return Err(ProbeError::Cancelled(Phase::Restore));
        }
        let id = mounted.mount.session_id.clone();
        let path = guest_path(&probe.path, &mounted.guest);
        let session = self.session;
        let task =
            self.task_step(Phase::Restore, Operation::FlrDownload, session.prepare_download(&id, &[&path])).await?;
        let zip = self.read_step(Phase::Download, session.download(&id, &task.id)).await?;
        let cap = probe.expected_size.map(|s| s.saturating_add(1)).unwrap_or(DEFAULT_FILE_CAP);
        let limits = ZipLimits { max_entry_bytes: cap, ..ZipLimits::default() };
        let entry = veeam_vbr::find_file(&zip, &path, &limits)
            .map_err(|source| ProbeError::Vbr { phase: Phase::Download, source })?;
        probe.verify(&entry.data, self.observer)
    }

    /// Restores the file to its original location and follows the task live.
    async fn restore(&mut self, mounted: &Mounted, path: &str) -> Result<(), ProbeError> {
        if self.shutdown.is_cancelled() {
            return Err(ProbeError::Cancelled(Phase::Restore));
        }
        let id = mounted.mount.session_id.clone();
        let request = FileRestoreRequest {
            source_paths: vec![guest_path(path, &mounted.guest)],
            restore_type: RestoreType::Overwrite,
            credentials_id: None,
        };
        let session = self.session;
        let task = self.task_step(Phase::Restore, Operation::FlrRestore, session.restore_files(&id, &request)).await?;
        let result = match task.result.as_ref().map(|r| r.as_str()) {
            Some("Success") => RestoreResult::Success,
            Some("Warning") => RestoreResult::Warning,
            Some("Failed") => RestoreResult::Failed,
            _ => RestoreResult::Unknown,
        };
        self.observer.restore_session(result);
        Ok(())
    }

    /// Starts a task and waits for it to end, reporting its progress; its phase covers both.
    async fn task_step(
        &mut self,
        phase: Phase,
        operation: Operation,
        start: impl Future<Output = veeam_vbr::Result<veeam_vbr::Task>>,
    ) -> Result<veeam_vbr::Task, ProbeError> {
        let started = Instant::now();
        let deadline = self.deadline(phase);
        let result = match start.await {
            Ok(task) => self.wait_task(task, operation, phase, deadline).await,
            Err(source) => Err(ProbeError::Vbr { phase, source }),
        };
        self.record_phase(phase, started.elapsed());
        result
    }

    async fn wait_task(
        &self,
        mut task: veeam_vbr::Task,
        operation: Operation,
        phase: Phase,
        deadline: Instant,
    ) -> Result<veeam_vbr::Task, ProbeError> {
        let mut delay = self.polling.initial;
        loop {
            if let Some(p) = task.progress_percent {
                self.observer.restore_progress(p.min(100) as f64 / 100.0);
            }
            if task.is_finished() {
                let outcome = if task.succeeded() { TaskOutcome::Success } else { TaskOutcome::Failed };
                self.observer.task(operation, outcome);
                if task.succeeded() {
                    return Ok(task);
                }
                let message = task.message.clone().unwrap_or_else(|| "no message".into());
                let source = veeam_vbr::Error::TaskFailed { operation: operation.as_str().into(), message };
                return Err(ProbeError::Vbr { phase, source });
            }
            let now = Instant::now();
            if now >= deadline {
                self.observer.task(operation, TaskOutcome::Timeout);
                return Err(ProbeError::StepTimeout { phase, after: self.spec.steps.get(phase) });
            }
            tokio::select! {
                _ = tokio::time::sleep(delay.min(deadline - now)) => {}
                _ = self.shutdown.cancelled() => return Err(ProbeError::Cancelled(phase)),
            }
            delay = self.polling.next(delay);
            match self.session.task(&task.id).await {
                Ok(t) => task = t,
                Err(e) if transient(&e) => tracing::debug!(err = %e, "task poll failed; retrying"),
                Err(source) => return Err(ProbeError::Vbr { phase, source }),
            }
        }
    }

    /// Unmounts, confirms the FLR session stopped, then drops the record. Runs to its own
    /// timeout whatever happened before, shutdown included.
    async fn unmount(&mut self, mounted: Mounted) -> Result<(), ProbeError> {
        let started = Instant::now();
        let deadline = started + self.spec.steps.get(Phase::Unmount);
        let result = self.unmount_and_confirm(&mounted.mount.session_id, deadline).await;
        self.record_phase(Phase::Unmount, started.elapsed());
        self.in_flight.with(|t| t.records.remove(&mounted.record.id));
        match result {
            Ok(()) => self.ledger.remove(&mounted.record).map_err(ProbeError::State),
            Err(e) => {
                tracing::error!(target_name = self.target, probe = %self.spec.name, err = %e, "unmount failed; the mount stays recorded and will be retried");
                Err(ProbeError::Unmount(e))
            }
        }
    }

    /// `unmount`, then the FLR session until it is `Stopped`; transient failures are retried
    /// with backoff until `deadline`. A 404 on unmount means it is gone already, unless the
    /// session says otherwise: then the unmount is asked for again.
    async fn unmount_and_confirm(&self, id: &str, deadline: Instant) -> Result<(), String> {
        let mut delay = self.polling.initial;
        let mut unmounted = false;
        let mut answered_not_found = false;
        loop {
            if !unmounted {
                match self.session.unmount(id).await {
                    Ok(_) => unmounted = true,
                    Err(veeam_vbr::Error::NotFound { .. }) => (unmounted, answered_not_found) = (true, true),
                    Err(e) if transient(&e) => tracing::warn!(err = %e, "unmount attempt failed; retrying"),
                    Err(e) => return Err(format!("unmount refused: {e}")),
                }
            }
            if unmounted {
                match self.session.session_info(id).await {
                    Ok(info) if info.is_stopped() => return Ok(()),
                    Err(veeam_vbr::Error::NotFound { .. }) => return Ok(()),
                    Ok(_) if answered_not_found => {
                        tracing::warn!(
                            "VBR answered 404 to the unmount but the FLR session still runs; unmounting again"
                        );
                        (unmounted, answered_not_found) = (false, false);
                    }
                    Ok(_) => {}
                    Err(e) if transient(&e) => {}
                    Err(e) => return Err(format!("cannot confirm the FLR session stopped: {e}")),
                }
            }
            if Instant::now() + delay >= deadline {
                let what = if unmounted { "the FLR session did not stop" } else { "unmount kept failing" };
                return Err(format!("{what} within the unmount timeout"));
            }
            tokio::time::sleep(delay).await;
            delay = self.polling.next(delay);
        }
    }
}

/// The guest OS to mount as: the probe's `os_kind`, else what the point says (1.3), else Windows.
fn guest_os(configured: Option<OsKind>, point: &RestorePoint) -> GuestOs {
    match configured {
        Some(OsKind::Linux) => GuestOs::Linux,
        Some(OsKind::Windows) => GuestOs::Windows,
        None if point.guest_os_family.as_deref().is_some_and(|f| f.eq_ignore_ascii_case("Linux")) => GuestOs::Linux,
        None => GuestOs::Windows,
    }
}

/// The configured path as VBR's FLR names it: backslashes on Windows (`C:\canary\x.txt`).
fn guest_path(path: &str, guest: &GuestOs) -> String {
    match guest {
        GuestOs::Linux => path.to_owned(),
        _ => path.replace('/', "\\"),
    }
}

/// The request may have reached VBR: its answer was lost or not understood.
fn lost_answer(e: &veeam_vbr::Error) -> bool {
    matches!(e, veeam_vbr::Error::Timeout(_) | veeam_vbr::Error::Transport(_) | veeam_vbr::Error::Decode(_))
}

/// Worth another try within the step: the server or the network hiccuped.
fn transient(e: &veeam_vbr::Error) -> bool {
    lost_answer(e) || matches!(e, veeam_vbr::Error::ServerError { .. })
}
