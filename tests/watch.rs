//! The passive restore watch against the simulator: restores other users ran, counted by job
//! type and result, the running ones, the canary's own left out, and no double count across a
//! restart.

use std::time::Duration;

use veeam_restore_exporter::sim::ExternalRestore;

use crate::support::exporter::{Exporter, Setup, value};
use crate::support::start_sim;

fn restore(vm: &str, job_type: &str, age: &str, ran: Option<&str>, result: Option<&str>) -> ExternalRestore {
    ExternalRestore {
        vm: vm.into(),
        job_type: job_type.into(),
        age: humantime::parse_duration(age).unwrap(),
        duration: ran.map(|d| humantime::parse_duration(d).unwrap()),
        result: result.map(str::to_owned),
    }
}

const PROBE: &str = "      - { name: mount, kind: mount, vm: canary-win01, interval: 1h }\n";
const WATCH: &str = "    restore_watch: { interval: 1s, running_max_age: 2h }\n";

#[tokio::test(flavor = "multi_thread")]
async fn restores_by_anyone_are_counted_once_by_type_and_result_across_a_restart() {
    let sim = start_sim().await;
    // Another user's restores of a VM no probe uses: three finished (one failed), one running.
    sim.add_restore_session(restore("canary-lnx01", "RestoreVm", "3h", Some("20m"), Some("Success"))).unwrap();
    sim.add_restore_session(restore("canary-lnx01", "FileLevelRestore", "2h", Some("5m"), Some("Failed"))).unwrap();
    sim.add_restore_session(restore("canary-lnx01", "InstantRecovery", "1h", Some("1m"), Some("Warning"))).unwrap();
    let running = sim.add_restore_session(restore("canary-lnx01", "RestoreVm", "5h", None, None)).unwrap();
    // Older than the first read looks back (a day), and one of the canary VM: neither counts.
    sim.add_restore_session(restore("canary-lnx01", "RestoreVm", "30h", Some("1m"), Some("Failed"))).unwrap();
    sim.add_restore_session(restore("canary-win01", "FileLevelRestore", "1h", Some("1m"), Some("Failed"))).unwrap();

    let setup = Setup::new(&sim.api_url, &format!("{PROBE}{WATCH}"));
    let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_watch_last_success_timestamp_seconds", &[], |v| v > 0.0).await;
    let m = exporter.metrics().await;
    let count = |m: &str, job: &str, result: &str| {
        value(m, "veeam_restore_watch_sessions_total", &[("job_type", job), ("result", result)])
    };
    assert_eq!(count(&m, "RestoreVm", "success"), Some(1.0), "{m}");
    assert_eq!(count(&m, "FileLevelRestore", "failed"), Some(1.0), "the canary VM's failure is left out");
    assert_eq!(count(&m, "other", "warning"), Some(1.0), "unknown job types fold into other");
    assert_eq!(count(&m, "RestoreVm", "failed"), Some(0.0), "older than a day");
    assert_eq!(value(&m, "veeam_restore_watch_sessions_total", &[]), Some(3.0));
    assert_eq!(value(&m, "veeam_restore_watch_running_sessions", &[]), Some(1.0));
    let oldest = value(&m, "veeam_restore_watch_oldest_running_seconds", &[]).unwrap();
    assert!((5.0 * 3600.0..6.0 * 3600.0).contains(&oldest), "{oldest}");
    assert_eq!(value(&m, "veeam_restore_watch_running_max_age_seconds", &[]), Some(7200.0));
    assert!(!m.contains("canary-lnx01"), "no VM names in label values");

    // A restore that fails now is counted at the next read.
    sim.add_restore_session(restore("canary-lnx01", "FileLevelRestore", "10m", Some("5m"), Some("Failed"))).unwrap();
    exporter
        .wait_metric(
            "veeam_restore_watch_sessions_total",
            &[("job_type", "FileLevelRestore"), ("result", "failed")],
            |v| v == 2.0,
        )
        .await;

    // A restart reads the same sessions again and counts none of them twice.
    exporter.signal("TERM");
    assert!(exporter.wait_exit(Duration::from_secs(30)).await.success());
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_watch_last_success_timestamp_seconds", &[], |v| v > 0.0).await;
    let m = exporter.metrics().await;
    assert_eq!(value(&m, "veeam_restore_watch_sessions_total", &[]), Some(4.0), "{m}");
    assert_eq!(count(&m, "FileLevelRestore", "failed"), Some(2.0));

    // The long-running restore ends in failure: counted once, nothing runs any more.
    sim.stop_restore_session(&running, "Failed").unwrap();
    exporter.wait_metric("veeam_restore_watch_running_sessions", &[], |v| v == 0.0).await;
    exporter
        .wait_metric("veeam_restore_watch_sessions_total", &[("job_type", "RestoreVm"), ("result", "failed")], |v| {
            v == 1.0
        })
        .await;
    exporter.wait_metric("veeam_restore_watch_oldest_running_seconds", &[], |v| v == 0.0).await;
    // Several more reads later the totals are the same.
    let reads = exporter.wait_metric("veeam_restore_watch_last_success_timestamp_seconds", &[], |v| v > 0.0).await;
    exporter.wait_metric("veeam_restore_watch_last_success_timestamp_seconds", &[], |v| v >= reads + 2.0).await;
    assert_eq!(value(&exporter.metrics().await, "veeam_restore_watch_sessions_total", &[]), Some(5.0));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_restore_watch_no_watch_series_exist_and_em_is_not_asked() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, PROBE);
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "mount")], |v| v == 1.0).await;
    assert!(!exporter.metrics().await.contains("veeam_restore_watch_"));
    assert!(!sim.requests().iter().any(|r| r.path.contains("type=RestoreSession")), "no restore-session queries");
    sim.shutdown().await;
}
