//! Probe runs: what a probe is ([`Spec`]), its kinds (one file each), and one run ([`Run`]).
//!
//! **Invariants:**
//! - Every step has its own deadline; no timeout ever wraps a whole probe. A request that
//!   creates something on EM (mount, browse, restore) is bounded only by the client's request
//!   timeout, so we never drop a future whose effect we would not know about.
//! - A mount, once requested, is recorded in the [`Ledger`](crate::ledger::Ledger) first and is
//!   always followed by an unmount attempt: after errors, after step timeouts and during shutdown.
//! - Shutdown skips optional work (browse, download, following a restore) but never the wait for
//!   a mount task in flight, because the mount it creates must be deleted.
//! - This module knows nothing of metrics: a run reports through [`RunObserver`].
//!
//! **Adding a kind of probe:** write `<kind>.rs` with a settings struct implementing
//! [`ProbeKind`] (its configuration keys, phases and `run`), add `mod <kind>;` below and one
//! line to the `kinds!` list.

mod catalog;
mod download;
mod mount;
mod phase;
mod run;
mod vbr;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sha2::Digest;

pub use phase::{Phase, StepTimeouts};
pub use run::{Polling, Run};
pub use vbr::VbrRun;

use crate::em::{self, PointKind};
use crate::fields::Fields;

/// Which Veeam REST API a target speaks: Enterprise Manager's, or Backup & Replication's own.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, strum::VariantArray, strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Api {
    #[default]
    Em,
    Vbr,
}

vocabulary!(Api);

/// One configured probe: what it does and how often.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// The `probe` label value, unique within its target.
    pub name: String,
    pub vm: String,
    pub interval: Duration,
    /// Budget for the probe's work steps. Cleanup (unmount) always runs on its own timeout.
    pub timeout: Duration,
    pub steps: StepTimeouts,
    pub kind: Kind,
    /// The API of its target: it decides the phases a run goes through.
    pub api: Api,
    /// After a first failed run, run again this soon to confirm it (`None`: off).
    pub retry_after_failure: Option<Duration>,
    /// Labels the user attached (the target's, overridden by the probe's), exported only on
    /// `veeam_restore_probe_info`.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A kind of probe: its configuration section, its phases and what a run does.
pub trait ProbeKind: Sized {
    /// The `kind:` key in the configuration, and the `kind` label value.
    const KIND: &'static str;
    /// The `mode:` that selects this kind, for kinds that share a `kind:` value.
    const MODE: Option<&'static str>;
    /// The phases of a run against EM, in order.
    const PHASES: &'static [Phase];
    /// The phases of a run against VBR, in order (every kind mounts there: FLR works on a mount).
    const VBR_PHASES: &'static [Phase];
    /// True for kinds that write into the production VM (the landing page asks first).
    const WRITES_INTO_VM: bool = false;
    /// Takes this kind's own keys; whatever is left is reported as not a setting of the kind.
    fn decode(f: &mut Fields) -> Option<Self>;
    /// The kind of restore point it uses.
    fn point(&self) -> PointKind {
        PointKind::Backup
    }
    /// `content_timestamp.max_age`, for kinds that read a canary file's content.
    fn content_max_age(&self) -> Option<Duration> {
        None
    }
    /// One run, cleanup included. `Ok(Some(note))` is a success with a note (e.g. a warning).
    fn run(&self, run: &mut Run<'_>) -> impl Future<Output = Result<Option<String>, Failure>> + Send;
}

/// The list of kinds: the enum, the decoder by `kind:`/`mode:`, and the dispatch.
macro_rules! kinds {
    ($($variant:ident($settings:ty)),+ $(,)?) => {
        /// Every kind of probe, with its settings.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Kind {
            $($variant($settings)),+
        }

        impl Kind {
            /// The kinds as `(kind, mode)` pairs, for error messages.
            const NAMES: &'static [(&'static str, Option<&'static str>)] = &[$((<$settings>::KIND, <$settings>::MODE)),+];

            fn decode_as(kind: &str, mode: Option<&str>, f: &mut Fields) -> Option<Option<Kind>> {
                $(if kind == <$settings>::KIND && mode == <$settings>::MODE {
                    return Some(<$settings>::decode(f).map(Kind::$variant));
                })+
                None
            }

            /// The `kind` label value.
            pub fn label(&self) -> &'static str {
                match self { $(Kind::$variant(_) => <$settings>::KIND),+ }
            }

            /// The `mode` of kinds that share a `kind:` value.
            pub fn mode(&self) -> Option<&'static str> {
                match self { $(Kind::$variant(_) => <$settings>::MODE),+ }
            }

