//! The exporter binary against the simulated EM: every probe kind, the failure scenarios of
//! the exporter issue, crash recovery, shutdown, reload and bad configuration.

use std::process::Command;
use std::time::Duration;

use sha2::Digest;
use veeam_restore_exporter::sim::Call;
use veeam_restore_exporter::sim::{Fault, FaultKind};

use crate::support::exporter::{BIN, Exporter, Setup, value};
use crate::support::{eventually, start_sim};

const CONTENT: &[u8] = b"veeam-restore-exporter canary file\n";

fn mount(interval: &str) -> String {
    format!("      - {{ name: mount, kind: mount, vm: canary-win01, interval: {interval} }}\n")
}

fn download(interval: &str, sha: &str, extra: &str) -> String {
    format!(
        "      - {{ name: file, kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/canary.txt, \
         expected_sha256: {sha}, interval: {interval}{extra} }}\n"
    )
}

fn catalog(interval: &str) -> String {
    format!(
        "      - {{ name: catalog, kind: file_restore, mode: catalog, vm: canary-win01, path: C:/canary/canary.txt, interval: {interval} }}\n"
    )
}

fn good_sha() -> String {
    hex::encode(sha2::Sha256::digest(CONTENT))
}

fn fault(endpoint: Call, kind: FaultKind, times: Option<u32>) -> Fault {
    Fault { endpoint: Some(endpoint), kind, times }
}

