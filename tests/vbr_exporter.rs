//! The exporter binary against the simulated VBR server (`api: vbr`): every probe kind
//! succeeds, each mount is unmounted and its FLR session stopped, the malware status is
//! exported, another user's mount is never touched, and shutdown logs out.

use std::time::Duration;

use sha2::Digest;
use veeam_vbr_sim::{SimConfig, SimServer, Timings};

use crate::support::eventually;
use crate::support::exporter::{Exporter, value};

const CANARY: &str = "veeam-restore-exporter canary file on canary-win01\n";

async fn sim() -> SimServer {
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

fn live_mounts(sim: &SimServer) -> Vec<String> {
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
    assert_eq!(status("infected", "infected"), Some(1.0), "{m}");
    assert_eq!(status("infected", "clean"), Some(0.0));
    assert_eq!(value(&m, "veeam_restore_probe_restore_session_progress_ratio", &[("probe", "restore")]), Some(1.0));
    assert!(value(&m, "veeam_restore_em_requests_total", &[("endpoint", "mount_create")]).unwrap() >= 4.0);
    assert_eq!(live_mounts(&sim), others, "every probe unmounted its own mount, and only its own");
    assert!(sim.state().restored.iter().any(|r| r.path.contains("canary.txt")), "the restore reached the VM");
    assert_eq!(std::fs::read_dir(dir.path().join("state/flr")).unwrap().count(), 0, "no record left");
    exporter.signal("TERM");
    exporter.wait_exit(Duration::from_secs(30)).await;
    assert!(exporter.logs().contains("logged out from VBR"), "{}", exporter.logs());
    assert_eq!(live_mounts(&sim), others);
    sim.shutdown().await;
}
