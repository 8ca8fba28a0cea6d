//! The exporter binary against the simulated EM: logon-session hygiene and orphan safety.
//! Mounts belong to the logon session that created them, so the rules under test are: retry an
//! unmount within the run, never log off a session that still owns a mount, log on again when
//! EM forgot the session before anything was at stake, and log off sessions a crash left open.

use std::time::Duration;

use veeam_restore_exporter::sim::Call;
use veeam_restore_exporter::sim::{Fault, FaultKind, SimServer};

use crate::support::exporter::{Exporter, Setup, value};
use crate::support::{eventually, start_sim};

const MOUNT_1H: &str = "      - { name: mount, kind: mount, vm: canary-win01, interval: 1h }\n";

fn server_error(endpoint: Call, times: Option<u32>) -> Fault {
    Fault { endpoint: Some(endpoint), kind: FaultKind::Status { status: 500, message: None }, times }
}

fn alive_sessions(sim: &SimServer) -> usize {
    sim.state().sessions.iter().filter(|s| s.alive).count()
}

/// Live sessions the exporter ever used. A SIGKILL while EM answers a logon leaves a session
/// whose token never arrived: no request ever carries it, nobody can log it off, it owns
/// nothing, and only EM's idle timeout ends it (see crash_points).
fn alive_used_sessions(sim: &SimServer) -> (usize, usize) {
    let used: std::collections::HashSet<String> = sim.requests().into_iter().filter_map(|r| r.session).collect();
    let alive: Vec<_> = sim.state().sessions.into_iter().filter(|s| s.alive).collect();
    let known = alive.iter().filter(|s| used.contains(&s.id)).count();
    (known, alive.len() - known)
}

fn requests_to(sim: &SimServer, endpoint: Call) -> usize {
    sim.requests().iter().filter(|r| r.endpoint == Some(endpoint)).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_server_errors_on_unmount_then_sigterm_leave_nothing_behind() {
    let sim = start_sim().await;
    sim.add_fault(server_error(Call::MountDelete, Some(2)));
    let setup = Setup::new(&sim.api_url, MOUNT_1H);
    let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 1.0).await;
    assert_eq!(requests_to(&sim, Call::MountDelete), 3, "two 500s, then the deleting attempt");
    let m = exporter.metrics().await;
    assert_eq!(
        value(&m, "veeam_restore_server_requests_total", &[("endpoint", "mount_delete"), ("code", "500")]),
        Some(2.0)
    );
    assert_eq!(value(&m, "veeam_restore_probe_failures_total", &[("reason", "unmount_failed")]), None);
    exporter.signal("TERM");
    assert!(exporter.wait_exit(Duration::from_secs(30)).await.success());
    assert!(sim.state().mounts.is_empty(), "{:?}", sim.state().mounts);
    assert_eq!(alive_sessions(&sim), 0, "the session owned nothing any more, so it was logged off");
    assert_eq!(setup.records(), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_that_still_owns_a_mount_is_not_logged_off_and_the_next_start_deletes_it() {
    let sim = start_sim().await;
    sim.add_fault(server_error(Call::MountDelete, None));
    let probe =
        "      - { name: mount, kind: mount, vm: canary-win01, interval: 1h, step_timeouts: { unmount: 1s } }\n";
    let setup = Setup::new(&sim.api_url, probe);
    let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "mount"), ("reason", "unmount_failed")], |v| {
            v == 1.0
        })
        .await;
    exporter.signal("TERM");
    assert!(exporter.wait_exit(Duration::from_secs(30)).await.success());
    let state = sim.state();
    assert_eq!(state.mounts.len(), 1);
    assert!(state.mounts[0].session_alive, "the owning session was kept, so the mount stays reachable");
    assert_eq!(requests_to(&sim, Call::Logoff), 0, "no log-off while a mount is owned");
    assert_eq!(setup.records(), 1, "the record (with its token) stays for the next start");
    assert!(exporter.logs().contains("not logging off"), "the operator is told why");

    sim.clear_faults();
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_orphaned_mounts_cleaned_total", &[("target", "sim")], |v| v >= 1.0).await;
    eventually(Duration::from_secs(20), "the old session to be logged off", || async {
        (sim.state().mounts.is_empty() && alive_sessions(&sim) == 1 && setup.records() == 0).then_some(())
    })
    .await;
    // The exposition is re-encoded at most every 200 ms: wait for the count rather than read it.
    exporter.wait_metric("veeam_restore_logoffs_total", &[("target", "sim")], |v| v >= 1.0).await;
    sim.shutdown().await;
}

