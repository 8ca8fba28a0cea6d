//! The exporter binary against the simulated VBR server (`api: vbr`): every probe kind
//! succeeds, each mount is unmounted and its FLR session stopped, the malware status is
//! exported, another user's mount is never touched, and shutdown logs out.

use std::time::Duration;

use sha2::Digest;
use veeam_vbr_sim::{SimConfig, SimServer, Timings};

use crate::support::eventually;
use crate::support::exporter::{Exporter, value};

const CANARY: &str = "veeam-restore-exporter canary file on canary-win01\n";

pub(crate) async fn sim() -> SimServer {
    let timings = Timings {
        mount_duration: Duration::from_millis(200),
        task_duration: Duration::from_millis(600),
        ..Timings::default()
    };
    veeam_vbr_sim::start(SimConfig { tls: true, timings, ..SimConfig::default() }).await.expect("simulator starts")
}

/// A VBR target with `probes` (YAML lines under `probes:`), trusting the simulator's certificate.
fn setup(sim: &SimServer, probes: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "canary\n").unwrap();
    let ca = sim.cert_file.as_ref().expect("TLS simulator writes its certificate");
    let config = format!(
        "targets:\n  - name: vbr\n    api: vbr\n    url: {}\n    username: svc-canary\n    password_file: password\n    \
         tls_config: {{ ca_file: {} }}\n    auto_unmount: 30m\n    poll_initial: 50ms\n    poll_max: 200ms\n    \
         request_timeout: 10s\n    probes:\n{probes}",
        sim.url,
        ca.display()
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    dir
}

