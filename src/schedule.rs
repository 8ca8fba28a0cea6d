//! When each probe runs next, kept in `--storage.path` so that restarts and reloads never
//! re-run a probe early.
//!
//! A catalog restore writes into the production VM and may be scheduled every few hours: a
//! restart, a crash loop or a burst of reloads must not turn that into a restore every few
//! seconds. So the next run is `last activity + interval (± jitter)`, where the last activity is
//! the later of the last start and the last end (a run a crash interrupted counts as run).
//!
//! **Invariants:**
//! - A probe whose definition (kind, VM, path, checks) is unchanged keeps its due time across
//!   reloads and restarts; a changed interval moves the due time without an immediate run.
//! - A first failure is confirmed `retry_after_failure` later (when that is sooner than the
//!   interval); the due time of that retry is kept across restarts like any other.
//! - A probe that never ran, or whose definition changed, runs soon (staggered).
//! - The file is rewritten atomically; an unreadable one is logged and treated as empty.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::ledger::Ledger;
use crate::probe::Spec;

/// The file in `--storage.path`.
pub(crate) const FILE: &str = "schedule.json";

/// What is kept per probe.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Hash of what the probe does, without its timing.
    definition: String,
    #[serde(with = "humantime_serde")]
    interval: Duration,
    #[serde(default, with = "humantime_serde")]
    last_start: Option<SystemTime>,
    #[serde(default, with = "humantime_serde")]
    last_end: Option<SystemTime>,
    #[serde(with = "humantime_serde")]
    next_due: SystemTime,
    /// The last completed run's result, so a restart can show it until the next run.
    #[serde(default)]
    last_result: Option<LastResult>,
}

/// What the last completed run found: kept so that `/metrics` shows the probe's state right
/// after a restart instead of nothing until the next run (which may be hours away).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastResult {
    pub success: bool,
    #[serde(with = "humantime_serde")]
    pub finished_at: SystemTime,
    #[serde(default, with = "humantime_serde")]
    pub last_success: Option<SystemTime>,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Failed runs in a row (0 after a success).
    #[serde(default)]
    pub failures_in_a_row: u32,
}

impl Entry {
    fn last_activity(&self) -> Option<SystemTime> {
        self.last_start.max(self.last_end)
    }
}

/// The schedule of every probe, by `target/probe`.
pub struct Schedule {
    ledger: Ledger,
    entries: Mutex<HashMap<String, Entry>>,
}

fn key(target: &str, probe: &str) -> String {
    format!("{target}/{probe}")
}

/// What the probe does; timing (interval, timeouts) is left out on purpose.
fn definition(probe: &Spec) -> String {
    let mut text = format!("{:?} {:?}", probe.kind, probe.vm);
    // A probe moved to another API is a new probe; EM probes keep the hash they always had.
    if probe.api == crate::probe::Api::Vbr {
        text.push_str(" vbr");
    }
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..12])
}

/// `interval` moved by up to ±10% (at most 30 s), so probes drift apart instead of aligning.
pub fn jittered(interval: Duration) -> Duration {
    let spread = (interval / 10).min(Duration::from_secs(30)).as_secs_f64();
    let offset = rand::rng().random_range(-spread..=spread);
    Duration::from_secs_f64((interval.as_secs_f64() + offset).max(0.1))
}

impl Schedule {
    pub fn load(ledger: Ledger) -> Schedule {
        let entries = ledger.load_state(FILE).unwrap_or_else(|e| {
            tracing::error!(err = %e, "unreadable schedule file; every probe runs soon");
            HashMap::new()
        });
        Schedule { ledger, entries: Mutex::new(entries) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> (T, bool)) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (value, changed) = f(&mut entries);
        if changed && let Err(e) = self.ledger.save_state(FILE, &*entries) {
            tracing::error!(err = %e, "cannot save the schedule; a restart may run probes early");
        }
        value
    }

