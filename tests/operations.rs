//! The exporter binary as operators run it: schedules that survive reloads and restarts, logon
//! backoff, flags and state directories checked up front, the web config's TLS and basic auth,
//! and the shipped examples.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, SystemTime};

use veeam_restore_exporter::sim::Call;
use veeam_restore_exporter::sim::SimServer;

use crate::support::exporter::{BIN, Exporter, Setup, value};
use crate::support::{eventually, start_sim};

fn mounts_created(sim: &SimServer) -> usize {
    sim.requests().iter().filter(|r| r.endpoint == Some(Call::MountCreate)).count()
}

fn now_seconds() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

async fn reload(exporter: &Exporter) {
    let response = reqwest::Client::new().post(exporter.url("/-/reload")).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Waits until the scheduler of the running process plans both probes at least `after` seconds
/// from now.
async fn both_planned_beyond(exporter: &Exporter, after: f64) {
    for probe in ["a", "b"] {
        let at = now_seconds() + after;
        exporter.wait_metric("veeam_restore_probe_next_run_timestamp_seconds", &[("probe", probe)], |v| v > at).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_and_a_restart_do_not_run_an_hourly_probe_again_and_a_changed_probe_runs_alone() {
    let sim = start_sim().await;
    let probes = |b_browse: bool| {
        format!(
            "      - {{ name: a, kind: mount, vm: canary-win01, interval: 1h }}\n      \
             - {{ name: b, kind: mount, vm: canary-win01, interval: 1h, browse: {b_browse} }}\n"
        )
    };
    let setup = Setup::new(&sim.api_url, &probes(true));
    let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    for probe in ["a", "b"] {
        exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", probe)], |v| v == 1.0).await;
    }
    assert_eq!(mounts_created(&sim), 2);
    for _ in 0..3 {
        reload(&exporter).await;
    }
    both_planned_beyond(&exporter, 3000.0).await;
    exporter.signal("TERM");
    assert!(exporter.wait_exit(Duration::from_secs(30)).await.success());

    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    both_planned_beyond(&exporter, 3000.0).await;
    let page = reqwest::get(exporter.url("/")).await.unwrap().text().await.unwrap();
    // About an hour (±10 % jitter, at most 30 s) after the last run, minus the test's own time.
    let planned = ["Next run: in 1h", "Next run: in 59m", "Next run: in 58m"];
    assert!(planned.iter().any(|p| page.contains(p)), "the landing page shows the next run");

    setup.write_config(&sim.api_url, &probes(false));
    reload(&exporter).await;
    exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", "b")], |v| v == 1.0).await;
    // A short window in which a wrongly rescheduled probe `a` would have started (the first
    // probe of a generation is due at once, the second a second later).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(value(&exporter.metrics().await, "veeam_restore_probe_runs_total", &[("probe", "a")]), Some(0.0));
    assert_eq!(mounts_created(&sim), 3, "3 reloads and a restart added no run; the changed probe ran alone");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_logon_backs_off_and_a_corrected_password_is_tried_at_once() {
    let sim = start_sim().await;
    let probes = "      - { name: a, kind: mount, vm: canary-win01, interval: 10s }\n      \
                  - { name: b, kind: mount, vm: canary-win01, interval: 10s }\n";
    let setup = Setup::with(&sim.api_url, probes, "wrong", "5s");
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_logon_failures_total", &[("reason", "logon_failed")], |v| v == 1.0).await;
    let m = exporter.metrics().await;
    assert_eq!(value(&m, "veeam_restore_server_up", &[("target", "sim")]), Some(0.0));
    assert!(value(&m, "veeam_restore_logon_backoff_seconds", &[("target", "sim")]).unwrap() >= 27.0);
    // Keep-alives every 5s and two probes would have made 4 attempts or more in this window.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let refused = sim.requests().iter().filter(|r| r.endpoint == Some(Call::Logon) && r.status == 401).count();
    assert_eq!(refused, 1, "one refused logon, then backoff");
    let m = exporter.metrics().await;
    assert_eq!(value(&m, "veeam_restore_logon_failures_total", &[("reason", "logon_failed")]), Some(1.0));
    for probe in ["a", "b"] {
        assert_eq!(
            value(&m, "veeam_restore_probe_failures_total", &[("probe", probe), ("reason", "logon_failed")]),
            value(&m, "veeam_restore_probe_runs_total", &[("probe", probe)]),
            "probes report the logon failure without trying"
        );
    }
    std::fs::write(setup.dir.path().join("password"), "canary\n").unwrap();
    exporter.wait_metric("veeam_restore_server_up", &[("target", "sim")], |v| v == 1.0).await;
    exporter.wait_metric("veeam_restore_logon_backoff_seconds", &[("target", "sim")], |v| v == 0.0).await;
    sim.shutdown().await;
}

/// Runs the binary to completion with `args`; returns (exit code, stderr).
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_flags_exit_1_with_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "targets: []\n").unwrap();
    let config_flag = format!("--config.file={}", config.display());
    let missing_web = format!("--web.config.file={}", dir.path().join("nope.yml").display());
    let cases: &[(&[&str], &str)] = &[
        (&["--web.telemetry-path=metrics"], "--web.telemetry-path"),
        (&["--web.telemetry-path=/-/healthy"], "--web.telemetry-path"),
        (&["--web.telemetry-path=/"], "--web.telemetry-path"),
        (&["--web.telemetry-path=/a/{b}"], "--web.telemetry-path"),
        (&["--web.telemetry-path=/m//x"], "--web.telemetry-path"),
        (&["--web.listen-address=nonsense"], "--web.listen-address"),
        (&["--web.listen-address=:99999"], "--web.listen-address"),
        (&["--shutdown.grace-period=soon"], "--shutdown.grace-period"),
        (&["--shutdown.grace-period=1.5m"], "--shutdown.grace-period"),
        (&["--log.level=loud"], "--log.level"),
        (&["--log.format=xml"], "--log.format"),
        (&["--web.no-such-flag"], "--web.no-such-flag"),
        (&[missing_web.as_str()], "--web.config.file"),
    ];
    for (args, flag) in cases {
        let mut all = vec![config_flag.as_str(), "--web.listen-address=127.0.0.1:0"];
        all.retain(|a| !args.iter().any(|b| b.split('=').next() == a.split('=').next()));
        all.extend_from_slice(args);
        let (code, stderr) = run(&all);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains(flag), "{args:?} names {flag}: {stderr}");
    }
    let (code, _) = run(&["--version"]);
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_state_directory_keeps_its_mode_and_a_world_writable_one_is_refused() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, "      - { name: a, kind: mount, vm: canary-win01, interval: 1h }\n");
    let shared = setup.dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exporter = Exporter::start(&setup.config_path(), &shared).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "a")], |v| v == 1.0).await;
    assert_eq!(std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777, 0o755);
    let private = std::fs::metadata(shared.join("mounts")).unwrap().permissions().mode() & 0o777;
    assert_eq!(private, 0o700, "records live in a subdirectory the exporter owns");
    drop(exporter);

    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = format!("--config.file={}", setup.config_path().display());
    let storage = format!("--storage.path={}", shared.display());
    let (code, stderr) = run(&[&config, &storage, "--web.listen-address=127.0.0.1:0"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("writable by group or others"), "{stderr}");
    sim.shutdown().await;
}