pub(crate) fn live_mounts(sim: &SimServer) -> Vec<String> {
    sim.state().live_mounts().iter().map(|m| m.initiator.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_probe_kind_runs_against_vbr_and_leaves_only_other_users_mounts() {
    let sim = sim().await;
    let others = live_mounts(&sim);
    assert_eq!(others.len(), 1, "the built-in inventory has another user's mount");
    let sha = hex::encode(sha2::Sha256::digest(CANARY.as_bytes()));
    let probes = format!(
        "      - {{ name: mount, kind: mount, vm: canary-win01, interval: 1h }}\n\
         \x20     - {{ name: download, kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/canary.txt, \
         expected_size: {}, expected_sha256: {sha}, interval: 1h }}\n\
         \x20     - {{ name: restore, kind: file_restore, mode: original_location, vm: canary-win01, path: C:/canary/canary.txt, interval: 1h }}\n\
         \x20     - {{ name: infected, kind: mount, vm: canary-infected01, interval: 1h }}\n",
        CANARY.len()
    );
    let dir = setup(&sim, &probes);
    let mut exporter = Exporter::start(&dir.path().join("config.yml"), &dir.path().join("state")).await;
    for probe in ["mount", "download", "restore", "infected"] {
        let ok = eventually(Duration::from_secs(60), &format!("probe {probe} to finish"), || async {
            value(&exporter.metrics().await, "veeam_restore_probe_success", &[("probe", probe)])
        })
        .await;
        assert_eq!(ok, 1.0, "probe {probe} failed:\n{}", exporter.logs());
    }
    let m = exporter.metrics().await;
    let status = |probe: &str, status: &str| {
        value(&m, "veeam_restore_point_malware_status", &[("probe", probe), ("status", status)])
    };
    assert_eq!(status("mount", "clean"), Some(1.0), "{m}");
    assert_eq!(value(&m, "veeam_restore_server_up", &[("target", "vbr"), ("api", "vbr")]), Some(1.0), "{m}");
    assert_eq!(value(&m, "veeam_restore_probe_info", &[("probe", "mount"), ("api", "vbr")]), Some(1.0), "{m}");
    assert_eq!(status("infected", "infected"), Some(1.0), "{m}");
    assert_eq!(status("infected", "clean"), Some(0.0));
    assert_eq!(value(&m, "veeam_restore_probe_restore_session_progress_ratio", &[("probe", "restore")]), Some(1.0));
    assert!(value(&m, "veeam_restore_server_requests_total", &[("endpoint", "mount_create")]).unwrap() >= 4.0);
    assert_eq!(live_mounts(&sim), others, "every probe unmounted its own mount, and only its own");
    assert!(sim.state().restored.iter().any(|r| r.path.contains("canary.txt")), "the restore reached the VM");
    assert_eq!(std::fs::read_dir(dir.path().join("state/flr")).unwrap().count(), 0, "no record left");
    exporter.signal("TERM");
    exporter.wait_exit(Duration::from_secs(30)).await;
    assert!(exporter.logs().contains("logged out from VBR"), "{}", exporter.logs());
    assert_eq!(live_mounts(&sim), others);
    sim.shutdown().await;
}

/// A mount whose answer was lost (VBR mounted, the connection dropped before the 201): the run
/// fails, and the record's follow-up finds the FLR session among those started since, and
/// unmounts it, without waiting for the next run.
#[tokio::test(flavor = "multi_thread")]
async fn a_mount_whose_answer_was_lost_is_found_and_unmounted() {
    let fault: veeam_vbr_sim::FaultSpec = "kind=lost_mount,endpoint=flr_mount,times=1".parse().unwrap();
    let timings = Timings { mount_duration: Duration::from_millis(200), ..Timings::default() };
    let sim = veeam_vbr_sim::start(SimConfig { tls: true, timings, faults: vec![fault], ..SimConfig::default() })
        .await
        .unwrap();
    let others = live_mounts(&sim);
    let dir = setup(&sim, "      - { name: mount, kind: mount, vm: canary-win01, interval: 1h }\n");
    let exporter = Exporter::start(&dir.path().join("config.yml"), &dir.path().join("state")).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 0.0).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let records = std::fs::read_dir(dir.path().join("state/flr")).map(|d| d.count()).unwrap_or(0);
        if live_mounts(&sim) == others && records == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the lost mount is still there:\n{}", exporter.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exporter.wait_metric("veeam_restore_orphaned_mounts_cleaned_total", &[], |v| v == 1.0).await;
    assert_eq!(sim.state().mounts.iter().filter(|m| m.stopped_by.as_deref() == Some("svc-canary")).count(), 1);
    sim.shutdown().await;
}

/// Crash points on VBR: a SIGKILL at every request of a run of every kind (held before VBR acts
/// on it), then a restart with the probe an hour away: within 60 s no mount of ours and no
/// record is left; the other user's mount is untouched throughout.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigkill_at_any_vbr_request_leaves_no_mount_of_ours() {
    let _heavy = crate::support::one_heavy_test_at_a_time().await;
    let kinds = [
        ("mount", "kind: mount"),
        ("download", "kind: file_restore, mode: download, path: C:/canary/canary.txt"),
        ("restore", "kind: file_restore, mode: original_location, path: C:/canary/canary.txt"),
    ];
    let mut matrix = Vec::new();
    for (name, yaml) in kinds {
        let probes = format!("      - {{ name: {name}, {yaml}, vm: canary-win01, interval: 1h }}\n");
        let calibration = sim().await;
        let dir = setup(&calibration, &probes);
        let exporter = Exporter::start(&dir.path().join("config.yml"), &dir.path().join("state")).await;
        exporter.wait_metric("veeam_restore_probe_success", &[("probe", name)], |v| v == 1.0).await;
        let requests = admin(&calibration, reqwest::Method::GET, "requests", None).await.as_array().unwrap().len();
        drop(exporter);
        calibration.shutdown().await;
        for n in 1..=requests {
            let sim = sim().await;
            let others = live_mounts(&sim);
            admin(&sim, reqwest::Method::POST, "hold", Some(serde_json::json!({ "after": n }))).await;
            let dir = setup(&sim, &probes);
            let (config, storage) = (dir.path().join("config.yml"), dir.path().join("state"));
            let mut exporter = Exporter::start(&config, &storage).await;
            let held = eventually(Duration::from_secs(60), "the request to be held", || async {
                let view = admin(&sim, reqwest::Method::GET, "held", None).await;
                view["held"]
                    .as_bool()
                    .unwrap_or(false)
                    .then(|| view["request"]["endpoint"].as_str().unwrap_or("?").to_owned())
            })
            .await;
            exporter.signal("KILL");
            exporter.wait_exit(Duration::from_secs(10)).await;
            admin(&sim, reqwest::Method::POST, "release", None).await;
            let restarted = Exporter::start(&config, &storage).await;
            let started = std::time::Instant::now();
            eventually(
                Duration::from_secs(60),
                &format!("{name} request {n} ({held}): nothing of ours left"),
                || async {
                    let records = std::fs::read_dir(storage.join("flr")).map(|d| d.count()).unwrap_or(0);
                    (live_mounts(&sim) == others && records == 0).then_some(())
                },
            )
            .await;
            matrix.push(format!("{name:<9} {n:>3}  {held:<18} clean in {:.0}s", started.elapsed().as_secs_f64()));
            drop(restarted);
            sim.shutdown().await;
        }
    }
    eprintln!("VBR, SIGKILL at request N of a run of each kind, then a restart:\n{}", matrix.join("\n"));
}

/// The simulator's admin API (`/sim/…`, JSON).
pub(crate) async fn admin(
    sim: &SimServer,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let client = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().unwrap();
    let mut request = client.request(method, format!("{}sim/{path}", sim.url));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin API answers");
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.unwrap_or(serde_json::Value::Null)
}
