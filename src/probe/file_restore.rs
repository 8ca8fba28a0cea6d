//! The `file_restore` probe, in its two modes.
//!
//! - `catalog`: the documented single-file restore to the original location. It **writes into
//!   the production VM**; point it at a dedicated canary file. EM's task success only means
//!   "started"; the outcome is the restore session's result, followed to `Stopped`.
//! - `download`: mount, restore for direct download, fetch and verify the bytes, unmount.
//!   Touches nothing in the VM.

use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{Failure, ProbeError, Run, mount, with_cleanup};
use crate::em::{OsKind, PointKind, SessionResult, SessionState};

/// Downloads larger than this are refused unless `expected_size` says more.
const DEFAULT_DOWNLOAD_CAP: usize = 64 << 20;

pub(super) async fn catalog(run: &mut Run<'_>, path: &str) -> Result<Option<String>, Failure> {
    let point = run.lookup(PointKind::Backup).await?;
    let session = run.session;
    let vm = run.probe.vm.clone();
    if run.shutdown.is_cancelled() {
        return Err(ProbeError::Cancelled("browse").into());
    }
    // The guestfs resources exist only after a browse of the point, in the same logon session.
    let browse = session.browse_catalog_point(&vm, &point.id);
    let browsed = run.task_step("browse", run.probe.steps.browse, "BrowseVM", browse).await?;
    let start = session.start_catalog_restore(&vm, &point.id, path);
    let restored = run.task_step("restore", run.probe.steps.restore, "RestoreFile", start).await;
    // Deleted only now: whether deleting the browse task ends the browse is undocumented.
    run.forget_task(&browsed).await;
    let task = restored?;
    run.forget_task(&task).await;
    let href = task.related().map(|l| l.href.clone()).ok_or(ProbeError::Em {
        phase: "restore",
        source: crate::em::Error::Decode("RestoreFile task has no Related restore session".into()),
    })?;
    let started = Instant::now();
    let result = follow_restore_session(run, &href).await;
    run.record_phase("restore_session", started.elapsed());
    Ok(result?)
}

/// Follows a restore session to `Stopped`, exporting its progress as it goes.
async fn follow_restore_session(run: &mut Run<'_>, href: &str) -> Result<Option<String>, ProbeError> {
    let [target, probe] = run.labels();
    let progress = run.metrics.restore_progress.with_label_values(&[target, probe]);
    progress.set(0.0);
    let deadline = run.deadline(run.probe.steps.restore_session);
    let mut delay = run.target.poll_initial;
    loop {
        match run.session.restore_session(href).await {
            Ok(s) => {
                progress.set(f64::from(s.progress) / 100.0);
                if s.state == SessionState::Stopped {
                    let result = s.result.unwrap_or(SessionResult::Other("none".into()));
                    let label = match result {
                        SessionResult::Success => "success",
                        SessionResult::Warning => "warning",
                        SessionResult::Failed => "failed",
                        SessionResult::Other(_) => "unknown",
                    };
                    run.metrics.restore_sessions.with_label_values(&[target, probe, label]).inc();
                    return match result {
                        SessionResult::Success => Ok(None),
                        SessionResult::Warning => Ok(Some("EM reported the restore with a warning".into())),
                        other => Err(ProbeError::RestoreFailed(other.as_str().to_owned())),
                    };
                }
            }
            Err(
                e @ (crate::em::Error::SessionExpired { .. }
                | crate::em::Error::NotFound { .. }
                | crate::em::Error::Forbidden { .. }),
            ) => {
                return Err(ProbeError::Em { phase: "restore_session", source: e });
            }
            Err(e) => tracing::warn!(target_name = target, probe, err = %e, "restore session poll failed; retrying"),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ProbeError::StepTimeout { phase: "restore_session", after: run.probe.steps.restore_session });
        }
        tokio::select! {
            _ = tokio::time::sleep(delay.min(deadline - now)) => {}
            _ = run.shutdown.cancelled() => return Err(ProbeError::Cancelled("restore_session")),
        }
        delay = run.next_poll_delay(delay);
    }
}

pub(super) async fn download(
    run: &mut Run<'_>,
    path: &str,
    os: Option<OsKind>,
    expected_size: Option<u64>,
    expected_sha256: Option<&str>,
) -> Result<Option<String>, Failure> {
    let point = run.lookup(PointKind::Backup).await?;
    let mounted = run.mount(point, os).await?;
    let fetched = match mount::check(run, &mounted, false).await {
        Ok(()) => fetch(run, &mounted.mount, path, expected_size, expected_sha256).await,
        Err(e) => Err(e),
    };
    let unmounted = run.unmount(mounted).await;
    with_cleanup(fetched, unmounted).map(|()| None)
}

async fn fetch(
    run: &mut Run<'_>,
    mount: &crate::em::Mount,
    path: &str,
    expected_size: Option<u64>,
    expected_sha256: Option<&str>,
) -> Result<(), ProbeError> {
    if run.shutdown.is_cancelled() {
        return Err(ProbeError::Cancelled("restore"));
    }
    let session = run.session;
    let start = session.start_download_restore(mount, path);
    let task = run.task_step("restore", run.probe.steps.restore, "FileRestoreFromMountPoint", start).await?;
    run.forget_task(&task).await;
    let href = task.download().map(|l| l.href.clone()).ok_or(ProbeError::Em {
        phase: "restore",
        source: crate::em::Error::Decode("FileRestoreFromMountPoint task has no Download link".into()),
    })?;
    let cap = expected_size.map(|s| s.saturating_add(1) as usize).unwrap_or(DEFAULT_DOWNLOAD_CAP).max(1);
    let bytes = run.read_step("download", run.probe.steps.download, session.download(&href, cap)).await;
    let bytes = match bytes {
        Err(ProbeError::Em { source: crate::em::Error::TooLarge { .. }, .. }) if expected_size.is_some() => {
            return Err(ProbeError::Verify(format!(
                "file is larger than the expected {} bytes",
                expected_size.unwrap_or(0)
            )));
        }
        other => other?,
    };
    if let Some(size) = expected_size
        && bytes.len() as u64 != size
    {
        return Err(ProbeError::Verify(format!("size is {} bytes, expected {size}", bytes.len())));
    }
    if let Some(expected) = expected_sha256 {
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != expected {
            return Err(ProbeError::Verify(format!("SHA-256 is {actual}, expected {expected}")));
        }
    }
    Ok(())
}
