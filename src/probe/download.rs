//! `kind: file_restore`, `mode: download`: mount, restore one file for direct download, fetch
//! and verify it, unmount. Touches nothing in the VM.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::{Failure, Operation, Phase, ProbeError, ProbeKind, Run, mount, with_cleanup};
use crate::em::{self, Mount, OsKind, PointKind};
use crate::fields::Fields;

/// Downloads larger than this are refused unless `expected_size` says more.
const DEFAULT_DOWNLOAD_CAP: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq)]
pub struct DownloadProbe {
    /// The guest path, e.g. `C:/canary/canary.txt`.
    pub path: String,
    pub os_kind: Option<OsKind>,
    pub expected_size: Option<u64>,
    /// Lower-case hex.
    pub expected_sha256: Option<String>,
    /// The file holds a timestamp a task in the VM writes; the restored one must be recent.
    pub content_timestamp: Option<ContentTimestamp>,
}

/// `content_timestamp: { format: rfc3339 | unix, max_age: 26h }`: proves the restored data is
/// fresh, not only restorable. A backup that "succeeds" but captured old data (a stuck
/// snapshot, a backup copy that stopped) restores an old timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct ContentTimestamp {
    pub format: TimestampFormat,
    pub max_age: std::time::Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampFormat {
    /// `2026-11-25T17:00:00Z` (fractional seconds and offsets allowed).
    Rfc3339,
    /// Seconds since 1970, integer or decimal.
    Unix,
}

impl ContentTimestamp {
    fn decode(f: &mut Fields) -> Option<ContentTimestamp> {
        let mut inner = f.nested("content_timestamp")?;
        let format = inner.required("format");
        let max_age = inner.required::<crate::duration::Prom>("max_age").map(|d| d.0);
        if max_age.is_some_and(|d| d.is_zero()) {
            inner.error("max_age", "must be greater than 0");
        }
        let clean = inner.finish(None);
        clean.then_some(ContentTimestamp { format: format?, max_age: max_age? })
    }

    /// When the restored file says it was written.
    fn written_at(&self, bytes: &[u8]) -> Result<SystemTime, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_owned())?;
        let text = text.trim_start_matches('\u{feff}').trim();
        match self.format {
            TimestampFormat::Rfc3339 => humantime::parse_rfc3339_weak(text)
                .or_else(|_| em::parse_time(text).ok_or(()))
                .map_err(|_| format!("{text:?} is not an RFC 3339 timestamp")),
            TimestampFormat::Unix => text
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(s))
                .ok_or_else(|| format!("{text:?} is not a Unix timestamp")),
        }
    }
}

impl ProbeKind for DownloadProbe {
    const KIND: &'static str = "file_restore";
    const MODE: Option<&'static str> = Some("download");
    const PHASES: &'static [Phase] = &[Phase::Lookup, Phase::Mount, Phase::Restore, Phase::Download, Phase::Unmount];
    /// VBR prepares the download as a task (`restore`), then sends the ZIP (`download`).
    const VBR_PHASES: &'static [Phase] = Self::PHASES;

    fn content_max_age(&self) -> Option<Duration> {
        self.content_timestamp.as_ref().map(|ct| ct.max_age)
    }

    fn decode(f: &mut Fields) -> Option<DownloadProbe> {
        let path = guest_path(f)?;
        let sha: Option<String> = f.optional("expected_sha256");
        let sha = sha.map(|s| s.to_ascii_lowercase());
        if let Some(h) = &sha
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            f.error("expected_sha256", "must be 64 hex digits");
        }
        let expected_size = f.optional("expected_size");
        let content_timestamp = ContentTimestamp::decode(f);
        if content_timestamp.is_some() && (sha.is_some() || expected_size.is_some()) {
            f.error(
                "content_timestamp",
                "the file changes with every write: use it without expected_size/expected_sha256",
            );
        }
        Some(DownloadProbe {
            path,
            os_kind: f.optional("os_kind"),
            expected_size,
            expected_sha256: sha,
            content_timestamp,
        })
    }

    async fn run(&self, run: &mut Run<'_>) -> Result<Option<String>, Failure> {
        let point = run.lookup(PointKind::Backup).await?;
        let mounted = run.mount(point, self.os_kind).await?;
        let fetched = match mount::check(run, &mounted, false).await {
            Ok(()) => self.fetch(run, &mounted.mount).await,
            Err(e) => Err(e),
        };
        let unmounted = run.unmount(mounted).await;
        with_cleanup(fetched, unmounted).map(|()| None)
    }
}

/// The `path` of a file-restore probe: required, not blank.
pub(super) fn guest_path(f: &mut Fields) -> Option<String> {
    let path: String = f.required("path")?;
    if path.trim().is_empty() {
        f.error("path", "must not be empty");
        return None;
    }
    Some(path)
}

impl DownloadProbe {
    async fn fetch(&self, run: &mut Run<'_>, mount: &Mount) -> Result<(), ProbeError> {
        run.skip_if_shutting_down(Phase::Restore)?;
        let session = run.session;
        let start = session.start_download_restore(mount, &self.path);
        let task = run.task_step(Phase::Restore, Operation::FileRestoreFromMountPoint, start).await?;
        let href = task.download().map(|l| l.href.clone()).ok_or(ProbeError::Em {
            phase: Phase::Restore,
            source: em::Error::Decode("FileRestoreFromMountPoint task has no Download link".into()),
        })?;
        let cap = self.expected_size.map(|s| s.saturating_add(1) as usize).unwrap_or(DEFAULT_DOWNLOAD_CAP).max(1);
        let bytes = match run.read_step(Phase::Download, session.download(&href, cap)).await {
            Err(ProbeError::Em { source: em::Error::TooLarge { .. }, .. }) if self.expected_size.is_some() => {
                let size = self.expected_size.unwrap_or(0);
                return Err(ProbeError::Verify(format!("file is larger than the expected {size} bytes")));
            }
            other => other?,
        };
        self.verify(&bytes, run.observer)
    }

    /// Checks a restored file's size, SHA-256 and content timestamp, as configured.
    pub(super) fn verify(&self, bytes: &[u8], observer: &dyn super::RunObserver) -> Result<(), ProbeError> {
        if let Some(size) = self.expected_size
            && bytes.len() as u64 != size
        {
            return Err(ProbeError::Verify(format!("size is {} bytes, expected {size}", bytes.len())));
        }
        if let Some(expected) = &self.expected_sha256 {
            let actual = hex::encode(Sha256::digest(bytes));
            if &actual != expected {
                return Err(ProbeError::Verify(format!("SHA-256 is {actual}, expected {expected}")));
            }
        }
        if let Some(ct) = &self.content_timestamp {
            let written = ct.written_at(bytes).map_err(ProbeError::Verify)?;
            // A clock a little ahead in the VM reads as "just written".
            let age = SystemTime::now().duration_since(written).unwrap_or_default();
            observer.content_age(age);
            if age > ct.max_age {
                return Err(ProbeError::StaleContent { age, max_age: ct.max_age });
            }
        }
        Ok(())
    }
}
