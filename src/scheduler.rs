//! Runs every configured probe on its own schedule and publishes the results.
//!
//! A *generation* is the set of loops for one loaded configuration. A reload stops the old
//! generation from scheduling new runs (its runs in progress finish, unmount included) and
//! starts a new one. A per-probe lock that outlives generations keeps a probe from ever
//! overlapping itself, even across a reload, and per-target state that outlives generations
//! keeps the new configuration's cleanup away from the old one's mounts in flight. Scrapes never
//! trigger runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cleanup;
use crate::config::Config;
use crate::history::History;
use crate::ledger::Ledger;
use crate::metrics::{Metrics, ProbeObserver, RUN_CANCELLED, RUN_FAILURE, RUN_SUCCESS, unix_seconds};
use crate::probe::{Api, Polling, Run, RunReport, Spec, VbrRun};
use crate::schedule::Schedule;
use crate::target::{TargetRuntime, TargetState};
use crate::watch;

/// State shared by all generations.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub history: Arc<History>,
    pub ledger: Ledger,
    pub schedule: Schedule,
    /// Fires once, when the process shuts down: runs skip optional work and unmount.
    pub shutdown: CancellationToken,
    probe_locks: Mutex<HashMap<ProbeKey, Arc<tokio::sync::Mutex<()>>>>,
    /// "Run now" requests, one per probe; like the locks they outlive generations.
    run_now: Mutex<HashMap<ProbeKey, Arc<tokio::sync::Notify>>>,
    targets: Mutex<HashMap<String, Arc<TargetState>>>,
}

/// `(target name, probe name)`.
type ProbeKey = (String, String);

impl Shared {
    pub fn new(metrics: Arc<Metrics>, history: Arc<History>, ledger: Ledger) -> Shared {
        Shared {
            metrics,
            history,
            schedule: Schedule::load(ledger.clone()),
            ledger,
            shutdown: CancellationToken::new(),
            probe_locks: Mutex::default(),
            run_now: Mutex::default(),
            targets: Mutex::default(),
        }
    }

    fn target_state(&self, target: &str) -> Arc<TargetState> {
        let mut states = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        states.entry(target.to_owned()).or_default().clone()
    }

    fn run_now_signal(&self, target: &str, probe: &str) -> Arc<tokio::sync::Notify> {
        let mut signals = self.run_now.lock().unwrap_or_else(|p| p.into_inner());
        signals.entry((target.to_owned(), probe.to_owned())).or_default().clone()
    }

    /// Asks the probe's loop to run it now (`POST /-/probe`), unless a run is in progress. The
    /// run still takes the per-probe lock and a permit of the target's concurrency cap.
    pub fn run_now(&self, target: &str, probe: &str) -> RunNow {
        if self.probe_lock(target, probe).try_lock().is_err() {
            return RunNow::AlreadyRunning;
        }
        self.run_now_signal(target, probe).notify_one();
        RunNow::Started
    }

    fn probe_lock(&self, target: &str, probe: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.probe_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry((target.to_owned(), probe.to_owned())).or_default().clone()
    }
}

/// The answer to a "run now" request.
#[derive(Debug, PartialEq, Eq)]
pub enum RunNow {
    Started,
    AlreadyRunning,
}

/// The loops of one configuration.
pub struct Generation {
    stop: CancellationToken,
    loops: Vec<JoinHandle<()>>,
    targets: Vec<Arc<TargetRuntime>>,
}

impl Generation {
    pub fn start(config: &Config, shared: &Arc<Shared>) -> Generation {
        let stop = CancellationToken::new();
        let mut loops = Vec::new();
        let mut targets = Vec::new();
        let mut index = 0u32;
        let configured: Vec<(String, String)> =
            config.targets.iter().flat_map(|t| t.probes.iter().map(|p| (t.name.clone(), p.name.clone()))).collect();
        shared.schedule.retain(&configured);
        for t in &config.targets {
            let state = shared.target_state(&t.name);
            // A reload is how an operator says "try again now", e.g. after fixing a password.
            state.reset_backoff();
            let runtime = Arc::new(TargetRuntime::new(t.clone(), shared.metrics.clone(), shared.ledger.clone(), state));
            loops.push(tokio::spawn(keeper(runtime.clone(), stop.clone())));
            if let Some(watch) = &t.restore_watch {
                loops.push(tokio::spawn(watch_loop(runtime.clone(), watch.interval, stop.clone())));
            }
            for probe in &t.probes {
                // Probes that are due (never ran, or overdue) start staggered, not all at once:
                // a second apart, or closer when that would not fit into one interval.
                let first = stagger(index, configured.len(), probe.interval);
                loops.push(tokio::spawn(probe_loop(
                    runtime.clone(),
                    probe.clone(),
                    shared.clone(),
                    stop.clone(),
                    first,
                )));
                index += 1;
            }
            targets.push(runtime);
        }
        Generation { stop, loops, targets }
    }

