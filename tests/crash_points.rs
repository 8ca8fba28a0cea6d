//! Crash points: the exporter is stopped at every EM request of one run of every probe kind.
//!
//! For each kind, one calibration run counts the EM requests a run makes from the process' start
//! (logon included). Then, for each request N, a fresh simulator holds the N-th request *after*
//! acting on it (so its effect is on EM and the answer is lost) and the exporter is stopped there:
//! - **SIGKILL**, then a restart on the same `--storage.path` with a one-hour interval and EM's
//!   idle timeout at 20 s. Within 60 s: no live mount, no unreachable mount, at most one live
//!   logon session, and no mount record left; a SIGTERM after that leaves no mount and no live
//!   session (but the one of a logon whose answer was lost: its token never arrived, so it owns
//!   nothing and only EM's idle timeout ends it).
//! - **SIGTERM** inside the grace period: once the process has exited, no mount and no live
//!   logon session.
//!
//! `cargo test crash_points -- --nocapture` prints the matrix (kind × request × signal).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use veeam_restore_exporter::sim::{self, HoldPoint, HoldSpec, SimConfig, SimServer, Timings};

use crate::support::eventually;
use crate::support::exporter::{Exporter, value};

/// Tasks that take a while, so a crash lands while they are `Running` or `OperationFinished`,
/// and the 20 s idle timeout of the issue that found the hole.
fn timings() -> Timings {
    Timings {
        session_idle_timeout: Duration::from_secs(20),
        task_running: Duration::from_millis(1500),
        task_collect_lag: Duration::from_millis(700),
        restore_duration: Duration::from_millis(1200),
    }
}

const KINDS: &[(&str, &str)] = &[
    ("mount", "kind: mount, vm: canary-win01"),
    ("download", "kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/canary.txt"),
    ("catalog", "kind: file_restore, mode: catalog, vm: canary-win01, path: C:/canary/canary.txt"),
];

/// At most this many cells run at once (each has its own simulator and exporter process).
const PARALLEL: usize = 4;

struct Cell {
    dir: tempfile::TempDir,
    sim: SimServer,
}

impl Cell {
    async fn new(probe_yaml: &str) -> Cell {
        Cell::with_timings(probe_yaml, timings()).await
    }

    async fn with_timings(probe_yaml: &str, timings: Timings) -> Cell {
        let sim = sim::start(SimConfig { timings, ..SimConfig::default() }).await.expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password"), "canary\n").unwrap();
        let config = format!(
            "targets:\n  - name: sim\n    url: {}\n    username: svc-canary\n    password_file: password\n    \
             keepalive_interval: 5m\n    poll_initial: 250ms\n    poll_max: 500ms\n    request_timeout: 10s\n    \
             probes:\n      - {{ name: p, {probe_yaml}, interval: 1h, timeout: 2m }}\n",
            sim.api_url
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        Cell { dir, sim }
    }

    async fn exporter(&self) -> Exporter {
        Exporter::start(&self.dir.path().join("config.yml"), &self.dir.path().join("state")).await
    }

    fn live_mounts(&self) -> usize {
        self.sim.state().mounts.iter().filter(|m| m.session_alive).count()
    }

    fn unreachable_mounts(&self) -> usize {
        self.sim.state().mounts.iter().filter(|m| !m.session_alive).count()
    }

    fn live_sessions(&self) -> usize {
        self.sim.state().sessions.iter().filter(|s| s.alive).count()
    }

    /// Mount records left in the state directory.
    fn records(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("state/mounts")).map(|d| d.count()).unwrap_or(0)
    }

    fn clean(&self) -> bool {
        self.live_mounts() == 0 && self.unreachable_mounts() == 0 && self.live_sessions() <= 1 && self.records() == 0
    }
}

/// The number of EM requests of one clean run, from the process' start to the run's end.
async fn calibrate(probe_yaml: &str) -> usize {
    let cell = Cell::new(probe_yaml).await;
    let exporter = cell.exporter().await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "p")], |v| v == 1.0).await;
    let n = cell.sim.requests().len();
    drop(exporter);
    cell.sim.shutdown().await;
    n
}