/// Expires every session right after a run of `probe` ended (as if EM restarted between two
/// runs); the next runs must succeed without a failure. The 4 s interval leaves the test more
/// than 3 s to expire the sessions before the next run starts, even on a loaded machine.
async fn next_run_after_em_forgot_the_session(probe: &str, yaml: &str) {
    let sim = start_sim().await;
    // A keep-alive far away: only the run itself can notice the dead session.
    let setup = Setup::with(&sim.api_url, yaml, "canary", "10m");
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", probe)], |v| v == 1.0).await;
    let runs = value(&exporter.metrics().await, "veeam_restore_probe_runs_total", &[("probe", probe)]).unwrap();
    exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", probe)], |v| v >= runs + 1.0).await;
    assert!(sim.expire_sessions() >= 1, "as if EM restarted");
    exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", probe)], |v| v >= runs + 3.0).await;
    let m = exporter.metrics().await;
    let failures = value(&m, "veeam_restore_probe_runs_total", &[("probe", probe), ("result", "failure")]);
    let log = exporter.logs().lines().filter(|l| l.contains("probe failed")).collect::<Vec<_>>().join("\n");
    assert_eq!(failures, Some(0.0), "{log}");
    assert_eq!(value(&m, "veeam_restore_probe_success", &[("probe", probe)]), Some(1.0));
    assert!(value(&m, "veeam_restore_logons_total", &[("target", "sim")]).unwrap() >= 2.0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_em_forgets_every_session_the_next_mount_run_logs_on_again_and_succeeds() {
    let yaml = "      - { name: mount, kind: mount, vm: canary-win01, interval: 4s }\n";
    next_run_after_em_forgot_the_session("mount", yaml).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_em_forgets_every_session_the_next_catalog_run_logs_on_again_and_succeeds() {
    let yaml = "      - { name: catalog, kind: file_restore, mode: catalog, vm: canary-win01, path: C:/canary/canary.txt, interval: 4s }\n";
    next_run_after_em_forgot_the_session("catalog", yaml).await;
}

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// 100 SIGKILLs at seeded random moments while a mount probe and a download probe run every
/// second, each new process on the same state directory. Afterwards the last process cleans up
/// what the killed ones left: no mount, at most one live logon session, no unresolved orphan,
/// and the state directory holds nothing but its own files (no half-written record).
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_leaves_no_mount_and_at_most_one_session() {
    let _heavy = crate::support::one_heavy_test_at_a_time().await;
    let sim = start_sim().await;
    let probes = "      - { name: mount, kind: mount, vm: canary-win01, interval: 1s }\n      \
                  - { name: download, kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/canary.txt, interval: 1s }\n";
    let setup = Setup::new(&sim.api_url, probes);
    let mut random = Lcg(20261125);
    let (mut kills, mut with_mount, mut most_sessions) = (0, 0, 0);
    for _ in 0..100 {
        let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
        // The random moment itself: a kill lands somewhere in logon, cleanup or a run.
        tokio::time::sleep(Duration::from_millis(random.below(1500))).await;
        let state = sim.state();
        with_mount += usize::from(!state.mounts.is_empty());
        most_sessions = most_sessions.max(state.sessions.iter().filter(|s| s.alive).count());
        exporter.signal("KILL");
        exporter.wait_exit(Duration::from_secs(10)).await;
        kills += 1;
    }
    let mounts_created = requests_to(&sim, Call::MountCreate);
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    for probe in ["mount", "download"] {
        let runs =
            value(&exporter.metrics().await, "veeam_restore_probe_runs_total", &[("probe", probe)]).unwrap_or(0.0);
        exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", probe)], |v| v >= runs + 2.0).await;
        exporter.wait_metric("veeam_restore_probe_success", &[("probe", probe)], |v| v == 1.0).await;
    }
    // Within 60 s (a loaded machine): no unreachable mount, at most the two probes' own mounts of
    // the moment, at most the current session.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = sim.state();
        let orphans = state.mounts.iter().filter(|m| !m.session_alive).count();
        let (used, lost) = alive_used_sessions(&sim);
        if orphans == 0 && state.mounts.len() <= 2 && used <= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leftovers of the killed processes not cleaned in 60 s: {orphans} unreachable mounts, {} mounts, \
             {used} live sessions in use, {lost} never used\n{}",
            state.mounts.len(),
            exporter.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exporter.wait_metric("veeam_restore_orphaned_mounts", &[("state", "unresolved")], |v| v == 0.0).await;
    // Crashed sessions were logged off (waited for: the exposition lags up to 200 ms).
    let logoffs = exporter.wait_metric("veeam_restore_logoffs_total", &[("target", "sim")], |v| v >= 1.0).await;
    let mut exporter = exporter;
    exporter.signal("TERM");
    assert!(exporter.wait_exit(Duration::from_secs(30)).await.success());
    assert!(sim.state().mounts.is_empty(), "{:?}", sim.state().mounts);
    let (used, lost_logons) = alive_used_sessions(&sim);
    assert_eq!(used, 0, "every session the exporter knew of is logged off");
    assert_eq!(setup.records(), 0);
    let storage = setup.storage();
    let mut files: Vec<String> = ["", "mounts", "sessions"]
        .iter()
        .flat_map(|d| std::fs::read_dir(storage.join(d)).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "mounts" && n != "sessions")
        .collect();
    files.sort();
    assert_eq!(files, ["lock", "schedule.json"], "the state directory holds only its own files");
    eprintln!(
        "crash loop: {kills} SIGKILLs ({with_mount} with a mount on EM, at most {most_sessions} live sessions at a kill); \
         {mounts_created} mounts created in all; after one clean start and SIGTERM: 0 mounts, 0 live sessions \
         the exporter knew of ({lost_logons} whose logon answer a kill cut off: EM's idle timeout ends them), \
         0 records, {logoffs} sessions of killed processes logged off by the last one"
    );
    sim.shutdown().await;
}

/// Storage that cannot be written (here: the mount-record directory replaced by a file) makes
/// the probe refuse to mount: a mount that could not be recorded could not be cleaned up after
/// a crash. Once the storage is back, the next run mounts again.
#[tokio::test(flavor = "multi_thread")]
async fn unwritable_storage_refuses_the_mount_instead_of_mounting_unrecorded() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, "      - { name: mount, kind: mount, vm: canary-win01, interval: 1h }\n");
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 1.0).await;
    let mounts_before = requests_to(&sim, Call::MountCreate);

    // Nothing runs now (the next run is an hour away): break the record directory.
    let records = setup.storage().join("mounts");
    std::fs::remove_dir_all(&records).unwrap();
    std::fs::write(&records, "not a directory").unwrap();
    let run_now = || reqwest::Client::new().post(exporter.url("/-/probe?target=sim&probe=mount")).send();
    assert_eq!(run_now().await.unwrap().status(), 202);
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "mount"), ("reason", "state_error")], |v| {
            v == 1.0
        })
        .await;
    assert_eq!(requests_to(&sim, Call::MountCreate), mounts_before, "no mount without a record");
    assert!(sim.state().mounts.is_empty());

    // Storage back: the next run mounts, records, unmounts.
    std::fs::remove_file(&records).unwrap();
    std::fs::create_dir(&records).unwrap();
    std::fs::set_permissions(&records, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    assert_eq!(run_now().await.unwrap().status(), 202);
    exporter
        .wait_metric("veeam_restore_probe_runs_total", &[("probe", "mount"), ("result", "success")], |v| v == 2.0)
        .await;
    assert_eq!(requests_to(&sim, Call::MountCreate), mounts_before + 1);
    assert!(sim.state().mounts.is_empty());
    assert_eq!(setup.records(), 0);
    sim.shutdown().await;
}

