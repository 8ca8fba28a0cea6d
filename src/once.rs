//! `--probe.once TARGET/PROBE`: one run of one probe in the foreground, for the first hour with
//! a new server and for "did my fix work?" at 3 a.m.
//!
//! It is a probe run like a scheduled one: the same records in `--storage.path` before any
//! mount, the same cleanup before and after, the same log-off rules. So it takes the state
//! directory's lock, and refuses while a running service holds it: two processes following up
//! the same records would take each other's mounts in flight for orphans.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{Config, Target};
use crate::duration;
use crate::history::History;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::platform::{Event, Signals};
use crate::probe::{Api, Spec};
use crate::scheduler::{Shared, run_once};
use crate::target::TargetRuntime;

/// The exit code when the probe could not run at all (bad argument, state directory in use).
const COULD_NOT_RUN: u8 = 2;

/// Runs `which` (`TARGET/PROBE`) once and returns the exit code: 0 when the probe succeeded, 1
/// when it failed, 2 when it could not run.
pub async fn run(config: &Config, which: &str, storage: &Path) -> ExitCode {
    let Some((target, probe)) = find(config, which) else {
        let known: Vec<String> = config
            .targets
            .iter()
            .flat_map(|t| t.probes.iter().map(move |p| format!("{}/{}", t.name, p.name)))
            .collect();
        eprintln!("--probe.once {which:?}: no such probe; the configuration has: {}", known.join(", "));
        return ExitCode::from(COULD_NOT_RUN);
    };
    let ledger = match Ledger::open(storage) {
        Ok(ledger) => ledger,
        Err(e) => {
            eprintln!("--storage.path: {e}");
            return ExitCode::from(COULD_NOT_RUN);
        }
    };
    let _lock = match ledger.lock() {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("--probe.once refuses to run: {e}");
            return ExitCode::from(COULD_NOT_RUN);
        }
    };
    let metrics = Arc::new(Metrics::new());
    let shared = Shared::new(metrics.clone(), Arc::new(History::default()), ledger.clone());
    let runtime = TargetRuntime::new(target.clone(), metrics, ledger, Arc::default());
    let api = match target.api {
        Api::Em => "EM",
        Api::Vbr => "VBR",
    };
    println!(
        "{}/{}: {} of VM {} through {api} at {}",
        target.name,
        probe.name,
        probe.kind.owner(),
        probe.vm,
        target.url
    );

    let run = run_once(&runtime, probe, &shared);
    tokio::pin!(run);
    let report = match Signals::install() {
        Ok(mut signals) => loop {
            tokio::select! {
                report = &mut run => break report,
                event = signals.next() => if event == Event::Stop && !shared.shutdown.is_cancelled() {
                    eprintln!("stopping: the run skips what is left and unmounts");
                    shared.shutdown.cancel();
                },
            }
        },
        Err(_) => run.await,
    };
    for (phase, took) in &report.phases {
        println!("  {:<16} {:>9}", phase.as_str(), seconds(*took));
    }
    let code = match &report.outcome {
        Ok(None) => {
            println!("✔ succeeded in {}", seconds(report.duration));
            ExitCode::SUCCESS
        }
        Ok(Some(note)) => {
            println!("✔ succeeded in {}, with a warning: {note}", seconds(report.duration));
            ExitCode::SUCCESS
        }
        Err((reason, message)) => {
            println!("✘ failed after {} (reason {reason}): {message}", seconds(report.duration));
            ExitCode::FAILURE
        }
    };
    if let Some(cleanup) = &report.cleanup_error {
        println!("✘ cleanup: {cleanup}");
    }
    // Follows up anything left (this run's or an earlier process's), then logs off unless a
    // mount that could not be deleted still needs the session: its record stays for the service.
    runtime.logoff().await;
    let left = runtime.ledger.all::<crate::cleanup::MountRecord>(&target.name).len()
        + runtime.ledger.all::<crate::cleanup::FlrRecord>(&target.name).len();
    if left > 0 {
        println!(
            "✘ {left} mount(s) could not be removed yet; their records stay in {} for the next run or the service",
            storage.display()
        );
    }
    code
}

/// The probe `TARGET/PROBE` names. Names may themselves contain `/`, so every split is tried.
fn find<'c>(config: &'c Config, which: &str) -> Option<(&'c Target, &'c Spec)> {
    config.targets.iter().find_map(|t| {
        let probe = which.strip_prefix(t.name.as_str())?.strip_prefix('/')?;
        t.probes.iter().find(|p| p.name == probe).map(|p| (t, p))
    })
}

fn seconds(d: std::time::Duration) -> String {
    if d.as_secs() >= 60 { duration::format(d) } else { format!("{:.3}s", d.as_secs_f64()) }
}