    /// When `probe` is due. A probe that never ran (or changed what it does) is due after
    /// `first`; a changed interval is applied to the last activity.
    pub fn due(&self, target: &str, probe: &Spec, first: Duration) -> SystemTime {
        let definition = definition(probe);
        self.with(|entries| {
            let entry = entries.get_mut(&key(target, &probe.name));
            match entry {
                Some(e) if e.definition == definition && e.interval == probe.interval => (e.next_due, false),
                Some(e) if e.definition == definition => {
                    e.interval = probe.interval;
                    let from = e.last_activity().unwrap_or_else(SystemTime::now);
                    e.next_due = from + jittered(probe.interval);
                    (e.next_due, true)
                }
                _ => {
                    let next_due = SystemTime::now() + first;
                    let entry = Entry {
                        definition,
                        interval: probe.interval,
                        last_start: None,
                        last_end: None,
                        next_due,
                        last_result: None,
                    };
                    entries.insert(key(target, &probe.name), entry);
                    (next_due, true)
                }
            }
        })
    }

    /// Notes that a run starts now (a crash during the run still counts as a run).
    pub fn started(&self, target: &str, probe: &Spec) {
        let now = SystemTime::now();
        self.with(|entries| {
            let entry = entries.entry(key(target, &probe.name)).or_insert_with(|| Entry {
                definition: definition(probe),
                interval: probe.interval,
                last_start: None,
                last_end: None,
                next_due: now,
                last_result: None,
            });
            entry.last_start = Some(now);
            entry.next_due = now + jittered(probe.interval);
            ((), true)
        })
    }

    /// Notes that a run ended now with `result` (`(success, duration)`; `None` for a run that
    /// found nothing out); the next is due one (jittered) interval later, or, after a first
    /// failure, `retry_after_failure` later when that is sooner: two failures in a row (what the
    /// alerts wait for) are then minutes apart, not an interval. Only the first failure is
    /// confirmed early, so a broken restore path is not hammered.
    pub fn finished(&self, target: &str, probe: &Spec, result: Option<(bool, Duration)>) -> SystemTime {
        let now = SystemTime::now();
        self.with(|entries| match entries.get_mut(&key(target, &probe.name)) {
            Some(entry) => {
                entry.last_end = Some(now);
                entry.next_due = now + jittered(probe.interval);
                if let Some((success, duration)) = result {
                    let earlier = entry.last_result.and_then(|r| r.last_success);
                    let last_success = if success { Some(now) } else { earlier };
                    let before = entry.last_result.map_or(0, |r| r.failures_in_a_row);
                    let failures_in_a_row = if success { 0 } else { before.saturating_add(1) };
                    entry.last_result =
                        Some(LastResult { success, finished_at: now, last_success, duration, failures_in_a_row });
                    if let Some(retry) =
                        probe.retry_after_failure.filter(|r| failures_in_a_row == 1 && *r < probe.interval)
                    {
                        entry.next_due = now + retry;
                    }
                }
                (entry.next_due, true)
            }
            None => (now + probe.interval, false),
        })
    }

    /// The last completed run's result, if the probe still does what it did then.
    pub fn last_result(&self, target: &str, probe: &Spec) -> Option<LastResult> {
        let definition = definition(probe);
        self.with(|entries| {
            let entry = entries.get(&key(target, &probe.name)).filter(|e| e.definition == definition);
            (entry.and_then(|e| e.last_result), false)
        })
    }

