//! First contact with a server: `--preflight` (checks that mount nothing) and `--probe.once`
//! (one run now), run as the real binary against the simulators.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use veeam_restore_exporter::sim::{self, SimConfig, SimServer};

use crate::support::exporter::{BIN, Exporter};
use crate::support::fast_timings;

async fn em_sim(tls: bool) -> SimServer {
    sim::start(SimConfig { tls, timings: fast_timings(), ..SimConfig::default() }).await.expect("EM simulator starts")
}

async fn vbr_sim() -> veeam_vbr_sim::SimServer {
    let timings = veeam_vbr_sim::Timings {
        mount_duration: Duration::from_millis(200),
        task_duration: Duration::from_millis(400),
        ..veeam_vbr_sim::Timings::default()
    };
    veeam_vbr_sim::start(veeam_vbr_sim::SimConfig { tls: true, timings, ..Default::default() })
        .await
        .expect("VBR simulator starts")
}

/// One target's YAML. `ca_file` `None` trusts nothing extra; `password` is written to a file.
fn target(
    dir: &Path,
    name: &str,
    api: &str,
    url: &str,
    ca_file: Option<&Path>,
    password: &str,
    probes: &str,
) -> String {
    let password_file = dir.join(format!("{name}.password"));
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let tls = ca_file.map(|f| format!("    tls_config: {{ ca_file: {} }}\n", f.display())).unwrap_or_default();
    format!(
        "  - name: {name}\n    api: {api}\n    url: {url}\n    username: svc-canary\n    password_file: {}\n{tls}    \
         poll_initial: 50ms\n    poll_max: 200ms\n    request_timeout: 10s\n    probes:\n{probes}",
        password_file.display()
    )
}

fn write_config(dir: &Path, targets: &[String]) -> std::path::PathBuf {
    let path = dir.join("config.yml");
    std::fs::write(&path, format!("targets:\n{}", targets.concat())).unwrap();
    path
}

/// Runs the binary to its end (at most two minutes) and returns what it printed.
async fn run(args: &[String]) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command.args(args).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the command ends within two minutes")
        .expect("the command runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The lines printed under `target NAME`, up to the next target.
fn section(out: &str, name: &str) -> Vec<String> {
    let header = format!("target {name} (");
    out.lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| !l.starts_with("target ") && !l.starts_with("preflight:"))
        .map(str::to_owned)
        .collect()
}

const EM_PROBES: &str = "      - { name: mount, kind: mount, vm: canary-win01, interval: 1h }\n\
                         \x20     - { name: replica, kind: mount, vm: canary-win01, point: replica, interval: 1h }\n\
                         \x20     - { name: catalog, kind: file_restore, mode: original_location, vm: canary-win01, path: C:/canary/canary.txt, interval: 1h }\n\
                         \x20     - { name: download, kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/canary.txt, interval: 1h }\n";

const VBR_PROBES: &str = "      - { name: mount, kind: mount, vm: canary-win01, interval: 1h }\n\
                          \x20     - { name: download, kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/canary.txt, interval: 1h }\n";

