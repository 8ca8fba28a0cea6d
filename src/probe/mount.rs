//! The `mount` probe: newest point, mount, check (and browse), unmount, confirm.

use super::{Failure, Mounted, ProbeError, Run, with_cleanup};
use crate::em::{OsKind, PointKind};

pub(super) async fn run(
    run: &mut Run<'_>,
    kind: PointKind,
    os: Option<OsKind>,
    browse: bool,
) -> Result<Option<String>, Failure> {
    let point = run.lookup(kind).await?;
    let mounted = run.mount(point, os).await?;
    let checked = check(run, &mounted, browse).await;
    let unmounted = run.unmount(mounted).await;
    with_cleanup(checked, unmounted).map(|()| None)
}

/// The mount must expose file-system roots; with `browse`, one root must list.
pub(super) async fn check(run: &mut Run<'_>, mounted: &Mounted, browse: bool) -> Result<(), ProbeError> {
    let Some(root) = mounted.mount.fs_roots.first() else { return Err(ProbeError::EmptyMount) };
    if !browse {
        return Ok(());
    }
    if run.shutdown.is_cancelled() {
        return Err(ProbeError::Cancelled("browse"));
    }
    let Some(href) = root.href.clone() else {
        // Without an href there is nothing to list; the roots themselves prove the mount.
        tracing::warn!(probe = %run.probe.name, "first FSRoots entry has no Href; browse skipped");
        return Ok(());
    };
    let session = run.session;
    run.read_step("browse", run.probe.steps.browse, session.list_dirs(&href, 10)).await.map(drop)
}