            /// The phases of a run against EM, in order.
            pub fn phases(&self) -> &'static [Phase] {
                match self { $(Kind::$variant(_) => <$settings>::PHASES),+ }
            }

            /// The phases of a run against `api`, in order.
            pub fn phases_on(&self, api: Api) -> &'static [Phase] {
                match (self, api) {
                    $((Kind::$variant(_), Api::Em) => <$settings>::PHASES,)+
                    $((Kind::$variant(_), Api::Vbr) => <$settings>::VBR_PHASES,)+
                }
            }

            /// See [`ProbeKind::WRITES_INTO_VM`].
            pub fn writes_into_vm(&self) -> bool {
                match self { $(Kind::$variant(_) => <$settings>::WRITES_INTO_VM),+ }
            }

            /// See [`ProbeKind::point`].
            pub fn point(&self) -> PointKind {
                match self { $(Kind::$variant(k) => k.point()),+ }
            }

            /// See [`ProbeKind::content_max_age`].
            pub fn content_max_age(&self) -> Option<Duration> {
                match self { $(Kind::$variant(k) => k.content_max_age()),+ }
            }

            async fn run(&self, run: &mut Run<'_>) -> Result<Option<String>, Failure> {
                match self { $(Kind::$variant(k) => k.run(run).await),+ }
            }
        }
    };
}

kinds! {
    Mount(mount::MountProbe),
    Download(download::DownloadProbe),
    Catalog(catalog::CatalogProbe),
}

impl Kind {
    /// Decodes `kind:`, `mode:` and the kind's own keys.
    pub fn decode(f: &mut Fields) -> Option<Kind> {
        let kind: String = f.required("kind")?;
        let mode: Option<String> = f.optional("mode");
        // EM's name for the original-location restore, from before the VBR backend.
        let mode = mode.map(|m| if m == "catalog" { "original_location".to_owned() } else { m });
        if let Some(decoded) = Kind::decode_as(&kind, mode.as_deref(), f) {
            return decoded;
        }
        let known: Vec<String> = Kind::NAMES
            .iter()
            .map(|(k, m)| match m {
                Some(m) => format!("{k} (mode: {m})"),
                None => (*k).to_owned(),
            })
            .collect();
        match (&mode, Kind::NAMES.iter().any(|(k, _)| *k == kind)) {
            (None, true) => f.error("mode", format!("required for {kind}; one of: {}", known.join(", "))),
            (Some(m), true) => f.error("mode", format!("{m:?} is not a mode of {kind}; one of: {}", known.join(", "))),
            (_, false) => f.error("kind", format!("unknown kind {kind:?}; one of: {}", known.join(", "))),
        }
        None
    }

    /// How the settings owner is named in "not a setting of …" errors.
    pub fn owner(&self) -> String {
        match self.mode() {
            Some(mode) => format!("a {} probe in mode {mode}", self.label()),
            None => format!("a {} probe", self.label()),
        }
    }
}

/// Told what a run does, as it happens. The exporter's metrics implement it; the probe code
/// knows nothing of metrics.
pub trait RunObserver: Send + Sync {
    fn phase(&self, phase: Phase, took: Duration);
    fn point_created(&self, at: SystemTime);
    fn task(&self, operation: Operation, outcome: TaskOutcome);
    /// Progress (0 to 1) of a restore session being followed.
    fn restore_progress(&self, ratio: f64);
    fn restore_session(&self, result: RestoreResult);
    /// How old the timestamp in a restored canary file was.
    fn content_age(&self, age: Duration);
    /// The malware status VBR reports for the newest restore point (`None`: not reported).
    fn malware_status(&self, status: Option<&str>);
}

/// Gives a fixed vocabulary of label values its `ALL` (declaration order) and `as_str`, both
/// from the one list of variants (strum's `VariantArray` and `IntoStaticStr` derives).
macro_rules! vocabulary {
    ($($t:ty),+) => {$(
        impl $t {
            pub const ALL: &'static [$t] = <$t as strum::VariantArray>::VARIANTS;
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    )+};
}
pub(crate) use vocabulary;

vocabulary!(Operation, TaskOutcome, RestoreResult);

/// The EM task operations probes start (EM's own names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
pub enum Operation {
    MountRestorePoint,
    FileRestoreFromMountPoint,
    #[strum(serialize = "BrowseVM")]
    BrowseVm,
    RestoreFile,
    /// VBR: preparing a file of an FLR mount for download (`ETaskType`).
    FlrDownload,
    /// VBR: restoring a file of an FLR mount to its original location.
    FlrRestore,
}

/// How waiting for a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum TaskOutcome {
    Success,
    Failed,
    Timeout,
}

