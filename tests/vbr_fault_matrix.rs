//! The fault matrix on VBR: every fault the simulated VBR server offers, injected once into the
//! one call of every phase of every probe kind, against the real exporter binary. For each
//! cell: the run ends with the expected outcome, the next clean run succeeds, and within a
//! bounded time no mount of ours and no record is left, while another user's mount is never
//! touched. A second test sends SIGTERM while each phase's call is in flight.
//! `cargo test vbr_fault_matrix -- --nocapture` prints the matrices.

use std::path::Path;
use std::time::{Duration, Instant};

use veeam_vbr_sim::{FaultSpec, SimServer};

use crate::support::eventually;
use crate::support::exporter::Exporter;
use crate::support::matrix::{self, run};
use crate::vbr_exporter::{admin, live_mounts, sim};

struct Kind {
    probe: &'static str,
    yaml: &'static str,
    /// `(phase, the simulator endpoint that phase calls)`, in the kind's order.
    phases: Vec<(&'static str, &'static str)>,
}

/// The simulator endpoint a phase calls: the matrix's own knowledge of VBR's API, kept apart
/// from the exporter's code (a lookup starts with `GET /backupObjects`).
fn endpoint_of(probe: &str, phase: &str) -> &'static str {
    match (probe, phase) {
        (_, "lookup") => "backup_objects",
        (_, "mount") => "flr_mount",
        ("mount", "browse") => "browse",
        ("download", "restore") => "prepare_download",
        ("restore", "restore") => "flr_restore",
        ("download", "download") => "download",
        (_, "unmount") => "flr_unmount",
        _ => panic!("the VBR fault matrix has no endpoint for phase {phase} of the {probe} probe: add it"),
    }
}

/// Every kind, with the phases the exporter lists for it on VBR: a new phase gets its row or
/// fails here until it has one.
fn kinds() -> Vec<Kind> {
    let kinds = [
        ("mount", "kind: mount, vm: canary-win01"),
        ("download", "kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/canary.txt"),
        ("restore", "kind: file_restore, mode: original_location, vm: canary-win01, path: C:/canary/canary.txt"),
    ];
    kinds
        .into_iter()
        .map(|(probe, yaml)| {
            let config = format!(
                "targets:\n  - name: t\n    api: vbr\n    url: https://vbr:9419\n    username: u\n    password_env: P\n    \
                 probes:\n      - {{ name: p, {yaml}, interval: 1h }}\n"
            );
            let config = veeam_restore_exporter::config::parse(&config, Path::new("/")).unwrap();
            let spec = &config.targets[0].probes[0];
            let phases = spec.kind.phases_on(spec.api).iter().map(|p| (p.as_str(), endpoint_of(probe, p.as_str()))).collect();
            Kind { probe, yaml, phases }
        })
        .collect()
}

/// The faults for an endpoint: the request-level ones everywhere, and the endpoint's own.
fn faults_for(endpoint: &str) -> Vec<(&'static str, String)> {
    let mut faults = vec![
        ("500", "kind=status,status=500".to_owned()),
        ("503", "kind=status,status=503".to_owned()),
        ("401", "kind=status,status=401".to_owned()),
        ("404", "kind=status,status=404".to_owned()),
        ("drop", "kind=drop".to_owned()),
        ("garbage", "kind=garbage".to_owned()),
        // Beyond the 3 s request timeout, shorter than the slow calls' (mount, unmount, download).
        ("stall", "kind=delay,ms=4000".to_owned()),
    ];
    match endpoint {
        "flr_mount" => {
            faults.push(("mount_errors", "kind=mount_errors,error_type=Failed".to_owned()));
            faults.push(("lost_mount", "kind=lost_mount".to_owned()));
        }
        "prepare_download" | "flr_restore" => faults.push(("task_fail", "kind=task_fail".to_owned())),
        "download" => {
            faults.push(("zip_bomb", "kind=zip_bomb".to_owned()));
            faults.push(("zip_traversal", "kind=zip_traversal".to_owned()));
            faults.push(("zip_truncated", "kind=zip_truncated".to_owned()));
        }
        _ => {}
    }
    faults.into_iter().map(|(name, spec)| (name, format!("{spec},endpoint={endpoint},times=1"))).collect()
}

