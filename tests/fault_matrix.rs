//! Every fault the simulator offers, injected once into every phase of every probe kind, against
//! the real exporter binary. For each cell: the run ends (success or a failure with a reason), the
//! next clean run succeeds, and afterwards no mount is left that a live session owns, no logon
//! session is left but the current one, and a mount an expired session left behind is reported
//! as unresolved. Runs are started with `POST /-/probe`, so nothing depends on timing.
//! A second test sends SIGTERM while each phase's request is in flight: the exporter exits
//! cleanly, leaves no mount a live session owns, and the next start's run is clean.
//! `cargo test fault_matrix -- --nocapture` prints the matrices.

use std::time::Duration;

use veeam_restore_exporter::sim::Call;
use veeam_restore_exporter::sim::{Fault, FaultKind, SimServer};

use crate::support::exporter::{Exporter, Setup, value};
use crate::support::matrix::{self, run};
use crate::support::{eventually, start_sim};

/// The request-level faults, each applied to the one call of a phase.
fn request_faults() -> Vec<(&'static str, FaultKind)> {
    let status = |status| FaultKind::Status { status, message: None };
    vec![
        ("500", status(500)),
        ("503", status(503)),
        ("401", status(401)),
        ("404", status(404)),
        ("reset", FaultKind::Reset {}),
        ("malformed", FaultKind::Malformed {}),
        // Beyond the 5 s request timeout of the test configuration.
        ("stall", FaultKind::Latency { ms: 6_000 }),
        ("expire", FaultKind::ExpireSession {}),
    ]
}

/// Faults of the tasks a call creates.
fn task_faults() -> Vec<(&'static str, FaultKind)> {
    vec![("task_fail", FaultKind::TaskFail { message: None }), ("task_stuck", FaultKind::TaskStuck {})]
}

struct Kind {
    probe: &'static str,
    yaml: &'static str,
    /// `(phase, the call that phase makes, whether it creates a task)`, in the kind's order.
    phases: Vec<(&'static str, Call, bool)>,
}

/// The simulator call a phase of a kind makes, and whether it creates a task: the matrix's own
/// knowledge of EM, kept apart from the exporter's code.
fn call_of(probe: &str, phase: &str) -> (Call, bool) {
    match (probe, phase) {
        (_, "lookup") => (Call::Query, false),
        (_, "mount") => (Call::MountCreate, true),
        ("mount", "browse") => (Call::MountBrowse, false),
        ("catalog", "browse") => (Call::CatalogBrowse, true),
        ("download", "restore") => (Call::FileRestore, true),
        ("catalog", "restore") => (Call::CatalogRestore, true),
        (_, "restore_session") => (Call::RestoreSession, false),
        (_, "download") => (Call::Download, false),
        (_, "unmount") => (Call::MountDelete, false),
        _ => panic!("the fault matrix has no call for phase {phase} of the {probe} probe: add it to call_of"),
    }
}

/// The rows: every phase of every kind, in the order the exporter's kinds list them, so a new
/// kind or phase gets its row or fails here until it has one.
fn kinds() -> Vec<Kind> {
    let kinds = [
        ("mount", "kind: mount, vm: canary-win01"),
        ("download", "kind: file_restore, mode: download, vm: canary-win01, path: C:/canary/canary.txt"),
        ("catalog", "kind: file_restore, mode: catalog, vm: canary-win01, path: C:/canary/canary.txt"),
    ];
    kinds
        .into_iter()
        .map(|(probe, yaml)| {
            let config = format!(
                "targets:\n  - name: t\n    url: https://em:9398/api/\n    username: u\n    password_env: P\n    \
                 probes:\n      - {{ name: p, {yaml}, interval: 1h }}\n"
            );
            let config = veeam_restore_exporter::config::parse(&config, std::path::Path::new("/")).unwrap();
            let phases = config.targets[0].probes[0].kind.phases();
            let phases = phases
                .iter()
                .map(|phase| {
                    let (call, creates_task) = call_of(probe, phase.as_str());
                    (phase.as_str(), call, creates_task)
                })
                .collect();
            Kind { probe, yaml, phases }
        })
        .collect()
}

/// Short step timeouts for the kind's phases; unmount retries need longer, and so does a
/// restore session that runs for a while on its own.
fn steps_for(kind: &Kind) -> String {
    let steps: Vec<String> = kind
        .phases
        .iter()
        .map(|(phase, _, _)| {
            let timeout = match *phase {
                "unmount" => "12s",
                "restore_session" => "5s",
                _ => "3s",
            };
            format!("{phase}: {timeout}")
        })
        .collect();
    format!("step_timeouts: {{ {} }}", steps.join(", "))
}

/// The outcomes a cell may have: `ok` or the failure reason.
fn expected(row: &str, fault: &str) -> &'static [&'static str] {
    let phase = row.split_once('/').map_or(row, |(_, p)| p);
    // Before the run asked EM to create anything, a 401 means "log on again", not a failure.
    let before_changes = matches!(row, "mount/lookup" | "mount/mount" | "download/lookup" | "download/mount")
        || matches!(row, "catalog/lookup" | "catalog/browse");
    match (phase, fault) {
        ("unmount", "401" | "expire") => &["unmount_failed"],
        // Retried within the run until the unmount step timeout.
        ("unmount", _) => &["ok"],
        // Restore-session polls are retried; a 404 or 401 ends them.
        ("restore_session", "500" | "503" | "reset" | "malformed") => &["ok"],
        (_, "401" | "expire") if before_changes => &["ok"],
        (_, "401" | "expire") => &["session_expired"],
        (_, "500" | "503") => &["server_error"],
        (_, "404") => &["not_found"],
        (_, "reset") => &["transport"],
        // This probe checks no size or checksum: a cut file passes (configure them!).
        ("download", "malformed") => &["ok"],
        (_, "malformed") => &["decode"],
        // The request timeout, or the step's own deadline while polling.
        (_, "stall") => &["timeout", "step_timeout"],
        (_, "task_fail") => &["task_failed"],
        (_, "task_stuck") => &["step_timeout"],
        (_, "result_failed") => &["restore_failed"],
        (_, "result_warning") => &["ok"],
        _ => &[],
    }
}