/// The result of a restore session followed to `Stopped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum RestoreResult {
    Success,
    Warning,
    Failed,
    Unknown,
}

/// Why a probe run failed. [`ProbeError::reason`] is the bounded label value: the variant's
/// name (strum), or the client's reason for [`ProbeError::Em`].
#[derive(Debug, thiserror::Error, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum ProbeError {
    #[error("{phase}: {source}")]
    #[strum(disabled)]
    Em { phase: Phase, source: em::Error },
    #[error("{phase}: {source}")]
    #[strum(disabled)]
    Vbr { phase: Phase, source: veeam_vbr::Error },
    #[error("{phase}: no answer within the step timeout of {after:?}")]
    StepTimeout { phase: Phase, after: Duration },
    #[error("lookup: no {kind} restore point found for VM {vm:?}")]
    NoRestorePoint { kind: &'static str, vm: String },
    #[error("mount: the mount has no file-system roots")]
    EmptyMount,
    #[error("mount: VBR reports mount errors: {0}")]
    MountErrors(String),
    #[error("verify: {0}")]
    #[strum(serialize = "verify_failed")]
    Verify(String),
    #[error("verify: the restored file was written {} ago, more than max_age {}", crate::duration::format(*age), crate::duration::format(*max_age))]
    StaleContent { age: Duration, max_age: Duration },
    #[error("restore_session: restore ended with result {0}")]
    RestoreFailed(String),
    #[error("unmount: {0}")]
    #[strum(serialize = "unmount_failed")]
    Unmount(String),
    #[error("{0}: skipped because the exporter is shutting down")]
    Cancelled(Phase),
    #[error("state directory: {0}")]
    #[strum(serialize = "state_error")]
    State(String),
}

impl ProbeError {
    /// Every value [`ProbeError::reason`] can return, the client's included.
    pub fn reasons() -> impl Iterator<Item = &'static str> {
        let vbr_only = veeam_vbr::Error::REASONS.iter().filter(|r| !em::Error::REASONS.contains(r));
        // `em` and `vbr` wrap the clients' errors, whose own reasons stand in for them.
        let own = <ProbeError as strum::VariantNames>::VARIANTS.iter().filter(|r| !matches!(**r, "em" | "vbr"));
        em::Error::REASONS.iter().chain(vbr_only).chain(own).copied()
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::Em { source, .. } => source.reason(),
            ProbeError::Vbr { source, .. } => source.reason(),
            own => own.into(),
        }
    }
}

/// What one run did, for metrics and the landing page.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub finished_at: SystemTime,
    pub duration: Duration,
    pub phases: Vec<(Phase, Duration)>,
    /// `Ok(note)` on success (the note says e.g. that EM reported a warning).
    pub outcome: Result<Option<String>, (&'static str, String)>,
    /// A cleanup problem that came after an earlier failure (the earlier one is the reason).
    pub cleanup_error: Option<String>,
    /// EM answered 401 before the run asked it to change anything: logging on again and
    /// starting over is safe.
    pub session_lost_before_changes: bool,
    /// Started by `POST /-/probe` rather than by the schedule.
    pub manual: bool,
}

impl RunReport {
    /// True when shutdown cut the run short and its cleanup went well: no result either way.
    pub fn cut_short_by_shutdown(&self) -> bool {
        matches!(&self.outcome, Err((reason, _)) if *reason == "cancelled") && self.cleanup_error.is_none()
    }
}

/// What the probe runs of one target have in flight, so cleanup leaves it alone: their ledger
/// records, mounts and logon sessions. Also remembers the restore points where a failed mount
/// step may have left a mount no record knows, for the sweep.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<Tracked>);

#[derive(Debug, Default)]
struct Tracked {
    records: HashSet<String>,
    mounts: HashSet<String>,
    to_sweep: HashSet<(PointKind, String)>,
    /// Runs per logon session, by a hash of the session id (the id is a secret).
    sessions: HashMap<[u8; 32], usize>,
}

fn session_key(id: &str) -> [u8; 32] {
    sha2::Sha256::digest(id.as_bytes()).into()
}