    /// Forgets probes no longer configured (so a probe added back later runs soon).
    pub fn retain(&self, configured: &[(String, String)]) {
        self.with(|entries| {
            let before = entries.len();
            entries.retain(|k, _| configured.iter().any(|(t, p)| *k == key(t, p)));
            ((), entries.len() != before)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::Fields;
    use crate::probe::{Kind, StepTimeouts};

    fn probe(vm: &str, interval: u64) -> Spec {
        let mut errors = Vec::new();
        let value = serde_norway::from_str("kind: mount").unwrap();
        let kind = Kind::decode(&mut Fields::new(value, "p", &mut errors).unwrap()).unwrap();
        Spec {
            name: "p".into(),
            kind,
            api: Default::default(),
            retry_after_failure: None,
            vm: vm.into(),
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(60),
            steps: StepTimeouts::default(),
            labels: Default::default(),
        }
    }

    fn open(dir: &std::path::Path) -> Schedule {
        Schedule::load(Ledger::open(dir).unwrap())
    }

    #[test]
    fn a_restart_keeps_the_due_time_and_a_new_interval_moves_it_without_running() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let hourly = probe("vm", 3600);
        let s = open(&state);
        let first = s.due("t", &hourly, Duration::from_secs(1));
        assert!(first <= SystemTime::now() + Duration::from_secs(1));
        s.started("t", &hourly);
        let next = s.finished("t", &hourly, Some((true, Duration::from_secs(3))));
        assert!(next > SystemTime::now() + Duration::from_secs(3000));

        let restarted = open(&state);
        assert_eq!(restarted.due("t", &hourly, Duration::from_secs(1)), next, "the due time survives a restart");
        let last = restarted.last_result("t", &hourly).expect("the last result survives a restart");
        assert!(last.success && last.last_success.is_some());
        assert_eq!(last.duration, Duration::from_secs(3));
        let daily = probe("vm", 86_400);
        let moved = restarted.due("t", &daily, Duration::from_secs(1));
        assert!(moved > SystemTime::now() + Duration::from_secs(80_000), "no immediate run for a new interval");
        let changed = probe("other-vm", 86_400);
        assert!(restarted.due("t", &changed, Duration::from_secs(1)) <= SystemTime::now() + Duration::from_secs(1));
    }

    #[test]
    fn only_a_first_failure_is_confirmed_early_and_the_count_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut hourly = probe("vm", 3600);
        hourly.retry_after_failure = Some(Duration::from_secs(300));
        let s = open(&state);
        s.due("t", &hourly, Duration::ZERO);
        let run = |ok: bool| {
            s.started("t", &hourly);
            s.finished("t", &hourly, Some((ok, Duration::from_secs(1))))
        };
        let soon = SystemTime::now() + Duration::from_secs(301);
        assert!(run(false) <= soon, "the first failure is re-run after retry_after_failure");
        assert!(run(false) > SystemTime::now() + Duration::from_secs(3000), "the second waits an interval");
        assert!(run(false) > SystemTime::now() + Duration::from_secs(3000));
        assert_eq!(open(&state).last_result("t", &hourly).unwrap().failures_in_a_row, 3);
        assert!(run(true) > SystemTime::now() + Duration::from_secs(3000));
        assert_eq!(s.last_result("t", &hourly).unwrap().failures_in_a_row, 0);
        let mut fast = probe("vm", 60);
        fast.retry_after_failure = Some(Duration::from_secs(300));
        s.started("t", &fast);
        let next = s.finished("t", &fast, Some((false, Duration::from_secs(1))));
        assert!(next <= SystemTime::now() + Duration::from_secs(67), "never later than the interval");
    }

    #[test]
    fn an_interrupted_run_counts_as_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let hourly = probe("vm", 3600);
        let s = open(&state);
        s.due("t", &hourly, Duration::ZERO);
        s.started("t", &hourly);
        drop(s);
        let after_crash = open(&state);
        assert!(after_crash.due("t", &hourly, Duration::ZERO) > SystemTime::now() + Duration::from_secs(3000));
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_thirty_seconds() {
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(100)).as_secs_f64();
            assert!((90.0..=110.0).contains(&j), "{j}");
            let j = jittered(Duration::from_secs(3600)).as_secs_f64();
            assert!((3570.0..=3630.0).contains(&j), "{j}");
        }
    }
}