    /// Stops scheduling and waits for runs in progress to finish (unmounts included). Then logs
    /// off the targets not named in `still_configured`: the others keep their session, which
    /// the next generation shares.
    pub async fn finish(self, still_configured: &[String]) {
        self.stop.cancel();
        for l in self.loops {
            let _ = l.await;
        }
        for t in self.targets.iter().filter(|t| !still_configured.contains(&t.config.name)) {
            t.logoff().await;
        }
    }
}

/// Logs on, keeps the session alive, and follows up what earlier runs left on its own timer
/// ([`cleanup::FollowUp`]): records are reached with their own sessions, so cleanup goes on
/// while a logon is refused or backing off.
async fn keeper(target: Arc<TargetRuntime>, stop: CancellationToken) {
    target.keep_alive().await;
    let interval = target.config.keepalive_interval;
    let mut follow_up = cleanup::FollowUp::default();
    let mut next_keep_alive = Instant::now() + interval;
    loop {
        let open = cleanup::pass(&target).await;
        let next_pass = Instant::now() + follow_up.next(open, interval);
        tokio::select! {
            _ = tokio::time::sleep_until(next_pass.min(next_keep_alive).into()) => {}
            _ = target.state.follow_up.notified() => {}
            _ = stop.cancelled() => return,
        }
        if Instant::now() >= next_keep_alive {
            target.keep_alive().await;
            next_keep_alive = Instant::now() + interval;
        }
    }
}