#[test]
fn every_shipped_example_passes_its_own_check() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") && !path.ends_with("web-config.yml") {
            let out = Command::new(BIN).args(["--config.check", &format!("--config.file={}", path.display())]).output();
            let out = out.unwrap();
            assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
fn certificates(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    (ca_path, ca.pem())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_config_serves_tls_and_requires_basic_auth() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, "      - { name: a, kind: mount, vm: canary-win01, interval: 1h }\n");
    let (_, ca_pem) = certificates(setup.dir.path());
    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    let web = setup.dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    let exporter = Exporter::start_with(&[
        &format!("--config.file={}", setup.config_path().display()),
        &format!("--storage.path={}", setup.storage().display()),
        &format!("--web.config.file={}", web.display()),
        "--web.enable-lifecycle",
    ])
    .await;
    let url = |path: &str| format!("https://{}{path}", exporter.addr);
    let plain = reqwest::Client::new();
    assert!(plain.get(url("/metrics")).send().await.is_err(), "an untrusted certificate is refused");
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder().tls_certs_merge([ca]).build().unwrap();

    let anonymous = client.get(url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let wrong = client.get(url("/metrics")).basic_auth("prometheus", Some("nope")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = client.get(url("/metrics")).basic_auth("prometheus", Some("scrape-pw")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers().get("x-frame-options").unwrap(), "deny");
    assert!(ok.text().await.unwrap().contains("veeam_restore_server_up"));
    assert_eq!(client.post(url("/-/reload")).send().await.unwrap().status(), 401);
    let reloaded = client.post(url("/-/reload")).basic_auth("prometheus", Some("scrape-pw")).send().await.unwrap();
    assert_eq!(reloaded.status(), 200);
    assert_eq!(client.get(url("/")).send().await.unwrap().status(), 401, "the landing page shows targets");
    assert_eq!(client.get(url("/-/healthy")).send().await.unwrap().status(), 200, "health needs no password");

    // Read again per request: a rotated password applies at once.
    let rotated = bcrypt::hash("rotated-pw", 4).unwrap();
    let text = std::fs::read_to_string(&web).unwrap().replace(&hash, &rotated);
    std::fs::write(&web, text).unwrap();
    let old = client.get(url("/metrics")).basic_auth("prometheus", Some("scrape-pw")).send().await.unwrap();
    assert_eq!(old.status(), 401);
    let new = client.get(url("/metrics")).basic_auth("prometheus", Some("rotated-pw")).send().await.unwrap();
    assert_eq!(new.status(), 200);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_over_http_needs_the_lifecycle_flag() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, "      - { name: a, kind: mount, vm: canary-win01, interval: 1h }\n");
    let exporter = Exporter::start_with(&[
        &format!("--config.file={}", setup.config_path().display()),
        &format!("--storage.path={}", setup.storage().display()),
    ])
    .await;
    let response = reqwest::Client::new().post(exporter.url("/-/reload")).send().await.unwrap();
    assert_eq!(response.status(), 403);
    exporter.signal("HUP");
    eventually(Duration::from_secs(20), "SIGHUP to reload", || async {
        exporter.logs().contains("configuration reloaded").then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_shows_the_last_result_and_a_shutdown_mid_run_is_no_failure() {
    use veeam_restore_exporter::sim::{self, SimConfig, Timings};
    let timings = Timings { restore_duration: Duration::from_secs(20), ..crate::support::fast_timings() };
    let sim = sim::start(SimConfig { timings, ..SimConfig::default() }).await.unwrap();
    let probes = "      - { name: a, kind: mount, vm: canary-win01, interval: 1h }\n      \
                  - { name: c, kind: file_restore, mode: catalog, vm: canary-win01, path: C:/canary/canary.txt, interval: 1h }\n";
    let setup = Setup::new(&sim.api_url, probes);
    let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "a")], |v| v == 1.0).await;
    // The catalog restore takes 20s: shut down while its restore session is followed.
    eventually(Duration::from_secs(20), "a catalog restore in progress", || async {
        sim.state().restore_sessions.iter().any(|r| r.state == "Working" && r.progress > 0).then_some(())
    })
    .await;
    exporter.signal("TERM");
    assert!(exporter.wait_exit(Duration::from_secs(30)).await.success());
    let logs = exporter.logs();
    assert!(logs.contains("probe run cut short by shutdown"), "{logs}");
    assert!(!logs.contains("probe failed"), "a shutdown is no failure: {logs}");

    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    // The last result is shown (the exposition follows within a refresh).
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "a")], |v| v == 1.0).await;
    let m = exporter.metrics().await;
    assert_eq!(value(&m, "veeam_restore_probe_runs_total", &[("probe", "a")]), Some(0.0), "nothing ran yet");
    assert!(value(&m, "veeam_restore_probe_last_success_timestamp_seconds", &[("probe", "a")]).unwrap() > 1.7e9);
    assert_eq!(value(&m, "veeam_restore_probe_success", &[("probe", "c")]), None, "a cut-short run is no result");
    sim.shutdown().await;
}