/// One cell: hold request `n`, stop the exporter there with `signal`, check what is left.
/// Returns the matrix entry: the held call and the outcome, or `Err` with what went wrong.
async fn cell(probe_yaml: &str, n: usize, signal: &'static str) -> Result<(String, String), String> {
    let cell = Cell::new(probe_yaml).await;
    cell.sim.hold(HoldSpec { request: n as u64, when: HoldPoint::After });
    let mut exporter = cell.exporter().await;
    // The number of task polls varies with timing: a run may end before it makes request n.
    let held = eventually(Duration::from_secs(60), "the request to be held, or the run to end", || async {
        if let Some(h) = cell.sim.hold_view().held {
            return Some(Some(h.endpoint.map(|e| format!("{e:?}")).unwrap_or(h.path)));
        }
        let runs = value(&exporter.metrics().await, "veeam_restore_probe_runs_total", &[("probe", "p")]);
        runs.is_some_and(|n| n >= 1.0).then_some(None)
    })
    .await;
    let Some(held) = held else {
        cell.sim.release_hold();
        exporter.signal("TERM");
        exporter.wait_exit(Duration::from_secs(60)).await;
        cell.sim.shutdown().await;
        return Ok(("(not reached)".into(), format!("this run made fewer than {n} requests")));
    };
    exporter.signal(signal);
    if signal == "KILL" {
        exporter.wait_exit(Duration::from_secs(10)).await;
    }
    cell.sim.release_hold();
    let started = Instant::now();
    if signal == "TERM" {
        exporter.wait_exit(Duration::from_secs(60)).await;
        let (mounts, sessions) = (cell.sim.state().mounts.len(), cell.live_sessions());
        if mounts + sessions > 0 {
            return Err(format!("{held}: after SIGTERM {mounts} mounts, {sessions} live sessions"));
        }
        return Ok((held, "clean".into()));
    }
    let mut restarted = cell.exporter().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cell.clean() {
        if Instant::now() > deadline {
            let state = format!(
                "{} live mounts, {} unreachable, {} live sessions, {} records",
                cell.live_mounts(),
                cell.unreachable_mounts(),
                cell.live_sessions(),
                cell.records()
            );
            return Err(format!("{held}: 60 s after the restart: {state}\n{}", restarted.logs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let cleaned = deleted(&restarted).await;
    restarted.signal("TERM");
    restarted.wait_exit(Duration::from_secs(60)).await;
    if !cell.sim.state().mounts.is_empty() {
        return Err(format!("{held}: mounts after the restart's SIGTERM\n{}", restarted.logs()));
    }
    let mut what = format!("clean in {:.0}s", took.as_secs_f64());
    if cleaned > 0.0 {
        what += &format!(", {cleaned} deleted");
    }
    if cell.live_sessions() > 0 {
        // Only a logon whose answer was lost: EM made a session whose token never arrived, so
        // nobody can log it off. It owns nothing, and EM expires it after its idle timeout.
        if held != "Logon" {
            return Err(format!("{held}: live sessions after the restart's SIGTERM\n{}", restarted.logs()));
        }
        eventually(Duration::from_secs(40), "EM to expire the session of the lost logon", || async {
            (cell.live_sessions() == 0).then_some(())
        })
        .await;
        what += ", lost logon expired by EM";
    }
    cell.sim.shutdown().await;
    Ok((held, what))
}

/// `veeam_restore_orphaned_mounts_cleaned_total` once the exposition caught up (it lags up to
/// 200 ms): polled briefly, 0 when nothing shows.
async fn deleted(exporter: &Exporter) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let n = value(&exporter.metrics().await, "veeam_restore_orphaned_mounts_cleaned_total", &[]).unwrap_or(0.0);
        if n > 0.0 || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the exporter at the `poll`-th poll of its first run's mount task, restarts it, and
/// returns the cell and the new process.
async fn kill_during_mount_task(timings: Timings, poll: usize) -> (Cell, Exporter) {
    let cell = Cell::with_timings("kind: mount, vm: canary-win01", timings).await;
    // Request 1 logs on, 2 looks the point up, 3 asks for the mount; 3 + poll is a task poll.
    cell.sim.hold(HoldSpec { request: 3 + poll as u64, when: HoldPoint::After });
    let mut exporter = cell.exporter().await;
    let held =
        eventually(Duration::from_secs(60), "the task poll to be held", || async { cell.sim.hold_view().held }).await;
    assert_eq!(held.endpoint.map(|e| format!("{e:?}")).as_deref(), Some("Task"), "{held:?}");
    exporter.signal("KILL");
    exporter.wait_exit(Duration::from_secs(10)).await;
    cell.sim.release_hold();
    let restarted = cell.exporter().await;
    (cell, restarted)
}

/// Issue 20, point 1: a SIGKILL while the mount task is `Running` (8 s here, EM's idle timeout
/// 20 s, the probe hourly). The restarted process follows the record up on its own timer, keeps
/// the recorded session alive, deletes the mount when the task ends, counts and logs it, and
/// logs the old session off: all within a minute, with no run.
#[tokio::test(flavor = "multi_thread")]
async fn a_mount_task_running_at_a_crash_is_followed_up_at_once() {
    let timings =
        Timings { task_running: Duration::from_secs(8), task_collect_lag: Duration::from_secs(1), ..timings() };
    let (cell, exporter) = kill_during_mount_task(timings, 1).await;
    let started = Instant::now();
    eventually(Duration::from_secs(60), "the orphan to be deleted and its session logged off", || async {
        (cell.sim.state().mounts.is_empty() && cell.records() == 0 && cell.live_sessions() == 1).then_some(())
    })
    .await;
    assert!(
        cell.sim.requests().iter().any(|r| r.endpoint == Some(sim::Call::MountDelete)),
        "the mount was made, then deleted"
    );
    exporter.wait_metric("veeam_restore_orphaned_mounts_cleaned_total", &[], |v| v == 1.0).await;
    exporter.wait_metric("veeam_restore_orphaned_mounts", &[], |v| v == 0.0).await;
    let logs = exporter.logs();
    assert!(logs.contains("deleted a mount left behind by an earlier run"), "{logs}");
    assert!(!logs.contains("will retry"), "nothing failed, so nothing is retried: {logs}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let runs = value(&exporter.metrics().await, "veeam_restore_probe_runs_total", &[]).unwrap_or(0.0);
    assert_eq!(runs, 0.0, "no scheduled run was needed");
    cell.sim.shutdown().await;
}

/// Issue 20, point 2: a SIGKILL while the mount task is `OperationFinished` (the mount exists;
/// EM has not collected the task), then SIGTERM right after the restart: shutdown waits for
/// the task, deletes and counts the mount, and logs off both sessions.
#[tokio::test(flavor = "multi_thread")]
async fn a_mount_task_operation_finished_at_a_crash_is_deleted_even_by_a_quick_shutdown() {
    let timings =
        Timings { task_running: Duration::from_millis(300), task_collect_lag: Duration::from_secs(6), ..timings() };
    let cell = Cell::with_timings("kind: mount, vm: canary-win01", timings).await;
    let mut exporter = cell.exporter().await;
    // Kill once the task is OperationFinished: the mount exists and EM lists no Related link yet.
    eventually(Duration::from_secs(30), "the mount to exist", || async {
        (!cell.sim.state().mounts.is_empty()).then_some(())
    })
    .await;
    exporter.signal("KILL");
    exporter.wait_exit(Duration::from_secs(10)).await;
    let mut restarted = cell.exporter().await;
    restarted.signal("TERM");
    restarted.wait_exit(Duration::from_secs(30)).await;
    assert!(cell.sim.state().mounts.is_empty(), "{}", restarted.logs());
    assert_eq!(cell.live_sessions(), 0, "both sessions logged off: {}", restarted.logs());
    assert_eq!(cell.records(), 0);
    let logs = restarted.logs();
    assert!(logs.contains("deleted a mount left behind by an earlier run"), "{logs}");
    assert!(!logs.contains("will retry"), "{logs}");
    cell.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_at_any_em_request_leaves_nothing_behind() {
    let _heavy = crate::support::one_heavy_test_at_a_time().await;
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut cells = tokio::task::JoinSet::new();
    for (kind, yaml) in KINDS {
        let requests = calibrate(yaml).await;
        for n in 1..=requests {
            for signal in ["KILL", "TERM"] {
                let limit = limit.clone();
                cells.spawn(async move {
                    let _permit = limit.acquire_owned().await.unwrap();
                    ((*kind, n, signal), cell(yaml, n, signal).await)
                });
            }
        }
    }
    let mut matrix = BTreeMap::new();
    let mut failures = Vec::new();
    while let Some(done) = cells.join_next().await {
        let ((kind, n, signal), outcome) = done.expect("cell task");
        match outcome {
            Ok(entry) => {
                matrix.insert((kind, n, signal), entry);
            }
            Err(e) => failures.push(format!("{kind} #{n} SIG{signal}: {e}")),
        }
    }
    eprintln!("{:<9} {:>3}  {:<16} {:<34} SIGTERM", "kind", "req", "held call", "SIGKILL + restart");
    for (kind, _) in KINDS {
        for n in 1.. {
            let (kill, term) = (matrix.get(&(*kind, n, "KILL")), matrix.get(&(*kind, n, "TERM")));
            if kill.is_none() && term.is_none() && !failures.iter().any(|f| f.starts_with(&format!("{kind} #{n} "))) {
                break;
            }
            let call = kill.or(term).map(|(c, _)| c.as_str()).unwrap_or("?");
            let show = |e: Option<&(String, String)>| e.map(|(_, o)| o.clone()).unwrap_or_else(|| "FAILED".into());
            eprintln!("{kind:<9} {n:>3}  {call:<16} {:<34} {}", show(kill), show(term));
        }
    }
    assert!(failures.is_empty(), "{} cells failed:\n{}", failures.len(), failures.join("\n\n"));
}
