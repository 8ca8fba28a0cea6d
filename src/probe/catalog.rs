//! `kind: file_restore`, `mode: catalog`: the documented single-file restore to the original
//! location. It **writes into the production VM**; point it at a dedicated canary file.
//!
//! As documented, the point is browsed first (`?action=browse`, task `BrowseVM`): the `guestfs`
//! resources exist only after that, in the same logon session. EM's task success only means
//! "started"; the outcome is the restore session's result, followed to `Stopped`.

use super::{Failure, Operation, Phase, ProbeError, ProbeKind, Run, download};
use crate::em::{self, PointKind};
use crate::fields::Fields;

#[derive(Clone, Debug, PartialEq)]
pub struct CatalogProbe {
    /// The guest path, e.g. `C:/canary/canary.txt`.
    pub path: String,
}

impl ProbeKind for CatalogProbe {
    const KIND: &'static str = "file_restore";
    /// The one name for both APIs: EM calls it a catalog restore, VBR an FLR restore; both put
    /// the file back where it was. `mode: catalog` is accepted too (see [`Kind::decode`](super::Kind::decode)).
    const MODE: Option<&'static str> = Some("original_location");
    /// EM: the catalog browse task, the restore task, then the restore session.
    const PHASES: &'static [Phase] = &[Phase::Lookup, Phase::Browse, Phase::Restore, Phase::RestoreSession];
    /// VBR: an FLR mount, the restore task (followed live), the unmount.
    const VBR_PHASES: &'static [Phase] = &[Phase::Lookup, Phase::Mount, Phase::Restore, Phase::Unmount];
    /// A catalog restore puts the file back at its original location, in the production VM.
    const WRITES_INTO_VM: bool = true;

    fn decode(f: &mut Fields) -> Option<CatalogProbe> {
        Some(CatalogProbe { path: download::guest_path(f)? })
    }

    async fn run(&self, run: &mut Run<'_>) -> Result<Option<String>, Failure> {
        let point = run.lookup(PointKind::Backup).await?;
        let session = run.session;
        let vm = run.spec.vm.clone();
        run.skip_if_shutting_down(Phase::Browse)?;
        let browse = session.browse_catalog_point(&vm, &point.id);
        run.task_step(Phase::Browse, Operation::BrowseVm, browse).await?;
        let start = session.start_catalog_restore(&vm, &point.id, &self.path);
        let task = run.task_step(Phase::Restore, Operation::RestoreFile, start).await?;
        let href = task.related().map(|l| l.href.clone()).ok_or(ProbeError::Em {
            phase: Phase::Restore,
            source: em::Error::Decode("RestoreFile task has no Related restore session".into()),
        })?;
        Ok(run.follow_restore_session(&href).await?)
    }
}
