//! `veeam-em-sim`: runs the simulated Enterprise Manager. Parses flags and hands over to
//! [`veeam_em_sim`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use veeam_em_sim::{self as sim, Quirk, SimConfig, Timings};

/// A simulated Veeam Backup Enterprise Manager REST API (`/api/`, XML and JSON), built from
/// Veeam's documentation: logon sessions that own their mounts and tasks, restore points, mounts,
/// file restores, the catalog (browse, then restore), tasks and restore sessions with their state
/// machines, fault injection and an admin API under `/sim/`. It behaves like a current EM
/// (v12/v13) unless a `--quirk` asks for an older or buggy one.
#[derive(Parser, Debug)]
#[command(
    name = "veeam-em-sim",
    version = concat!(env!("CARGO_PKG_VERSION"), " (imitates the Veeam Backup Enterprise Manager REST API, v1_7 as in EM 12 and 13)"),
    about,
    long_about
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9398")]
    listen: SocketAddr,
    /// Serve HTTPS with a self-signed certificate generated at start.
    #[arg(long)]
    tls: bool,
    /// Where to write the generated certificate (PEM), for clients to trust.
    #[arg(long = "tls.cert-file")]
    tls_cert_file: Option<PathBuf>,
    /// Inventory file (YAML): users, VMs, restore points, guest files. Built-in demo when absent.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// A fault to inject, e.g. `kind=status,status=503,endpoint=mount_create,times=1`. Repeatable.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// Idle time after which logon sessions expire.
    #[arg(long = "session-idle-timeout", value_parser = humantime::parse_duration, default_value = "15m")]
    session_idle_timeout: Duration,
    /// How long tasks stay Running.
    #[arg(long = "task-running", value_parser = humantime::parse_duration, default_value = "300ms")]
    task_running: Duration,
    /// How long tasks then stay OperationFinished.
    #[arg(long = "task-collect-lag", value_parser = humantime::parse_duration, default_value = "200ms")]
    task_collect_lag: Duration,
    /// Imitate a known EM deviation: `json-bom` (EM 9.5 started JSON bodies with a byte-order
    /// mark) or `camel-case-json` (the reported v13 regression: camelCase JSON keys). Repeatable.
    #[arg(long = "quirk", value_enum)]
    quirks: Vec<Quirk>,
    /// How long a catalog file restore session runs.
    #[arg(long = "restore-duration", value_parser = humantime::parse_duration, default_value = "2s")]
    restore_duration: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let inventory = match &args.inventory {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) => {
                eprintln!("veeam-em-sim: cannot read inventory {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let faults = match args.faults.iter().map(|f| sim::parse_fault_flag(f)).collect::<Result<Vec<_>, _>>() {
        Ok(faults) => faults,
        Err(e) => {
            eprintln!("veeam-em-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let config = SimConfig {
        listen: args.listen,
        tls: args.tls,
        tls_cert_file: args.tls_cert_file,
        inventory,
        timings: Timings {
            session_idle_timeout: args.session_idle_timeout,
            task_running: args.task_running,
            task_collect_lag: args.task_collect_lag,
            restore_duration: args.restore_duration,
        },
        faults,
        quirks: args.quirks,
    };
    let server = match sim::start(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("veeam-em-sim: {e}");
            return ExitCode::from(1);
        }
    };
    // Before the address is printed: whoever reads it may send SIGTERM at once.
    let stop = stop_signal();
    // One line on stdout with the address: scripts and tests read it to find a port-0 server.
    println!("veeam-em-sim listening on {}", server.api_url);
    if let Some(cert) = &server.cert_file {
        println!("veeam-em-sim certificate written to {}", cert.display());
    }
    stop.await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGTERM or Ctrl+C; the SIGTERM handler is installed when this is called, not when awaited.
#[cfg(unix)]
fn stop_signal() -> impl Future<Output = ()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
}

/// Windows has no SIGTERM: Ctrl+C (also what Wine delivers for SIGINT) stops the simulator.
#[cfg(windows)]
async fn stop_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