#[tokio::test(flavor = "multi_thread")]
async fn preflight_against_the_simulators_passes_every_check_and_mounts_nothing() {
    let (em, vbr) = (em_sim(true).await, vbr_sim().await);
    let vbr_mounts_before = vbr.state().live_mounts().len();
    let dir = tempfile::tempdir().unwrap();
    // By name, so that DNS is checked too (the simulator's certificate names localhost).
    let by_name = em.api_url.replace("127.0.0.1", "localhost");
    let config = write_config(
        dir.path(),
        &[
            target(dir.path(), "em", "em", &by_name, em.cert_file.as_deref(), "canary", EM_PROBES),
            target(dir.path(), "vbr", "vbr", &vbr.url, vbr.cert_file.as_deref(), "canary", VBR_PROBES),
        ],
    );
    let out = run(&[format!("--config.file={}", config.display()), "--preflight".into()]).await;
    let text = stdout(&out);
    assert!(out.status.success(), "exit {:?}\n{text}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains('✘'), "{text}");
    let em_lines = section(&text, "em").join("\n");
    for expected in [
        "✔ DNS: localhost is ",
        "✔ TCP: ",
        "✔ TLS: the certificate is trusted with ca_file:",
        "✔ API: EM offers versions",
        "✔ logon: as svc-canary",
        "✔ probe mount: VM canary-win01: newest restore point",
        "✔ probe replica: VM canary-win01: newest replica point",
        "✔ probe catalog: VM canary-win01 is in the catalog, its newest restore point indexed",
        "– probe download: C:/canary/canary.txt not checked",
        "✔ logoff",
    ] {
        assert!(em_lines.contains(expected), "EM section lacks {expected:?}:\n{em_lines}");
    }
    // The newest backup point of canary-win01 is 2 hours old in the simulator's inventory.
    assert!(em_lines.contains("(2h old)"), "{em_lines}");
    let vbr_lines = section(&text, "vbr").join("\n");
    for expected in [
        "– DNS: not needed",
        "✔ TLS:",
        "✔ logon: as svc-canary",
        "✔ API: revision",
        "✔ probe mount: VM canary-win01",
        "✔ logout",
    ] {
        assert!(vbr_lines.contains(expected), "VBR section lacks {expected:?}:\n{vbr_lines}");
    }
    assert!(em.state().mounts.is_empty(), "preflight mounted nothing on EM");
    assert!(em.state().sessions.iter().all(|s| !s.alive), "preflight logged off: {:?}", em.state().sessions);
    assert_eq!(vbr.state().live_mounts().len(), vbr_mounts_before, "preflight mounted nothing on VBR");
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_failures_say_what_is_wrong_and_what_to_do() {
    let (em, vbr) = (em_sim(true).await, vbr_sim().await);
    let dir = tempfile::tempdir().unwrap();
    let mount = "      - { name: mount, kind: mount, vm: canary-win01, interval: 1h }\n";
    let unknown = "      - { name: typo, kind: mount, vm: canary-wni01, interval: 1h }\n";
    let ca = em.cert_file.as_deref();
    let config = write_config(
        dir.path(),
        &[
            target(dir.path(), "untrusted", "em", &em.api_url, None, "canary", mount),
            target(dir.path(), "wrong-password", "em", &em.api_url, ca, "canary!", mount),
            target(dir.path(), "unknown-vm", "em", &em.api_url, ca, "canary", unknown),
            target(dir.path(), "vbr-unknown-vm", "vbr", &vbr.url, vbr.cert_file.as_deref(), "canary", unknown),
            target(dir.path(), "refused", "em", "http://127.0.0.1:1/api/", None, "canary", mount),
        ],
    );
    let out = run(&[format!("--config.file={}", config.display()), "--preflight".into()]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("preflight: 5 check(s) failed"), "{text}");

    let failed = |name: &str| -> String {
        let lines = section(&text, name);
        let failures: Vec<&String> = lines.iter().filter(|l| l.contains('✘')).collect();
        assert_eq!(failures.len(), 1, "one failed check for {name}:\n{}", lines.join("\n"));
        lines.join("\n")
    };
    let untrusted = failed("untrusted");
    assert!(
        untrusted.contains("✘ TLS: the certificate is not trusted (invalid peer certificate: UnknownIssuer)"),
        "{untrusted}"
    );
    assert!(untrusted.contains("(self-signed)") && untrusted.contains("SHA-256 "), "{untrusted}");
    assert!(untrusted.contains("names localhost, 127.0.0.1"), "{untrusted}");
    assert!(untrusted.contains("set ca_file: to that file"), "{untrusted}");
    assert!(!untrusted.contains("logon"), "no logon without a trusted certificate:\n{untrusted}");

    let wrong = failed("wrong-password");
    assert!(wrong.contains("✘ logon as svc-canary"), "{wrong}");
    assert!(wrong.contains("Active Directory") && wrong.contains("EM role"), "{wrong}");

    let unknown_vm = failed("unknown-vm");
    assert!(
        unknown_vm.contains("✘ probe typo: EM knows no restore point of a VM named \"canary-wni01\""),
        "{unknown_vm}"
    );
    assert!(unknown_vm.contains("✔ logoff"), "{unknown_vm}");

    let vbr_unknown = failed("vbr-unknown-vm");
    assert!(vbr_unknown.contains("✘ probe typo: VBR knows no restore point"), "{vbr_unknown}");

    let refused = failed("refused");
    assert!(refused.contains("✘ TCP: cannot connect"), "{refused}");
    assert!(refused.contains("port 1 open"), "{refused}");

    let logons = em.requests().iter().filter(|r| r.path.contains("sessionMngr")).count();
    assert_eq!(logons, 2, "one logon per target that got that far, the wrong password tried once");
}

fn once_args(config: &Path, storage: &Path, which: &str) -> Vec<String> {
    vec![
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", storage.display()),
        format!("--probe.once={which}"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_once_runs_one_probe_prints_its_phases_and_leaves_nothing_behind() {
    let (em, vbr) = (em_sim(false).await, vbr_sim().await);
    let vbr_mounts_before = vbr.state().live_mounts().len();
    let dir = tempfile::tempdir().unwrap();
    let em_probes = "      - { name: download, kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/canary.txt, interval: 1h }\n\
                     \x20     - { name: typo, kind: mount, vm: canary-wni01, interval: 1h }\n";
    let config = write_config(
        dir.path(),
        &[
            target(dir.path(), "em", "em", &em.api_url, None, "canary", em_probes),
            target(dir.path(), "vbr", "vbr", &vbr.url, vbr.cert_file.as_deref(), "canary", VBR_PROBES),
        ],
    );
    let storage = dir.path().join("state");

    let out = run(&once_args(&config, &storage, "em/download")).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for phase in ["lookup", "mount", "download", "unmount"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(phase)), "phase {phase} printed:\n{text}");
    }
    assert!(text.contains("✔ succeeded in"), "{text}");
    assert!(em.state().mounts.is_empty(), "unmounted");
    assert!(em.state().sessions.iter().all(|s| !s.alive), "logged off");

    let out = run(&once_args(&config, &storage, "vbr/download")).await;
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(vbr.state().live_mounts().len(), vbr_mounts_before, "the VBR mount is gone");

    let out = run(&once_args(&config, &storage, "em/typo")).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("✘ failed") && text.contains("canary-wni01"), "{text}");

    let out = run(&once_args(&config, &storage, "em/nothing")).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such probe") && err.contains("em/download, em/typo, vbr/mount, vbr/download"), "{err}");

    let records = std::fs::read_dir(&storage)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().filter_map(Result::ok).collect::<Vec<_>>())
        .count();
    assert_eq!(records, 0, "no record left in the state directory");
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_once_refuses_while_a_service_holds_the_state_directory() {
    let em = em_sim(false).await;
    let dir = tempfile::tempdir().unwrap();
    let probes = "      - { name: mount, kind: mount, vm: canary-win01, interval: 24h }\n";
    let config = write_config(dir.path(), &[target(dir.path(), "em", "em", &em.api_url, None, "canary", probes)]);
    let storage = dir.path().join("state");
    let mut service = Exporter::start(&config, &storage).await;

    let out = run(&once_args(&config, &storage, "em/mount")).await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refuses to run") && err.contains("in use by another veeam-restore-exporter"), "{err}");

    service.signal("TERM");
    service.wait_exit(Duration::from_secs(30)).await;
    let out = run(&once_args(&config, &storage, "em/mount")).await;
    assert!(out.status.success(), "once the service stopped, it runs:\n{}", stdout(&out));
}