/// Only the `# HELP` and `# TYPE` lines: what a golden file can pin across runs.
fn metadata(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("# HELP") || l.starts_with("# TYPE")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_runs_of_every_probe_kind_then_clean_shutdown() {
    let sim = start_sim().await;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    assert!(sim.set_guest_file("canary-win01", "C:/canary/stamp.txt", &now));
    let fresh = "      - { name: fresh, kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/stamp.txt, \
                 interval: 1s, content_timestamp: { format: rfc3339, max_age: 26h } }\n";
    // One probe that fails, so that the golden scrape also holds the series a failure creates.
    let missing = "      - { name: missing, kind: mount, vm: no-such-vm, interval: 1s }\n";
    let probes = format!("{}{}{}{fresh}{missing}", mount("1s"), download("1s", &good_sha(), ""), catalog("1s"));
    let setup = Setup::new(&sim.api_url, &probes);
    // The golden scrape shows a realistic site: a restore watch, and a second target whose
    // password EM refuses (so the series a logon failure creates are in it too).
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    let dir = setup.config_path().parent().unwrap().to_owned();
    std::fs::write(dir.join("wrong-password"), "not-the-password").unwrap();
    // And a VBR server, so the VBR-only series (the malware status) are in it.
    let vbr = veeam_vbr_sim::start(veeam_vbr_sim::SimConfig::default()).await.unwrap();
    std::fs::write(dir.join("password"), "canary\n").unwrap();
    let locked = format!(
        "    restore_watch: {{ interval: 1s }}\n  - name: locked\n    url: {}\n    username: svc-canary\n    \
         password_file: wrong-password\n    probes:\n      - {{ name: locked-mount, kind: mount, vm: canary-win01, interval: 1h }}\n  \
         - name: vbr\n    api: vbr\n    url: {}\n    username: svc-canary\n    password_file: password\n    probes:\n      \
         - {{ name: vbr-mount, kind: mount, vm: canary-infected01, interval: 1h }}\n",
        sim.api_url, vbr.url
    );
    std::fs::write(setup.config_path(), format!("{config}{locked}")).unwrap();
    let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;

    // Known series exist at zero before anything has failed.
    let first = exporter.metrics().await;
    for probe in ["mount", "file", "catalog"] {
        for result in ["success", "failure"] {
            assert_eq!(
                value(&first, "veeam_restore_probe_runs_total", &[("probe", probe), ("result", result)]),
                Some(0.0)
            );
        }
        // A failure reason appears with its first failure: 20 reasons per probe would be series
        // nobody reads.
        assert_eq!(value(&first, "veeam_restore_probe_failures_total", &[("probe", probe)]), None);
    }
    assert_eq!(value(&first, "veeam_restore_orphaned_mounts", &[("state", "unresolved")]), Some(0.0));

    for (probe, kind) in [
        ("mount", "mount"),
        ("file", "file_restore"),
        ("catalog", "file_restore"),
        ("fresh", "file_restore"),
        ("vbr-mount", "mount"),
    ] {
        exporter.wait_metric("veeam_restore_probe_success", &[("probe", probe), ("kind", kind)], |v| v == 1.0).await;
    }
    exporter
        .wait_metric("veeam_restore_probe_runs_total", &[("probe", "mount"), ("result", "success")], |v| v >= 2.0)
        .await;
    exporter.wait_metric("veeam_restore_probe_duration_seconds_count", &[("probe", "mount")], |v| v >= 2.0).await;
    exporter
        .wait_metric(
            "veeam_restore_probe_failures_total",
            &[("probe", "missing"), ("reason", "no_restore_point")],
            |v| v >= 1.0,
        )
        .await;
    let m = exporter.metrics().await;
    assert_eq!(value(&m, "veeam_restore_server_up", &[("target", "sim")]), Some(1.0));
    assert!(
        value(&m, "veeam_restore_probe_restore_sessions_total", &[("probe", "catalog"), ("result", "success")])
            .unwrap()
            >= 1.0
    );
    let progress = value(&m, "veeam_restore_probe_restore_session_progress_ratio", &[("probe", "catalog")]).unwrap();
    assert!((0.0..=1.0).contains(&progress), "{progress}");
    // Live: a later run may be following its session right now; each run ends at 1.
    exporter
        .wait_metric("veeam_restore_probe_restore_session_progress_ratio", &[("probe", "catalog")], |v| v == 1.0)
        .await;
    assert!(value(&m, "veeam_restore_point_creation_timestamp_seconds", &[("probe", "mount")]).unwrap() > 1.7e9);
    assert!(
        value(&m, "veeam_restore_probe_phase_last_duration_seconds", &[("probe", "mount"), ("phase", "unmount")])
            .unwrap()
            > 0.0
    );
    assert!(
        value(&m, "veeam_restore_server_tasks_total", &[("operation", "MountRestorePoint"), ("result", "success")])
            .unwrap()
            >= 2.0
    );
    assert!(value(&m, "veeam_restore_server_requests_total", &[("endpoint", "task"), ("code", "200")]).unwrap() >= 1.0);
    assert!(
        value(&m, "veeam_restore_server_requests_total", &[("endpoint", "mount_delete"), ("code", "204")]).unwrap()
            >= 2.0
    );
    assert!(value(&m, "veeam_restore_exporter_build_info", &[("version", env!("CARGO_PKG_VERSION"))]) == Some(1.0));
    assert!(m.contains("process_resident_memory_bytes"));

    // The golden file pins names, help and types; `promtool check metrics` lints it in CI.
    let golden_path = format!("{}/tests/golden/metrics.txt", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &m).unwrap();
    }
    let golden = std::fs::read_to_string(&golden_path).expect("golden file exists (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        metadata(&m),
        metadata(&golden),
        "metric metadata changed: update tests/golden/metrics.txt with UPDATE_GOLDEN=1"
    );

    // Compressed when asked, as Prometheus asks: the same exposition (process metrics apart).
    let zipped =
        reqwest::Client::new().get(exporter.url("/metrics")).header("Accept-Encoding", "gzip").send().await.unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let mut unzipped = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::MultiGzDecoder::new(&zipped.bytes().await.unwrap()[..]),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(metadata(&unzipped), metadata(&exporter.metrics().await));
    assert!(unzipped.contains("\nprocess_cpu_seconds_total "), "process metrics follow as a second gzip member");

    let page = reqwest::get(exporter.url("/")).await.unwrap().text().await.unwrap();
    for needle in [
        "Target sim",
        "Probe mount",
        "Probe catalog",
        "success",
        "unmount",
        "restore_session",
        "/metrics",
        "<h2>Overview</h2>",
        "class=\"state up\">UP<",
        "class=\"state down\">FAILING (",
        "no_restore_point (",
        "point infected",
    ] {
        assert!(page.contains(needle), "landing page lacks {needle:?}");
    }
    for path in ["/-/healthy", "/-/ready"] {
        assert_eq!(reqwest::get(exporter.url(path)).await.unwrap().status(), 200);
    }

    exporter.signal("TERM");
    assert!(exporter.wait_exit(Duration::from_secs(30)).await.success());
    assert!(sim.state().mounts.is_empty(), "no mount left behind: {:?}", sim.state().mounts);
    assert_eq!(setup.records(), 0);
    assert!(sim.requests().iter().any(|r| r.endpoint == Some(Call::Logoff) && r.status == 204), "logged off");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_task_failure_is_reported_with_ems_message() {
    let sim = start_sim().await;
    sim.add_fault(fault(
        Call::MountCreate,
        FaultKind::TaskFail { message: Some("Repository is offline".into()) },
        None,
    ));
    let setup = Setup::new(&sim.api_url, &mount("1h"));
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "mount"), ("reason", "task_failed")], |v| {
            v == 1.0
        })
        .await;
    let m = exporter.metrics().await;
    assert_eq!(value(&m, "veeam_restore_probe_success", &[("probe", "mount")]), Some(0.0));
    assert_eq!(
        value(&m, "veeam_restore_server_tasks_total", &[("operation", "MountRestorePoint"), ("result", "failed")]),
        Some(1.0)
    );
    assert!(
        value(&m, "veeam_restore_probe_last_success_timestamp_seconds", &[("probe", "mount")]).is_none(),
        "never succeeded: no timestamp"
    );
    let page = reqwest::get(exporter.url("/")).await.unwrap().text().await.unwrap();
    assert!(page.contains("Repository is offline"), "the landing page shows EM's message");
    assert!(sim.state().mounts.is_empty());
    assert_eq!(setup.records(), 0, "a failed mount task leaves no record");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stuck_restore_task_times_out_and_the_mount_is_still_deleted() {
    let sim = start_sim().await;
    sim.add_fault(fault(Call::FileRestore, FaultKind::TaskStuck {}, None));
    let probes = download("1h", &good_sha(), ", step_timeouts: { restore: 1s }");
    let setup = Setup::new(&sim.api_url, &probes);
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "file"), ("reason", "step_timeout")], |v| {
            v == 1.0
        })
        .await;
    let m = exporter.metrics().await;
    assert_eq!(
        value(
            &m,
            "veeam_restore_server_tasks_total",
            &[("operation", "FileRestoreFromMountPoint"), ("result", "timeout")]
        ),
        Some(1.0)
    );
    assert!(
        value(&m, "veeam_restore_probe_phase_last_duration_seconds", &[("probe", "file"), ("phase", "unmount")])
            .is_some()
    );
    assert!(sim.state().mounts.is_empty(), "unmounted after the step timeout");
    assert_eq!(setup.records(), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stuck_mount_task_times_out_and_the_task_is_stopped() {
    let sim = start_sim().await;
    sim.add_fault(fault(Call::MountCreate, FaultKind::TaskStuck {}, Some(1)));
    let probes = "      - { name: mount, kind: mount, vm: canary-win01, interval: 2s, step_timeouts: { mount: 1s } }\n";
    let setup = Setup::new(&sim.api_url, probes);
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "mount"), ("reason", "step_timeout")], |v| {
            v == 1.0
        })
        .await;
    assert!(sim.requests().iter().any(|r| r.endpoint == Some(Call::TaskDelete)), "the stuck task was stopped");
    // The next run cleans up the record of the stopped task and succeeds.
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 1.0).await;
    eventually(Duration::from_secs(10), "records to clear", || async { (setup.records() == 0).then_some(()) }).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_unmount_keeps_the_record_and_a_later_run_deletes_the_mount() {
    let sim = start_sim().await;
    sim.add_fault(fault(Call::MountDelete, FaultKind::Status { status: 503, message: None }, None));
    let probe =
        "      - { name: mount, kind: mount, vm: canary-win01, interval: 2s, step_timeouts: { unmount: 1s } }\n";
    let setup = Setup::new(&sim.api_url, probe);
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "mount"), ("reason", "unmount_failed")], |v| {
            v >= 1.0
        })
        .await;
    let attempts = sim.requests().iter().filter(|r| r.endpoint == Some(Call::MountDelete)).count();
    assert!(attempts >= 2, "the unmount is retried within the run ({attempts} attempts)");
    sim.clear_faults();
    exporter.wait_metric("veeam_restore_orphaned_mounts_cleaned_total", &[("target", "sim")], |v| v >= 1.0).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 1.0).await;
    // Mount 1 was the one whose unmount failed.
    assert!(sim.state().mounts.iter().all(|m| m.mount_id != 1), "{:?}", sim.state().mounts);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_session_is_replaced_between_runs() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, &mount("2s"));
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 1.0).await;
    assert_eq!(value(&exporter.metrics().await, "veeam_restore_logons_total", &[("target", "sim")]), Some(1.0));
    assert!(sim.expire_sessions() >= 1);
    exporter.wait_metric("veeam_restore_logons_total", &[("target", "sim")], |v| v >= 2.0).await;
    let runs = value(&exporter.metrics().await, "veeam_restore_probe_runs_total", &[("probe", "mount")]).unwrap();
    exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", "mount")], |v| v >= runs + 1.0).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 1.0).await;
    assert_eq!(value(&exporter.metrics().await, "veeam_restore_server_up", &[("target", "sim")]), Some(1.0));
    sim.shutdown().await;
}