/// Reads EM's restore sessions every `interval` (see [`crate::watch`]) and publishes them.
async fn watch_loop(target: Arc<TargetRuntime>, interval: Duration, stop: CancellationToken) {
    let name = target.config.name.as_str();
    let own_vms: HashSet<String> = target.config.probes.iter().map(|p| p.vm.to_lowercase()).collect();
    loop {
        let mut guard = target.state.watch.lock().await;
        let counted = guard.get_or_insert_with(|| {
            target.ledger.load_state(&watch::Counted::file(name)).unwrap_or_else(|e| {
                tracing::error!(target_name = name, err = %e, "cannot read what the restore watch counted; counting afresh");
                watch::Counted::default()
            })
        });
        let m = target.metrics.write();
        // The counters start from the kept totals, and follow them.
        let sync = |counted: &watch::Counted| {
            for (job, result, total) in counted.totals() {
                let counter = m.watch_sessions.with_label_values(&[name, job, result]);
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        };
        sync(counted);
        let read = match target.session().await {
            Ok(session) => watch::read(&session, counted, &own_vms, SystemTime::now()).await,
            Err(e) => Err(e),
        };
        match read {
            Ok(reading) => {
                if let Err(e) = target.ledger.save_state(&watch::Counted::file(name), &*counted) {
                    tracing::error!(target_name = name, err = %e, "cannot keep what the restore watch counted");
                }
                sync(counted);
                m.watch_running.with_label_values(&[name]).set(reading.running as i64);
                let oldest = reading.oldest_running.unwrap_or_default().as_secs_f64();
                m.watch_oldest_running.with_label_values(&[name]).set(oldest);
                m.watch_last_success.with_label_values(&[name]).set(unix_seconds(SystemTime::now()));
                if !reading.complete {
                    tracing::info!(
                        target_name = name,
                        "more restore sessions than one read takes; the rest follows next time"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(target_name = name, reason = e.reason(), err = %e, "restore watch cannot read EM's restore sessions")
            }
        }
        drop(guard);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Runs `probe` whenever the [`Schedule`] says it is due, never overlapping itself.
async fn probe_loop(
    target: Arc<TargetRuntime>,
    probe: Spec,
    shared: Arc<Shared>,
    stop: CancellationToken,
    first: Duration,
) {
    let name = target.config.name.clone();
    shared.show_last_result(&name, &probe);
    let mut earliest = SystemTime::now() + first;
    let run_now = shared.run_now_signal(&name, &probe.name);
    loop {
        let due = shared.schedule.due(&name, &probe, first).max(earliest);
        earliest = SystemTime::now();
        shared.note_next_run(&name, &probe, due);
        let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
        let manual = tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = run_now.notified() => true,
            _ = stop.cancelled() => return,
        };
        let lock = shared.probe_lock(&name, &probe.name);
        let _never_overlap = lock.lock().await;
        // Another configuration generation may have run it while this one waited for the lock.
        if !manual && shared.schedule.due(&name, &probe, first) > SystemTime::now() + Duration::from_secs(1) {
            continue;
        }
        let Ok(_permit) = target.permits.acquire().await else { return };
        if stop.is_cancelled() {
            return;
        }
        shared.schedule.started(&name, &probe);
        // Boxed: a run's state machine is tens of kilobytes, and a thousand waiting probe
        // loops should not each carry one between runs.
        let mut report = Box::pin(run_once(&target, &probe, &shared)).await;
        report.manual = manual;
        if report.outcome.is_err() {
            // What a failed run left behind is followed up now, not at the next keep-alive.
            target.state.follow_up.notify_one();
        }
        // A run cut short by shutdown says nothing about restores: it is neither a result to
        // keep nor a failure to count.
        let result = (!report.cut_short_by_shutdown()).then_some((report.outcome.is_ok(), report.duration));
        let next = shared.schedule.finished(&name, &probe, result);
        shared.note_next_run(&name, &probe, next);
        publish(&shared, &name, &probe, report);
    }
}

/// When the `index`th of `count` due probes first runs: a second apart, or spread evenly over
/// one `interval` when a second apart would take longer (1,000 probes on a 15-minute interval).
fn stagger(index: u32, count: usize, interval: Duration) -> Duration {
    let apart = Duration::from_secs(1).min(interval / u32::try_from(count.max(1)).unwrap_or(u32::MAX));
    apart * index
}

impl Shared {
    /// Shows the last completed run's result, kept across restarts, until the next run: the
    /// next run of a 6-hourly probe may be hours away, and "no data" would look like "never ran".
    fn show_last_result(&self, target: &str, probe: &Spec) {
        let Some(last) = self.schedule.last_result(target, probe) else { return };
        let m = self.metrics.write();
        let labels = [target, probe.name.as_str(), probe.kind.label()];
        m.probe_success.with_label_values(&labels).set(i64::from(last.success));
        m.failures_in_a_row.with_label_values(&labels).set(f64::from(last.failures_in_a_row));
        m.probe_last_duration.with_label_values(&labels).set(last.duration.as_secs_f64());
        m.last_run.with_label_values(&labels).set(unix_seconds(last.finished_at));
        if let Some(at) = last.last_success {
            m.last_success.with_label_values(&labels).set(unix_seconds(at));
        }
    }

    fn note_next_run(&self, target: &str, probe: &Spec, at: SystemTime) {
        let labels = [target, probe.name.as_str(), probe.kind.label()];
        self.metrics.write().next_run.with_label_values(&labels).set(unix_seconds(at));
        self.history.set_next_run(target, &probe.name, at);
    }
}

/// One run. When EM answers 401 before the run changed anything on EM (EM restarted, or the
/// session expired between keep-alives), it starts over once, logged on again (or with the same
/// session, when EM says it still knows it): nothing is at stake yet, so that is no failure. A
/// 401 after a mount exists keeps the orphan handling.
pub(crate) async fn run_once(target: &TargetRuntime, probe: &Spec, shared: &Shared) -> RunReport {
    cleanup::pass(target).await;
    if target.config.api == Api::Vbr {
        return run_once_vbr(target, probe, shared).await;
    }
    let started = std::time::Instant::now();
    let mut retried = false;
    loop {
        let session = match target.session().await {
            Ok(session) => session,
            Err(e) => return logon_failed(started, e.reason(), &e),
        };
        let observer = observer_of(target, probe, shared);
        let polling = polling_of(target);
        let run = Run::new(
            &session,
            &target.config.name,
            probe,
            polling,
            &shared.ledger,
            target.in_flight(),
            &shared.shutdown,
            &observer,
        );
        let in_use = target.in_flight().use_session(session.id());
        let report = run.execute().await;
        drop(in_use);
        if !report.session_lost_before_changes || retried {
            return report;
        }
        if target.drop_if_lost(&session).await {
            tracing::info!(target_name = %target.config.name, probe = %probe.name, "EM no longer knows the logon session; logging on again before the run changes anything");
        }
        retried = true;
    }
}

/// One run against VBR. The session renews its token and logs on again by itself, so there is
/// no start-over here.
async fn run_once_vbr(target: &TargetRuntime, probe: &Spec, shared: &Shared) -> RunReport {
    let started = std::time::Instant::now();
    let session = match target.vbr_session().await {
        Ok(session) => session,
        Err(e) => return logon_failed(started, e.reason(), &e),
    };
    let observer = observer_of(target, probe, shared);
    let polling = polling_of(target);
    let minutes = u32::try_from(target.config.auto_unmount.as_secs() / 60).unwrap_or(u32::MAX);
    VbrRun::new(
        &session,
        &target.config.name,
        probe,
        polling,
        &shared.ledger,
        target.in_flight(),
        &shared.shutdown,
        &observer,
        minutes,
    )
    .execute()
    .await
}

/// What a run of `probe` reports to: the metrics, labelled with its target, name and kind.
fn observer_of(target: &TargetRuntime, probe: &Spec, shared: &Shared) -> ProbeObserver {
    ProbeObserver {
        metrics: shared.metrics.clone(),
        target: target.config.name.clone(),
        probe: probe.name.clone(),
        kind: probe.kind.label(),
    }
}

/// How the target's task polls back off.
fn polling_of(target: &TargetRuntime) -> Polling {
    Polling { initial: target.config.poll_initial, max: target.config.poll_max }
}

/// The report of a run that could not log on.
fn logon_failed(started: std::time::Instant, reason: &'static str, e: &dyn std::fmt::Display) -> RunReport {
    RunReport {
        finished_at: SystemTime::now(),
        duration: started.elapsed(),
        phases: Vec::new(),
        outcome: Err((reason, format!("logon: {e}"))),
        cleanup_error: None,
        session_lost_before_changes: false,
        manual: false,
    }
}

fn publish(shared: &Shared, target: &str, probe: &Spec, report: RunReport) {
    let m = shared.metrics.write();
    let labels = [target, probe.name.as_str(), probe.kind.label()];
    if report.cut_short_by_shutdown() {
        tracing::info!(target_name = target, probe = %probe.name, "probe run cut short by shutdown (its mount, if any, was deleted)");
        m.probe_runs.with_label_values(&[target, &probe.name, probe.kind.label(), RUN_CANCELLED]).inc();
        shared.history.record(target, &probe.name, report);
        return;
    }
    let result = if report.outcome.is_ok() { RUN_SUCCESS } else { RUN_FAILURE };
    m.probe_runs.with_label_values(&[target, &probe.name, probe.kind.label(), result]).inc();
    if let Some(last) = shared.schedule.last_result(target, probe) {
        m.failures_in_a_row.with_label_values(&labels).set(f64::from(last.failures_in_a_row));
    }
    m.probe_duration.with_label_values(&labels).observe(report.duration.as_secs_f64());
    m.probe_last_duration.with_label_values(&labels).set(report.duration.as_secs_f64());
    m.last_run.with_label_values(&labels).set(unix_seconds(report.finished_at));
    match &report.outcome {
        Ok(note) => {
            m.probe_success.with_label_values(&labels).set(1);
            m.last_success.with_label_values(&labels).set(unix_seconds(report.finished_at));
            match note {
                Some(note) => {
                    tracing::warn!(target_name = target, probe = %probe.name, duration_seconds = report.duration.as_secs_f64(), note = %note, "probe succeeded with a warning")
                }
                None => {
                    tracing::info!(target_name = target, probe = %probe.name, duration_seconds = report.duration.as_secs_f64(), "probe succeeded")
                }
            }
        }
        Err((reason, message)) => {
            m.probe_success.with_label_values(&labels).set(0);
            m.probe_failures.with_label_values(&[target, probe.name.as_str(), probe.kind.label(), reason]).inc();
            match &report.cleanup_error {
                Some(cleanup) => {
                    tracing::warn!(target_name = target, probe = %probe.name, reason, err = %message, cleanup_err = %cleanup, "probe failed")
                }
                None => {
                    tracing::warn!(target_name = target, probe = %probe.name, reason, err = %message, "probe failed")
                }
            }
        }
    }
    shared.history.record(target, &probe.name, report);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_runs_are_a_second_apart_or_spread_over_one_interval() {
        let hour = Duration::from_secs(3600);
        assert_eq!(stagger(3, 10, hour), Duration::from_secs(3));
        let quarter = Duration::from_secs(900);
        assert_eq!(stagger(999, 1000, quarter), Duration::from_millis(899_100));
        assert_eq!(stagger(1, 2, Duration::from_secs(1)), Duration::from_millis(500));
        assert_eq!(stagger(0, 0, hour), Duration::ZERO);
    }
}
