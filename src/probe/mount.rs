//! `kind: mount`: newest point, mount, check (and list a directory), unmount, confirm.

use super::run::Mounted;
use super::{Failure, Phase, ProbeError, ProbeKind, Run, with_cleanup};
use crate::em::{OsKind, PointKind};
use crate::fields::Fields;

#[derive(Clone, Debug, PartialEq)]
pub struct MountProbe {
    /// Backup (default) or replica point.
    pub point: PointKind,
    /// EM mounts as Windows when none is sent; Linux guests need `Linux`.
    pub os_kind: Option<OsKind>,
    /// List one directory of the first volume (default true).
    pub browse: bool,
}

impl ProbeKind for MountProbe {
    const KIND: &'static str = "mount";
    const MODE: Option<&'static str> = None;
    const PHASES: &'static [Phase] = &[Phase::Lookup, Phase::Mount, Phase::Browse, Phase::Unmount];
    const VBR_PHASES: &'static [Phase] = Self::PHASES;

    fn decode(f: &mut Fields) -> Option<MountProbe> {
        Some(MountProbe {
            point: f.or("point", PointKind::Backup),
            os_kind: f.optional("os_kind"),
            browse: f.or("browse", true),
        })
    }

    fn point(&self) -> PointKind {
        self.point
    }

    async fn run(&self, run: &mut Run<'_>) -> Result<Option<String>, Failure> {
        let point = run.lookup(self.point).await?;
        let mounted = run.mount(point, self.os_kind).await?;
        let checked = check(run, &mounted, self.browse).await;
        let unmounted = run.unmount(mounted).await;
        with_cleanup(checked, unmounted).map(|()| None)
    }
}

/// The mount must expose file-system roots; with `browse`, one root must list.
pub(super) async fn check(run: &mut Run<'_>, mounted: &Mounted, browse: bool) -> Result<(), ProbeError> {
    let Some(root) = mounted.mount.fs_roots.first() else { return Err(ProbeError::EmptyMount) };
    if !browse {
        return Ok(());
    }
    run.skip_if_shutting_down(Phase::Browse)?;
    let Some(href) = root.href.clone() else {
        // Without an href there is nothing to list; the roots themselves prove the mount.
        tracing::warn!(probe = %run.spec.name, "first FSRoots entry has no Href; browse skipped");
        return Ok(());
    };
    let session = run.session;
    run.read_step(Phase::Browse, session.list_dirs(&href, 10)).await.map(drop)
}