/// The exporter's configuration for one probe kind: an hour's interval (runs are started by
/// hand) and short step timeouts.
fn setup_for(kind: &Kind, sim: &SimServer) -> Setup {
    let probe =
        format!("      - {{ name: {}, {}, interval: 1h, timeout: 1m, {} }}\n", kind.probe, kind.yaml, steps_for(kind));
    Setup::with(&sim.api_url, &probe, "canary", "10m")
}

/// Clean runs until every record is resolved (bounded): a mount whose request answer was lost
/// shows up only when its task finishes, and the next cleanup deletes it. Each must succeed.
async fn clean_runs(exporter: &Exporter, setup: &Setup, probe: &str, cell: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        assert_eq!(run(exporter, "sim", probe).await, "ok", "{cell}: a clean run fails");
        if setup.records() == 0 || std::time::Instant::now() > deadline {
            break;
        }
    }
}

/// After the cell's run and a clean one: nothing a live session owns is mounted, at most the
/// current session is alive, and a mount of an expired session was reported, then released as
/// an operator would. Returns a mark for the matrix when something had to be released.
async fn check_clean(exporter: &Exporter, sim: &SimServer, probe: &str) -> &'static str {
    let state = sim.state();
    let live = state.mounts.iter().filter(|m| m.session_alive).count();
    assert_eq!(live, 0, "{probe}: a mount of a live session is left: {:?}", state.mounts);
    let alive = state.sessions.iter().filter(|s| s.alive).count();
    let logons: Vec<_> = sim.requests().into_iter().filter(|r| r.endpoint == Some(Call::Logon)).collect();
    assert!(alive <= 1, "{probe}: {alive} live logon sessions; logons {logons:?}\n{}", exporter.logs());
    if state.mounts.is_empty() {
        return "";
    }
    exporter.wait_metric("veeam_restore_orphaned_mounts", &[("state", "unresolved")], |v| v >= 1.0).await;
    sim.release_orphans();
    "*"
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_in_every_phase_leaves_nothing_behind() {
    let _heavy = crate::support::one_heavy_test_at_a_time().await;
    let mut matrix: Vec<(String, String, String)> = Vec::new();
    for kind in kinds() {
        let sim = start_sim().await;
        let setup = setup_for(&kind, &sim);
        let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
        exporter.wait_metric("veeam_restore_probe_runs_total", &[("probe", kind.probe)], |v| v >= 1.0).await;
        for &(phase, endpoint, creates_task) in &kind.phases {
            let mut faults = request_faults();
            if creates_task {
                faults.extend(task_faults());
            }
            if endpoint == Call::CatalogRestore {
                faults.push(("result_failed", FaultKind::RestoreResult { result: "Failed".into() }));
                faults.push(("result_warning", FaultKind::RestoreResult { result: "Warning".into() }));
            }
            for (name, fault) in faults {
                sim.add_fault(Fault { endpoint: Some(endpoint), kind: fault, times: Some(1) });
                let outcome = run(&exporter, "sim", kind.probe).await;
                sim.clear_faults();
                clean_runs(&exporter, &setup, kind.probe, &format!("{}/{phase}/{name}", kind.probe)).await;
                let cell = format!("{}/{phase}/{name} ({outcome})", kind.probe);
                let row = format!("{}/{phase}", kind.probe);
                assert!(
                    expected(&row, name).contains(&outcome.as_str()),
                    "{cell}: expected {:?}",
                    expected(&row, name)
                );
                let mut mark = check_clean(&exporter, &sim, &cell).await;
                // A mount request whose answer was lost keeps its record (reported as retrying)
                // for a while, in case EM still creates the mount: nothing is left unreported.
                let records = setup.records() as f64;
                if mark.is_empty() && records > 0.0 {
                    let retrying =
                        value(&exporter.metrics().await, "veeam_restore_orphaned_mounts", &[("state", "retrying")]);
                    assert_eq!(retrying, Some(records), "{cell}: every record left is reported as retrying");
                    mark = "r";
                }
                matrix.push((format!("{}/{phase}", kind.probe), name.to_owned(), format!("{outcome}{mark}")));
            }
        }
        drop(exporter);
        sim.shutdown().await;
    }
    let table = matrix::table(&matrix, 24, 15);
    eprintln!(
        "{table}\n(* = a mount of an expired session, reported as unresolved, released by the operator; \
         r = the mount request's answer was lost: its record is kept and reported as retrying)"
    );
    assert!(matrix.len() >= 100, "{} cells", matrix.len());
}