/// Starts an exporter whose first browse hangs, waits until its mount exists, and kills it.
/// Returns the logon session that owned the mount.
async fn crash_with_a_mount(setup: &Setup, sim: &veeam_restore_exporter::sim::SimServer) -> String {
    sim.add_fault(fault(Call::MountBrowse, FaultKind::Latency { ms: 4_000 }, Some(1)));
    let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    let owner = eventually(Duration::from_secs(20), "a mount and its complete record", || async {
        let mounts = sim.state().mounts;
        let recorded = std::fs::read_dir(setup.storage().join("mounts"))
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .any(|text| text.contains("\"mount_href\": \"http"));
        (mounts.len() == 1 && recorded).then(|| mounts[0].session.clone())
    })
    .await;
    exporter.signal("KILL");
    exporter.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(sim.state().mounts.len(), 1, "the killed exporter left its mount behind");
    assert_eq!(setup.records(), 1);
    owner
}

#[tokio::test(flavor = "multi_thread")]
async fn after_sigkill_the_orphan_is_deleted_with_the_recorded_token() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, &mount("1h"));
    let owner = crash_with_a_mount(&setup, &sim).await;

    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_orphaned_mounts_cleaned_total", &[("target", "sim")], |v| v == 1.0).await;
    let deleted_by_owner = sim.requests().iter().any(|r| {
        r.endpoint == Some(Call::MountDelete) && r.status == 204 && r.session.as_deref() == Some(owner.as_str())
    });
    assert!(deleted_by_owner, "the orphan was deleted through its own (recorded) session");
    assert!(sim.state().mounts.is_empty());
    assert_eq!(setup.records(), 0);
    // The interrupted run counts as a run: the hourly probe is not run again after the crash.
    let hour_away = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() + 3000.0;
    exporter
        .wait_metric("veeam_restore_probe_next_run_timestamp_seconds", &[("probe", "mount")], |v| v > hour_away)
        .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn orphan_of_an_expired_session_is_reported_unresolved_until_an_operator_removes_it() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, &mount("2s"));
    crash_with_a_mount(&setup, &sim).await;
    sim.expire_sessions();

    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter
        .wait_metric("veeam_restore_orphaned_mounts", &[("target", "sim"), ("state", "unresolved")], |v| v == 1.0)
        .await;
    assert!(exporter.logs().contains("UNRESOLVED orphaned mount"), "operators are told what to do");
    assert_eq!(
        value(&exporter.metrics().await, "veeam_restore_orphaned_mounts_cleaned_total", &[("target", "sim")]),
        Some(0.0)
    );

    assert_eq!(sim.release_orphans(), 1);
    exporter
        .wait_metric("veeam_restore_orphaned_mounts", &[("target", "sim"), ("state", "unresolved")], |v| v == 0.0)
        .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_restore_results() {
    let sim = start_sim().await;
    sim.add_fault(fault(Call::CatalogRestore, FaultKind::RestoreResult { result: "Failed".into() }, Some(1)));
    let setup = Setup::new(&sim.api_url, &catalog("1s"));
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "catalog"), ("reason", "restore_failed")], |v| {
            v == 1.0
        })
        .await;
    assert_eq!(
        value(
            &exporter.metrics().await,
            "veeam_restore_probe_restore_sessions_total",
            &[("probe", "catalog"), ("result", "failed")]
        ),
        Some(1.0)
    );
    sim.add_fault(fault(Call::CatalogRestore, FaultKind::RestoreResult { result: "Warning".into() }, Some(1)));
    exporter
        .wait_metric(
            "veeam_restore_probe_restore_sessions_total",
            &[("probe", "catalog"), ("result", "warning")],
            |v| v == 1.0,
        )
        .await;
    // A warning is still a working restore; it is counted (and alerted on) separately.
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "catalog")], |v| v == 1.0).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn download_checksum_mismatch_fails_and_still_unmounts() {
    let sim = start_sim().await;
    let wrong = "0".repeat(64);
    let setup = Setup::new(&sim.api_url, &download("1h", &wrong, ""));
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "file"), ("reason", "verify_failed")], |v| {
            v == 1.0
        })
        .await;
    let page = reqwest::get(exporter.url("/")).await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("expected {wrong}")), "the landing page says what mismatched");
    assert!(sim.state().mounts.is_empty());
    assert!(sim.state().restored_files.is_empty(), "download mode never writes into the VM");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_mount_unmounts_before_exit() {
    let sim = start_sim().await;
    sim.add_fault(fault(Call::MountBrowse, FaultKind::Latency { ms: 2_000 }, Some(1)));
    let setup = Setup::new(&sim.api_url, &mount("1h"));
    let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    eventually(Duration::from_secs(20), "the mount", || async { (sim.state().mounts.len() == 1).then_some(()) }).await;
    exporter.signal("TERM");
    let status = exporter.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", exporter.logs());
    assert!(sim.state().mounts.is_empty(), "unmounted before exit");
    assert_eq!(setup.records(), 0);
    let log = sim.requests();
    let delete = log.iter().position(|r| r.endpoint == Some(Call::MountDelete)).expect("unmounted");
    let logoff = log.iter().position(|r| r.endpoint == Some(Call::Logoff)).expect("logged off");
    assert!(delete < logoff, "unmount comes before log-off");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn em_down_is_reported_while_metrics_keep_answering() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let setup = Setup::new(&format!("http://127.0.0.1:{port}/api/"), &mount("1s"));
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "mount"), ("reason", "transport")], |v| v >= 1.0)
        .await;
    let m = exporter.metrics().await;
    assert_eq!(value(&m, "veeam_restore_server_up", &[("target", "sim")]), Some(0.0));
    assert_eq!(value(&m, "veeam_restore_probe_success", &[("probe", "mount")]), Some(0.0));
    assert!(value(&m, "veeam_restore_logon_failures_total", &[("reason", "transport")]).unwrap() >= 1.0);
    assert_eq!(reqwest::get(exporter.url("/-/ready")).await.unwrap().status(), 200, "readiness never depends on EM");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "targets:\n  - name: em\n    url: https://em:9398/api/\n    username: u\n    password_file: p\n    probes:\n      \
         - { name: m, kind: mount, vm: v, interval: 5x }\n      - { name: f, kind: file_restore, vm: v, interval: 1m, mode: bogus }\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["--config.check", &format!("--config.file={}", bad.display())]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
    assert!(stderr.contains("targets[0] (em).probes[0] (m).interval: invalid duration \"5x\""), "{stderr}");
    assert!(stderr.contains("targets[0] (em).probes[1] (f).mode: \"bogus\""), "{stderr}");

    let out = Command::new(BIN)
        .args([&format!("--config.file={}", bad.display()), "--web.listen-address=127.0.0.1:0"])
        .arg(format!("--storage.path={}", dir.path().join("state").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the exporter refuses to start on a bad config");

    let good = dir.path().join("good.yml");
    std::fs::write(&good, format!("targets:\n  - name: em\n    url: https://em:9398/api/\n    username: u\n    password_env: P\n    probes:\n{}", mount("1m"))).unwrap();
    let out =
        Command::new(BIN).args(["--config.check", &format!("--config.file={}", good.display())]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 target(s), 1 probe(s))"));

    let out = Command::new(BIN).args(["--config.file=x", "--password=secret"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "there is no password flag");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_the_old_config_on_error_and_applies_a_good_one() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, &mount("1h"));
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 1.0).await;
    let client = reqwest::Client::new();

    std::fs::write(setup.config_path(), "targets: [").unwrap();
    let response = client.post(exporter.url("/-/reload")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.text().await.unwrap().contains("line"), "the error says where");
    exporter.wait_metric("veeam_restore_exporter_config_last_reload_successful", &[], |v| v == 0.0).await;
    assert_eq!(client.get(exporter.url("/-/reload")).send().await.unwrap().status(), 405);

    setup.write_config(&sim.api_url, &mount("1h").replace("name: mount", "name: mount2"));
    exporter.signal("HUP");
    exporter.wait_metric("veeam_restore_exporter_config_last_reload_successful", &[], |v| v == 1.0).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount2")], |v| v == 1.0).await;
    let m = exporter.metrics().await;
    assert!(
        value(&m, "veeam_restore_probe_runs_total", &[("probe", "mount")]).is_none(),
        "removed probe's series are gone"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_during_a_mount_leaves_the_running_probe_alone() {
    let sim = start_sim().await;
    sim.add_fault(fault(Call::MountBrowse, FaultKind::Latency { ms: 3_000 }, Some(1)));
    let setup = Setup::new(&sim.api_url, &mount("1h"));
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    eventually(Duration::from_secs(20), "the first mount", || async { (sim.state().mounts.len() == 1).then_some(()) })
        .await;

    // The new configuration's cleanup runs while the old configuration's run holds its mount.
    let second = "      - { name: mount-b, kind: mount, vm: canary-win01, interval: 1h }\n";
    setup.write_config(&sim.api_url, &format!("{}{second}", mount("1h")));
    exporter.signal("HUP");
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount-b")], |v| v == 1.0).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 1.0).await;
    let m = exporter.metrics().await;
    assert_eq!(value(&m, "veeam_restore_probe_runs_total", &[("probe", "mount"), ("result", "failure")]), Some(0.0));
    assert_eq!(
        value(&m, "veeam_restore_orphaned_mounts_cleaned_total", &[("target", "sim")]),
        Some(0.0),
        "nothing was an orphan"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_appear_in_logs_metrics_or_pages() {
    const PASSWORD: &str = "Pw-7f3a9c-Secret";
    let inventory =
        veeam_restore_exporter::sim::DEFAULT_INVENTORY.replace("password: canary", &format!("password: {PASSWORD}"));
    let config = veeam_restore_exporter::sim::SimConfig {
        inventory: Some(inventory),
        timings: crate::support::fast_timings(),
        ..Default::default()
    };
    let sim = veeam_restore_exporter::sim::start(config).await.unwrap();
    let probes = format!("{}{}", mount("1s"), download("1s", &good_sha(), ""));
    let setup = Setup::with_password(&sim.api_url, &probes, PASSWORD);
    let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "file")], |v| v == 1.0).await;
    sim.expire_sessions();
    exporter.wait_metric("veeam_restore_logons_total", &[("target", "sim")], |v| v >= 2.0).await;

    // Both sessions, whatever the machine's load made of the timing.
    let sessions = eventually(Duration::from_secs(20), "two logon sessions", || async {
        let s = sim.state().sessions;
        (s.len() >= 2).then_some(s)
    })
    .await;
    // Real EM tokens (and the simulator's) are base64 of the session id: both are secrets.
    let secrets: Vec<String> = sessions
        .iter()
        .flat_map(|s| {
            [s.id.clone(), base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s.id.as_bytes())]
        })
        .collect();
    let page = reqwest::get(exporter.url("/")).await.unwrap().text().await.unwrap();
    let metrics = exporter.metrics().await;
    exporter.signal("TERM");
    exporter.wait_exit(Duration::from_secs(30)).await;
    let logs = exporter.logs();
    assert!(logs.contains("level=debug") || logs.contains("logged on"), "debug logging was on");
    for (what, text) in [("logs", &logs), ("metrics", &metrics), ("landing page", &page)] {
        assert!(!text.contains(PASSWORD), "the password appears in the {what}");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a session id or token appears in the {what}");
        }
    }
    sim.shutdown().await;
}

/// Failure confirmation: an hourly probe whose first run fails runs again after
/// `retry_after_failure` (2s here, 5m by default), so two failures in a row (what the alerts
/// wait for) come within seconds, not an hour; a path that stays broken is then tried once an
/// interval, not every retry.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_failure_is_confirmed_after_retry_after_failure_not_an_interval_later() {
    let sim = start_sim().await;
    sim.add_fault(Fault {
        endpoint: Some(Call::MountCreate),
        kind: FaultKind::Status { status: 503, message: None },
        times: Some(2),
    });
    let setup = Setup::new(
        &sim.api_url,
        "      - { name: m, kind: mount, vm: canary-win01, interval: 1h, retry_after_failure: 2s }\n",
    );
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_failures_in_a_row", &[("probe", "m")], |v| v == 2.0).await;
    let m = exporter.metrics().await;
    assert_eq!(value(&m, "veeam_restore_probe_runs_total", &[("probe", "m"), ("result", "failure")]), Some(2.0));
    let next = value(&m, "veeam_restore_probe_next_run_timestamp_seconds", &[("probe", "m")]).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(
        next > now + 3000.0,
        "after the confirmation the next run is an interval away, not a retry: {next} vs {now}"
    );
    sim.shutdown().await;
}