/// The outcomes a cell may have: `ok` or the failure reason.
fn expected(row: &str, fault: &str) -> &'static [&'static str] {
    let (probe, phase) = row.split_once('/').unwrap();
    match (phase, fault) {
        // A 401 renews the token and repeats the call (VBR refused it before acting on it).
        (_, "401") => &["ok"],
        // The unmount is retried until VBR confirms the session stopped.
        ("unmount", _) => &["ok"],
        ("mount", "mount_errors") => &["mount_errors"],
        // Mounted, the answer lost: the run fails; cleanup finds and unmounts the mount.
        ("mount", "lost_mount") => &["transport"],
        // Slow calls wait for VBR's answer; the download's own step deadline is 3 s.
        ("mount", "stall") => &["ok"],
        ("download", "stall") => &["step_timeout"],
        (_, "stall") => &["timeout", "step_timeout"],
        (_, "500" | "503") => &["server_error"],
        // No backup object by that name: the point is not there.
        ("lookup", "404") => &["no_restore_point"],
        (_, "404") => &["not_found"],
        (_, "drop") => &["transport"],
        // This probe checks no size or checksum, but a body that is no ZIP is no download.
        ("download", "garbage") => &["bad_archive"],
        (_, "garbage") => &["decode"],
        (_, "task_fail") => &["task_failed"],
        ("download", "zip_bomb") => &["too_large", "bad_archive"],
        ("download", "zip_traversal" | "zip_truncated") => &["bad_archive"],
        _ => {
            let _ = probe;
            &[]
        }
    }
}

/// Short step timeouts, a short request timeout; the unmount has room for retries.
fn setup(sim: &SimServer, kind: &Kind) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "canary\n").unwrap();
    let steps: Vec<String> = kind
        .phases
        .iter()
        .map(|(phase, _)| format!("{phase}: {}", if *phase == "unmount" { "15s" } else { "3s" }))
        .collect();
    let config = format!(
        "targets:\n  - name: vbr\n    api: vbr\n    url: {}\n    username: svc-canary\n    password_file: password\n    \
         tls_config: {{ ca_file: {} }}\n    auto_unmount: 30m\n    poll_initial: 50ms\n    poll_max: 200ms\n    \
         request_timeout: 3s\n    keepalive_interval: 10m\n    probes:\n      - {{ name: {}, {}, interval: 1h, timeout: 1m, \
         retry_after_failure: 0s, step_timeouts: {{ {} }} }}\n",
        sim.url,
        sim.cert_file.as_ref().unwrap().display(),
        kind.probe,
        kind.yaml,
        steps.join(", ")
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    dir
}

fn records(storage: &Path) -> usize {
    std::fs::read_dir(storage.join("flr")).map(|d| d.count()).unwrap_or(0)
}