/// Start-up, a failing run and shutdown, in both formats: every line has `ts`, a lower-case
/// `level` and `msg` first (logfmt) or as flat keys (JSON), and no empty field.
#[tokio::test(flavor = "multi_thread")]
async fn logs_look_like_the_rest_of_the_prometheus_stack() {
    let sim = start_sim().await;
    let probes = "      - { name: a, kind: mount, vm: no-such-vm, interval: 1h }\n";
    let setup = Setup::new(&sim.api_url, probes);
    for format in ["logfmt", "json"] {
        let mut exporter = Exporter::start_with(&[
            &format!("--config.file={}", setup.config_path().display()),
            &format!("--storage.path={}", setup.dir.path().join(format).display()),
            &format!("--log.format={format}"),
        ])
        .await;
        exporter.wait_metric("veeam_restore_probe_success", &[("probe", "a")], |v| v == 0.0).await;
        exporter.signal("TERM");
        assert!(exporter.wait_exit(Duration::from_secs(30)).await.success());
        let logs = exporter.logs();
        assert!(logs.contains("probe failed") && logs.contains("Stopped"), "{logs}");
        for line in logs.lines() {
            if format == "json" {
                let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                let level = v["level"].as_str().unwrap();
                assert!(["debug", "info", "warn", "error"].contains(&level), "{line}");
                assert!(v["ts"].is_string() && v["msg"].is_string() && v.get("fields").is_none(), "{line}");
            } else {
                let fields: Vec<&str> = line.splitn(4, ' ').collect();
                assert!(fields[0].starts_with("ts=") && fields[2].starts_with("msg="), "{line}");
                let level = fields[1].strip_prefix("level=").unwrap();
                assert!(["debug", "info", "warn", "error"].contains(&level), "{line}");
                assert!(!line.contains("=\"\""), "no empty fields: {line}");
            }
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_config_file_is_picked_up_and_an_invalid_edit_keeps_the_old_one() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, "      - { name: a, kind: mount, vm: canary-win01, interval: 1h }\n");
    let exporter = Exporter::start_with(&[
        &format!("--config.file={}", setup.config_path().display()),
        &format!("--storage.path={}", setup.storage().display()),
        "--config.auto-reload-interval=200ms",
    ])
    .await;
    exporter.wait_metric("veeam_restore_probe_interval_seconds", &[("probe", "a")], |v| v == 3600.0).await;
    setup.write_config(&sim.api_url, "      - { name: b, kind: mount, vm: canary-win01, interval: 2h }\n");
    exporter.wait_metric("veeam_restore_probe_interval_seconds", &[("probe", "b")], |v| v == 7200.0).await;
    assert_eq!(value(&exporter.metrics().await, "veeam_restore_probe_interval_seconds", &[("probe", "a")]), None);

    std::fs::write(setup.config_path(), "targets: [ broken\n").unwrap();
    exporter.wait_metric("veeam_restore_exporter_config_last_reload_successful", &[], |v| v == 0.0).await;
    let m = exporter.metrics().await;
    assert_eq!(
        value(&m, "veeam_restore_probe_interval_seconds", &[("probe", "b")]),
        Some(7200.0),
        "the old config stays"
    );
    // An observation window of five check intervals, in which a retrying loop would log again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let failed = exporter.logs().matches("configuration reload failed").count();
    assert_eq!(failed, 1, "an unchanged invalid file is not tried again and again");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_runs_on_request_once_at_a_time_and_only_with_the_lifecycle_flag() {
    use veeam_restore_exporter::sim::{Fault, FaultKind};
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, "      - { name: a, kind: mount, vm: canary-win01, interval: 1h }\n");
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", "a")], |v| v == 1.0).await;
    let client = reqwest::Client::new();
    let post = |query: &str| client.post(exporter.url(&format!("/-/probe?{query}"))).send();

    assert_eq!(post("target=sim&probe=a").await.unwrap().status(), 202);
    exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", "a")], |v| v == 2.0).await;
    let page = reqwest::get(exporter.url("/")).await.unwrap().text().await.unwrap();
    assert!(page.contains("success (manual)") && page.contains("Run now"), "the landing page shows it");

    // A slow browse keeps the next run busy: a second request meanwhile is refused.
    sim.add_fault(Fault { endpoint: Some(Call::MountBrowse), kind: FaultKind::Latency { ms: 3000 }, times: Some(1) });
    assert_eq!(post("target=sim&probe=a").await.unwrap().status(), 202);
    eventually(Duration::from_secs(20), "the requested run to mount", || async {
        (sim.state().mounts.len() == 1).then_some(())
    })
    .await;
    assert_eq!(post("target=sim&probe=a").await.unwrap().status(), 409);
    exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", "a")], |v| v == 3.0).await;
    assert_eq!(post("target=sim&probe=nope").await.unwrap().status(), 404);
    assert_eq!(post("target=sim").await.unwrap().status(), 400);
    drop(exporter);

    let without = Exporter::start_with(&[
        &format!("--config.file={}", setup.config_path().display()),
        &format!("--storage.path={}", setup.storage().display()),
    ])
    .await;
    let mounts_before = mounts_created(&sim);
    let refused = client.post(without.url("/-/probe?target=sim&probe=a")).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    // A window in which a wrongly accepted request would have mounted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(mounts_created(&sim), mounts_before, "nothing ran");
    let page = reqwest::get(without.url("/")).await.unwrap().text().await.unwrap();
    assert!(!page.contains("Run now"), "no button without the lifecycle API");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_canary_timestamp_proves_the_data_is_fresh() {
    let sim = start_sim().await;
    let written = |hours: u64| {
        let at = SystemTime::now() - Duration::from_secs(hours * 3600);
        humantime::format_rfc3339_seconds(at).to_string()
    };
    assert!(sim.set_guest_file("canary-win01", "C:/canary/stamp.txt", &format!("{}\r\n", written(2))));
    let probe = "      - { name: fresh, kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/stamp.txt, \
                 interval: 2s, content_timestamp: { format: rfc3339, max_age: 26h } }\n";
    let setup = Setup::new(&sim.api_url, probe);
    let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
    exporter.wait_metric("veeam_restore_probe_success", &[("probe", "fresh")], |v| v == 1.0).await;
    let age = exporter.wait_metric("veeam_restore_probe_content_age_seconds", &[("probe", "fresh")], |v| v > 0.0).await;
    assert!((7000.0..7400.0).contains(&age), "about two hours: {age}");
    let m = exporter.metrics().await;
    assert_eq!(value(&m, "veeam_restore_probe_content_max_age_seconds", &[("probe", "fresh")]), Some(26.0 * 3600.0));

    // The VM's task stopped writing (or the backup captured old data): 30 h old.
    sim.set_guest_file("canary-win01", "C:/canary/stamp.txt", &written(30));
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "fresh"), ("reason", "stale_content")], |v| {
            v >= 1.0
        })
        .await;
    let age =
        value(&exporter.metrics().await, "veeam_restore_probe_content_age_seconds", &[("probe", "fresh")]).unwrap();
    assert!(age > 29.0 * 3600.0, "{age}");
    let page = reqwest::get(exporter.url("/")).await.unwrap().text().await.unwrap();
    assert!(page.contains("more than max_age 1d2h"), "the landing page says why");

    // Unix seconds work too; garbage is a verification failure, not a panic.
    let unix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() - 60;
    sim.set_guest_file("canary-win01", "C:/canary/stamp.txt", &unix.to_string());
    let probe = probe.replace("rfc3339", "unix");
    setup.write_config(&sim.api_url, &probe);
    reload(&exporter).await;
    exporter.wait_metric("veeam_restore_probe_content_age_seconds", &[("probe", "fresh")], |v| v < 600.0).await;
    sim.set_guest_file("canary-win01", "C:/canary/stamp.txt", "not a time");
    exporter
        .wait_metric("veeam_restore_probe_failures_total", &[("probe", "fresh"), ("reason", "verify_failed")], |v| {
            v >= 1.0
        })
        .await;
    sim.shutdown().await;
}

