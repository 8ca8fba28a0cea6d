//! The passive restore watch: every restore on EM, not only the canary's.
//!
//! "Did any restore fail today, including the ones people started by hand?" Per target and
//! opt-in (`restore_watch:`), it reads EM's restore sessions (`query?type=RestoreSession`, which
//! covers the last 30 days) and counts the finished ones by job type and result, and reports how
//! many run and how long the oldest has been running.
//!
//! **Invariants:**
//! - A session is counted once, across restarts too: the ids of recently counted sessions and the
//!   totals live in `--storage.path` (`restore-watch-<target>.json`), and the counters start from
//!   the totals, so they neither double-count nor go back.
//! - Sessions of the VMs this target's probes use are the canary's own (a mount shows as a
//!   `FileLevelRestore` session) and are left out.
//! - One bounded set of requests per interval: at most [`MAX_PAGES`] pages of [`PAGE_SIZE`] for
//!   finished sessions and as many for running ones; a larger backlog is read over the next
//!   intervals (sorted by end time, so the watermark only moves forward).
//! - Label values come from fixed vocabularies: unknown job types fold into `other`, unknown
//!   results into `unknown`. No VM, user or session id becomes a label.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::em::{self, RestoreSession, RestoreSessionResult, RestoreSessionState, Session};

pub const PAGE_SIZE: u32 = 100;
pub const MAX_PAGES: u32 = 5;
/// How far back the first read looks: "did any restore fail today".
const FIRST_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
/// Sessions that ended this close before the watermark are read again (EM may list a session
/// late); their ids keep them from being counted twice.
const OVERLAP: Duration = Duration::from_secs(600);

/// `job_type` label values: EM's documented `JobType`s, and `other`.
pub const JOB_TYPES: [&str; 3] = ["FileLevelRestore", "RestoreVm", "other"];
/// `result` label values: EM's documented results, and `unknown`.
pub const RESULTS: [&str; 4] = ["success", "warning", "failed", "unknown"];

/// What has been counted, kept in `--storage.path`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counted {
    /// Every session that ended before this (EM's clock) has been read.
    watermark: Option<SystemTime>,
    /// Counted sessions that ended after `watermark - OVERLAP`, by id.
    recent: BTreeMap<String, SystemTime>,
    /// Totals by `(job_type, result)`.
    totals: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Counted {
    /// The file in `--storage.path`; target names are `[A-Za-z0-9._-]`.
    pub fn file(target: &str) -> String {
        format!("restore-watch-{target}.json")
    }

    /// Every `(job_type, result, total)` counted so far.
    pub fn totals(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.totals.iter().flat_map(|(job, results)| results.iter().map(move |(r, n)| (job.as_str(), r.as_str(), *n)))
    }
}

/// One read: what finished since the last one, and what runs now.
#[derive(Debug, Default, PartialEq)]
pub struct Reading {
    /// Newly finished sessions by `(job_type, result)`.
    pub finished: BTreeMap<(&'static str, &'static str), u64>,
    pub running: u64,
    /// How long the oldest running session has been running.
    pub oldest_running: Option<Duration>,
    /// False when more sessions were there than one read takes (the rest comes next time).
    pub complete: bool,
}

/// Reads EM's restore sessions once, counting new finished ones into `counted`. `own_vms` are
/// the probed VMs (lower case), whose sessions are the canary's.
pub async fn read(
    session: &Session,
    counted: &mut Counted,
    own_vms: &HashSet<String>,
    now: SystemTime,
) -> em::Result<Reading> {
    let mut reading = Reading { complete: true, ..Reading::default() };
    let own = |s: &RestoreSession| s.vm_display_name.as_deref().is_some_and(|vm| own_vms.contains(&vm.to_lowercase()));

    // Finished: ended since the watermark (minus the overlap), oldest first.
    let since = counted.watermark.unwrap_or(now - FIRST_LOOKBACK) - OVERLAP;
    let filter = format!("State==Stopped;EndTime>={}", utc(since));
    let mut newest = counted.watermark;
    for page in 1..=MAX_PAGES {
        let (sessions, pages) = session.restore_sessions_page(&filter, "EndTime", page, PAGE_SIZE).await?;
        // Liberal: the filter is applied again, in case EM ignored part of it.
        for s in sessions.iter().filter(|s| s.state == RestoreSessionState::Stopped) {
            let Some(end) = s.end_time.filter(|end| *end >= since) else { continue };
            newest = newest.max(Some(end));
            let id = s.uid.clone().unwrap_or_else(|| s.href.clone());
            if counted.recent.insert(id, end).is_some() || own(s) {
                continue;
            }
            let key = (job_type(s), result(s));
            *reading.finished.entry(key).or_default() += 1;
            *counted.totals.entry(key.0.to_owned()).or_default().entry(key.1.to_owned()).or_default() += 1;
        }
        if page >= pages {
            break;
        }
        reading.complete &= page < MAX_PAGES;
    }
    counted.watermark = newest;
    if let Some(watermark) = newest {
        counted.recent.retain(|_, end| *end + OVERLAP >= watermark);
    }

    // Running: anything not stopped, oldest first.
    for page in 1..=MAX_PAGES {
        let (sessions, pages) =
            session.restore_sessions_page("State!=Stopped", "CreationTime", page, PAGE_SIZE).await?;
        for s in sessions.iter().filter(|s| s.state != RestoreSessionState::Stopped && !own(s)) {
            reading.running += 1;
            let age = s.creation_time.and_then(|c| now.duration_since(c).ok()).unwrap_or_default();
            reading.oldest_running = reading.oldest_running.max(Some(age));
        }
        if page >= pages {
            break;
        }
        reading.complete &= page < MAX_PAGES;
    }
    Ok(reading)
}

fn job_type(s: &RestoreSession) -> &'static str {
    let job = s.job_type.as_deref().unwrap_or("");
    JOB_TYPES.iter().find(|known| known.eq_ignore_ascii_case(job)).copied().unwrap_or("other")
}

fn result(s: &RestoreSession) -> &'static str {
    match s.result {
        Some(RestoreSessionResult::Success) => "success",
        Some(RestoreSessionResult::Warning) => "warning",
        Some(RestoreSessionResult::Failed) => "failed",
        _ => "unknown",
    }
}

/// EM's filter time format: "accepts only UTC-formatted DateTime values", without a zone
/// suffix as clients send it (`2024-05-01T10:00:00`).
fn utc(t: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(t).to_string();
    text.trim_end_matches('Z').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_times_are_utc_without_a_zone() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(utc(t), "2023-11-14T22:13:20");
    }

    #[test]
    fn counted_state_survives_a_round_trip() {
        let mut counted =
            Counted { watermark: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100)), ..Counted::default() };
        counted.recent.insert("urn:veeam:RestoreSession:1".into(), SystemTime::UNIX_EPOCH);
        counted.totals.entry("RestoreVm".into()).or_default().insert("failed".into(), 2);
        let text = serde_json::to_string(&counted).unwrap();
        let back: Counted = serde_json::from_str(&text).unwrap();
        assert_eq!(back.totals().collect::<Vec<_>>(), vec![("RestoreVm", "failed", 2)]);
        assert_eq!(back.watermark, counted.watermark);
        assert_eq!(back.recent, counted.recent);
    }
}