/// A run's use of a logon session, from before its first request until it ended: while one
/// exists, the session is not logged off even when it is no longer the current one.
pub struct SessionInUse<'a> {
    in_flight: &'a InFlight,
    key: [u8; 32],
}

impl Drop for SessionInUse<'_> {
    fn drop(&mut self) {
        self.in_flight.with(|t| {
            if let Some(n) = t.sessions.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    t.sessions.remove(&self.key);
                }
            }
        });
    }
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
    /// The restore points to sweep, as `(kind, mounts href)`.
    pub fn to_sweep(&self) -> Vec<(PointKind, String)> {
        self.with(|t| t.to_sweep.iter().cloned().collect())
    }
    /// The point was swept: nothing is left there that no run owns.
    pub fn swept(&self, point: &(PointKind, String)) {
        self.with(|t| t.to_sweep.remove(point));
    }
    /// True when no run holds a record (so no mount can be in progress).
    pub fn is_idle(&self) -> bool {
        self.with(|t| t.records.is_empty())
    }
    /// Marks the logon session `id` as used by a run until the returned guard is dropped.
    pub fn use_session(&self, id: &str) -> SessionInUse<'_> {
        let key = session_key(id);
        self.with(|t| *t.sessions.entry(key).or_default() += 1);
        SessionInUse { in_flight: self, key }
    }
    /// True while a run uses the logon session `id`.
    pub fn uses_session(&self, id: &str) -> bool {
        self.with(|t| t.sessions.contains_key(&session_key(id)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed() {
        let samples = [
            ProbeError::StepTimeout { phase: Phase::Mount, after: Duration::ZERO },
            ProbeError::NoRestorePoint { kind: "backup", vm: String::new() },
            ProbeError::EmptyMount,
            ProbeError::MountErrors(String::new()),
            ProbeError::Verify(String::new()),
            ProbeError::StaleContent { age: Duration::ZERO, max_age: Duration::ZERO },
            ProbeError::RestoreFailed(String::new()),
            ProbeError::Unmount(String::new()),
            ProbeError::Cancelled(Phase::Browse),
            ProbeError::State(String::new()),
        ];
        let listed: Vec<&str> = ProbeError::reasons().collect();
        for e in &samples {
            assert!(listed.contains(&e.reason()), "{}", e.reason());
        }
        let vbr_only = veeam_vbr::Error::REASONS.iter().filter(|r| !em::Error::REASONS.contains(r)).count();
        assert_eq!(listed.len(), em::Error::REASONS.len() + vbr_only + samples.len());
    }

    #[test]
    fn every_vocabulary_lists_each_value_once() {
        let ops: HashSet<_> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        let outcomes: HashSet<_> = TaskOutcome::ALL.iter().map(|o| o.as_str()).collect();
        let results: HashSet<_> = RestoreResult::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!((ops.len(), outcomes.len(), results.len()), (6, 3, 4));
        assert_eq!(Operation::BrowseVm.as_str(), "BrowseVM", "EM's own spelling");
        assert_eq!(RestoreResult::Warning.as_str(), "warning");
    }

    #[test]
    fn kinds_decode_strictly_with_clear_errors() {
        let decode = |yaml: &str| {
            let mut errors = Vec::new();
            let value: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
            let mut f = Fields::new(value, "p", &mut errors).unwrap();
            let kind = Kind::decode(&mut f);
            if let Some(k) = &kind {
                f.finish(Some(&k.owner()));
            }
            (kind, errors)
        };
        let (kind, errors) = decode("kind: mount\nbrowse: false\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(kind.unwrap().phases(), &[Phase::Lookup, Phase::Mount, Phase::Browse, Phase::Unmount]);
        let (_, errors) = decode("kind: mount\npath: C:/x\n");
        assert_eq!(errors, ["p.path: not a setting of a mount probe"]);
        let (_, errors) = decode("kind: file_restore\npath: C:/x\n");
        assert!(errors[0].starts_with("p.mode: required for file_restore"), "{errors:?}");
        let (_, errors) = decode("kind: tape\n");
        assert!(errors[0].starts_with("p.kind: unknown kind \"tape\""), "{errors:?}");
        let (_, errors) = decode("kind: file_restore\nmode: catalog\npath: C:/x\nexpected_size: 3\n");
        assert_eq!(errors, ["p.expected_size: not a setting of a file_restore probe in mode original_location"]);
    }
}