/// Within 30 s: only the other user's mounts are live, and no record is left.
async fn wait_clean(sim: &SimServer, others: &[String], storage: &Path, cell: &str, exporter: &Exporter) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_mounts(sim) != others || records(storage) > 0 {
        assert!(
            Instant::now() < deadline,
            "{cell}: left behind: mounts {:?} (others {others:?}), {} record(s)\n{}",
            live_mounts(sim),
            records(storage),
            exporter.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn add_fault(sim: &SimServer, spec: &str) {
    let fault: FaultSpec = spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}"));
    admin(sim, reqwest::Method::POST, "faults", Some(serde_json::to_value(&fault).unwrap())).await;
}

/// Faults that have not fired as often as they may.
async fn faults_left(sim: &SimServer) -> usize {
    let faults = admin(sim, reqwest::Method::GET, "faults", None).await;
    let pending = |f: &&serde_json::Value| f["times"].as_u64().is_none_or(|times| f["fired"].as_u64() < Some(times));
    faults.as_array().map_or(0, |all| all.iter().filter(pending).count())
}

/// One kind's row of the matrix, on a simulator and an exporter of its own: `(row, fault, outcome)`.
async fn kind_matrix(kind: Kind) -> Vec<(String, String, String)> {
    let mut cells = Vec::new();
    let sim = sim().await;
    let others = live_mounts(&sim);
    let dir = setup(&sim, &kind);
    let storage = dir.path().join("state");
    let exporter = Exporter::start(&dir.path().join("config.yml"), &storage).await;
    exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", kind.probe)], |v| v >= 1.0).await;
    for &(phase, endpoint) in &kind.phases {
        for (name, spec) in faults_for(endpoint) {
            let cell = format!("{}/{phase}/{name}", kind.probe);
            add_fault(&sim, &spec).await;
            let outcome = run(&exporter, "vbr", kind.probe).await;
            admin(&sim, reqwest::Method::DELETE, "faults", None).await;
            wait_clean(&sim, &others, &storage, &cell, &exporter).await;
            assert_eq!(
                run(&exporter, "vbr", kind.probe).await,
                "ok",
                "{cell}: the next clean run fails\n{}",
                exporter.logs()
            );
            wait_clean(&sim, &others, &storage, &cell, &exporter).await;
            let row = format!("{}/{phase}", kind.probe);
            assert!(
                expected(&row, name).contains(&outcome.as_str()),
                "{cell}: got {outcome}, expected {:?}\n{}",
                expected(&row, name),
                exporter.logs()
            );
            cells.push((row, name.to_owned(), outcome));
        }
    }
    drop(exporter);
    sim.shutdown().await;
    cells
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_in_every_vbr_phase_leaves_no_mount_of_ours() {
    let _heavy = crate::support::one_heavy_test_at_a_time().await;
    // The kinds side by side: each waits on timeouts far more than it computes.
    let rows: Vec<_> = kinds().into_iter().map(|kind| tokio::spawn(kind_matrix(kind))).collect();
    let mut matrix: Vec<(String, String, String)> = Vec::new();
    for row in rows {
        matrix.extend(row.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
    }
    let table = matrix::table(&matrix, 18, 14);
    eprintln!("VBR fault matrix (outcome of the faulted run; every cell then ran clean and left nothing):\n{table}");
    assert!(matrix.len() >= 80, "{} cells", matrix.len());
}

/// SIGTERM while each phase's call is in flight (delayed 2 s by the simulator): the exporter
/// exits 0, the run is cut short or finishes (never a failure), no mount of ours and no record
/// is left, and the next start runs clean.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_in_every_vbr_phase_leaves_no_mount_of_ours() {
    let mut cells = Vec::new();
    for kind in kinds() {
        let sim = sim().await;
        let others = live_mounts(&sim);
        let dir = setup(&sim, &kind);
        let (config, storage) = (dir.path().join("config.yml"), dir.path().join("state"));
        for &(phase, endpoint) in &kind.phases {
            let cell = format!("{}/{phase}", kind.probe);
            add_fault(&sim, &format!("kind=delay,ms=2000,endpoint={endpoint},times=1")).await;
            let mut exporter = Exporter::start(&config, &storage).await;
            let url = exporter.url(&format!("/-/probe?target=vbr&probe={}", kind.probe));
            let _ = reqwest::Client::new().post(&url).send().await;
            eventually(Duration::from_secs(30), &format!("{cell}: the call in flight"), || async {
                (faults_left(&sim).await == 0).then_some(())
            })
            .await;
            exporter.signal("TERM");
            let status = exporter.wait_exit(Duration::from_secs(40)).await;
            let logs = exporter.logs();
            assert!(status.success(), "{cell}: {status:?}\n{logs}");
            assert!(!logs.contains("probe failed"), "{cell}: a shutdown is not a probe failure\n{logs}");
            let end = if logs.contains("probe run cut short by shutdown") { "cancelled" } else { "finished" };
            assert_eq!(live_mounts(&sim), others, "{cell}: a mount of ours survived SIGTERM\n{logs}");
            assert_eq!(records(&storage), 0, "{cell}: a record survived a clean shutdown\n{logs}");
            drop(exporter);
            cells.push(format!("{cell:<18} {end}"));
        }
        let exporter = Exporter::start(&config, &storage).await;
        assert_eq!(run(&exporter, "vbr", kind.probe).await, "ok", "{}: the run after the SIGTERMs", kind.probe);
        wait_clean(&sim, &others, &storage, kind.probe, &exporter).await;
        drop(exporter);
        sim.shutdown().await;
    }
    eprintln!("VBR: SIGTERM while each phase's call is in flight:\n{}", cells.join("\n"));
}