/// A 401 for a session EM still knows (a proxy, a glitch) must not open a second live session:
/// the exporter asks EM once more, keeps the session, and the probe keeps running on it.
#[tokio::test(flavor = "multi_thread")]
async fn a_spurious_401_on_keep_alive_keeps_the_session_and_opens_no_second_one() {
    let sim = start_sim().await;
    let setup = Setup::with(
        &sim.api_url,
        "      - { name: mount, kind: mount, vm: canary-win01, interval: 1s }\n",
        "canary",
        "1s",
    );
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 1.0).await;
    let logons = requests_to(&sim, Call::Logon);
    sim.add_fault(Fault {
        endpoint: Some(Call::LogonSession),
        kind: FaultKind::Status { status: 401, message: None },
        times: Some(1),
    });
    eventually(Duration::from_secs(30), "the keep-alive to meet the 401", || async {
        exporter.logs().contains("still knows the logon session").then_some(())
    })
    .await;
    let runs = value(&exporter.metrics().await, "veeam_restore_probe_runs_total", &[("probe", "mount")]).unwrap();
    exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", "mount")], |v| v >= runs + 2.0).await;
    assert_eq!(requests_to(&sim, Call::Logon), logons, "no second logon");
    assert_eq!(alive_sessions(&sim), 1);
    assert_eq!(value(&exporter.metrics().await, "veeam_restore_server_up", &[("target", "sim")]), Some(1.0));
    sim.shutdown().await;
}