/// SIGTERM while the phase's request is in flight (held 2 s by the simulator): the exporter
/// exits 0 within its grace period, logs the run as cancelled (not as a failure), leaves no mount
/// a live session owns and at most one live logon session; a new process on the same state
/// directory then runs cleanly and leaves nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_in_every_phase_leaves_nothing_behind() {
    let mut cells: Vec<String> = Vec::new();
    for kind in kinds() {
        let sim = start_sim().await;
        let setup = setup_for(&kind, &sim);
        for &(phase, endpoint, _) in &kind.phases {
            let cell = format!("{}/{phase}", kind.probe);
            // Shorter than every step timeout: the step itself would succeed.
            sim.add_fault(Fault { endpoint: Some(endpoint), kind: FaultKind::Latency { ms: 2_000 }, times: Some(1) });
            let mut exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
            // A restart never runs a probe early (durable schedule): ask for the run. On the
            // first start the run may have begun already; then this is refused, harmlessly.
            let url = exporter.url(&format!("/-/probe?target=sim&probe={}", kind.probe));
            let _ = reqwest::Client::new().post(&url).send().await;
            eventually(Duration::from_secs(30), &format!("{cell}: the request in flight"), || async {
                sim.faults().is_empty().then_some(())
            })
            .await;
            exporter.signal("TERM");
            let status = exporter.wait_exit(Duration::from_secs(40)).await;
            let logs = exporter.logs();
            assert!(status.success(), "{cell}: {status:?}\n{logs}");
            let failed = logs.lines().any(|l| l.contains("level=warn") && l.contains("probe failed"));
            assert!(!failed, "{cell}: a shutdown is not a probe failure\n{logs}");
            // The run either ended before the signal took effect or was cut short (at `info`).
            let run_end = if logs.contains("probe run cut short by shutdown") {
                "cancelled"
            } else if logs.contains("probe succeeded") {
                "finished"
            } else {
                panic!("{cell}: the run's end is not logged\n{logs}")
            };
            let state = sim.state();
            let live = state.mounts.iter().filter(|m| m.session_alive).count();
            assert_eq!(live, 0, "{cell}: a live session's mount survived SIGTERM: {:?}\n{logs}", state.mounts);
            let alive = state.sessions.iter().filter(|s| s.alive).count();
            assert!(alive <= 1, "{cell}: {alive} live logon sessions after SIGTERM");
            drop(exporter);

            let exporter = Exporter::start(&setup.config_path(), &setup.storage()).await;
            clean_runs(&exporter, &setup, kind.probe, &cell).await;
            let mark = check_clean(&exporter, &sim, &cell).await;
            cells.push(format!(
                "{cell:<24} run {run_end:<9} exit 0, 0 mounts, {alive} session(s) left; next start clean{mark}"
            ));
            drop(exporter);
        }
        sim.shutdown().await;
    }
    eprintln!("SIGTERM with the phase's request in flight:\n{}", cells.join("\n"));
    assert_eq!(cells.len(), kinds().iter().map(|k| k.phases.len()).sum::<usize>());
}