/// `--log.file` (the Windows service's log): lines are appended to the file, none go to stderr,
/// and a file that cannot be opened stops the start with one line naming the flag.
#[tokio::test(flavor = "multi_thread")]
async fn log_lines_go_to_the_log_file_when_asked() {
    let sim = start_sim().await;
    let setup = Setup::new(&sim.api_url, "      - { name: a, kind: mount, vm: canary-win01, interval: 1h }\n");
    let log = setup.dir.path().join("logs/exporter.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, "an earlier line\n").unwrap();
    let config = format!("--config.file={}", setup.config_path().display());
    let storage = format!("--storage.path={}", setup.dir.path().join("state").display());
    let child = Command::new(BIN)
        .args([&config, &storage, &format!("--log.file={}", log.display()), "--web.listen-address=127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(Duration::from_secs(30), "a probe result in the log file", || async {
        text().contains("probe succeeded").then_some(())
    })
    .await;
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let logged = text();
    assert!(logged.starts_with("an earlier line\nts=") && logged.contains("msg=Stopped"), "{logged}");

    let (code, stderr) = run(&[&config, &storage, &format!("--log.file={}", log.parent().unwrap().display())]);
    assert_eq!(code, 1);
    assert!(stderr.trim().lines().count() == 1 && stderr.starts_with("--log.file: "), "{stderr}");
    sim.shutdown().await;
}

/// `--demo` shows everything: every metric the dashboard and the alerts use appears in its
/// `/metrics` once each demo probe ran (failure counters aside: they need failures).
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_shows_every_metric_the_dashboard_and_alerts_use() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("state");
    let exporter =
        crate::support::exporter::Exporter::start_with(&["--demo", &format!("--storage.path={}", storage.display())])
            .await;
    let probes = [
        "canary-mount",
        "canary-file",
        "canary-stamp",
        "canary-replica",
        "canary-catalog",
        "vbr-mount",
        "vbr-file",
        "vbr-restore",
        "vbr-infected",
    ];
    for probe in probes {
        exporter.wait_metric("veeam_restore_probe_success", &[("probe", probe)], |v| v == 1.0).await;
    }
    exporter.wait_metric("veeam_restore_watch_last_success_timestamp_seconds", &[], |v| v > 0.0).await;
    let text = exporter.metrics().await;
    let lazy = ["veeam_restore_probe_failures_total", "veeam_restore_logon_failures_total"];
    let missing: Vec<String> = crate::monitoring::used_metrics()
        .into_iter()
        .filter(|m| !lazy.contains(&m.as_str()))
        .filter(|m| !text.lines().any(|l| l.starts_with(&format!("{m}{{")) || l.starts_with(&format!("{m} "))))
        .collect();
    assert!(missing.is_empty(), "the demo does not show {missing:?}");
}
