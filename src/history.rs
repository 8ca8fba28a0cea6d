//! Recent probe runs, for the landing page (like blackbox_exporter's "Recent probes").

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::probe::RunReport;

/// How many recent runs to keep per probe.
const KEEP: usize = 10;

#[derive(Default)]
pub struct History {
    runs: Mutex<HashMap<(String, String), ProbeHistory>>,
}

#[derive(Clone, Default)]
pub struct ProbeHistory {
    /// Newest first.
    pub recent: VecDeque<RunReport>,
    /// Kept even after it scrolls out of `recent`, so the last failure's details stay visible.
    pub last_failure: Option<RunReport>,
    /// When the schedule says the probe runs next.
    pub next_run: Option<SystemTime>,
}

impl History {
    pub fn record(&self, target: &str, probe: &str, report: RunReport) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let h = runs.entry((target.to_owned(), probe.to_owned())).or_default();
        if report.outcome.is_err() {
            h.last_failure = Some(report.clone());
        }
        h.recent.push_front(report);
        h.recent.truncate(KEEP);
    }

    pub fn set_next_run(&self, target: &str, probe: &str, at: SystemTime) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.entry((target.to_owned(), probe.to_owned())).or_default().next_run = Some(at);
    }

    pub fn get(&self, target: &str, probe: &str) -> ProbeHistory {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.get(&(target.to_owned(), probe.to_owned())).cloned().unwrap_or_default()
    }
}
