//! The exporter process: flags, logging, start-up, reload and graceful shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::config::{self, Config};
use crate::history::History;
use crate::ledger::Ledger;
use crate::metrics::{Metrics, unix_seconds};
use crate::scheduler::{Generation, Shared};
use crate::web::{self, ReloadRequest, WebState};

/// Default port. Chosen to avoid Prometheus, Grafana, node/windows/blackbox exporters, the other
/// Veeam exporter (9247) and Veeam's own ports (9392, 9398, 9399, 9419).
pub const DEFAULT_PORT: u16 = 9731;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Proves Veeam restores work: scheduled canary mounts and file restores through the Veeam
/// Backup Enterprise Manager REST API, exported as Prometheus metrics.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
pub struct Flags {
    /// Address to listen on for the web interface and telemetry.
    #[arg(long = "web.listen-address", default_value_t = format!(":{DEFAULT_PORT}"))]
    pub listen_address: String,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics")]
    pub telemetry_path: String,
    /// Configuration file (YAML). Required unless --demo.
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,
    /// Validate the configuration file and exit (0 when valid).
    #[arg(long = "config.check")]
    pub config_check: bool,
    /// Directory for durable state: records of mounts in flight (they hold session tokens).
    #[arg(long = "storage.path", default_value = "data")]
    pub storage_path: PathBuf,
    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", default_value = "info", value_parser = ["debug", "info", "warn", "error"])]
    pub log_level: String,
    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,
    /// How long shutdown waits for running probes to unmount before exiting anyway.
    #[arg(long = "shutdown.grace-period", value_parser = humantime::parse_duration, default_value = "2m")]
    pub grace_period: Duration,
    /// Start the built-in simulated Enterprise Manager and probe it with a demo configuration.
    #[arg(long)]
    pub demo: bool,
}

fn init_logging(flags: &Flags) {
    use tracing_subscriber::prelude::*;
    let filter =
        tracing_subscriber::EnvFilter::new(format!("{},hyper=warn,reqwest=warn,rustls=warn,h2=warn", flags.log_level));
    let registry = tracing_subscriber::registry().with(filter);
    match flags.log_format {
        LogFormat::Logfmt => {
            // No `target=<module>` field: "target" means an EM in this exporter's logs.
            registry.with(tracing_logfmt::builder().with_target(false).layer().with_writer(std::io::stderr)).init()
        }
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_target(false).with_writer(std::io::stderr))
            .init(),
    }
}

/// `:9731` means all interfaces, as in Prometheus flags.
fn listen_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') { format!("0.0.0.0{s}") } else { s.to_owned() };
    std::net::ToSocketAddrs::to_socket_addrs(&full)
        .map_err(|e| format!("--web.listen-address {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--web.listen-address {s:?}: no address"))
}

/// Runs the exporter until SIGTERM or SIGINT. Returns the process exit code.
pub async fn run(mut flags: Flags) -> ExitCode {
    if flags.config_check {
        let Some(path) = &flags.config_file else {
            eprintln!("--config.check needs --config.file");
            return ExitCode::from(2);
        };
        return match config::load(path) {
            Ok(c) => {
                let probes: usize = c.targets.iter().map(|t| t.probes.len()).sum();
                println!("{}: OK ({} target(s), {probes} probe(s))", path.display(), c.targets.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    init_logging(&flags);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "Starting veeam-restore-exporter");

    // Keep the demo simulator alive for the life of the process.
    let _demo = if flags.demo {
        match start_demo(&flags.storage_path).await {
            Ok((sim, path)) => {
                flags.config_file = Some(path);
                Some(sim)
            }
            Err(e) => {
                tracing::error!(err = %e, "cannot start the demo");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let Some(config_file) = flags.config_file.clone() else {
        eprintln!("--config.file is required (or --demo to try the exporter against the built-in simulator)");
        return ExitCode::from(2);
    };
    let config = match config::load(&config_file) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(file = %config_file.display(), "invalid configuration");
            eprint!("{}: {e}", config_file.display());
            return ExitCode::FAILURE;
        }
    };
    let ledger = match Ledger::open(&flags.storage_path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(err = %e, "cannot open the state directory");
            return ExitCode::FAILURE;
        }
    };
    let address = match listen_address(&flags.listen_address) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(err = %e, "bad listen address");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(address).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %address, err = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };

    let metrics = Arc::new(Metrics::new());
    metrics.apply_config(&config, None);
    metrics.reload_success.set(1);
    metrics.reload_timestamp.set(unix_seconds(std::time::SystemTime::now()));
    let history = Arc::new(History::default());
    let shared = Arc::new(Shared::new(metrics.clone(), history.clone(), ledger));
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let state = Arc::new(WebState {
        metrics: metrics.clone(),
        history,
        config: RwLock::new(config.clone()),
        reload: reload_tx,
        telemetry_path: flags.telemetry_path.clone(),
    });
    let bound = listener.local_addr().unwrap_or(address);
    let server_stop = tokio_util::sync::CancellationToken::new();
    let server = {
        let stop = server_stop.clone();
        let app = web::router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await })
    };
    // Tests and scripts read this line to find a server started on port 0.
    tracing::info!(address = %bound, "Listening on");

    let mut generation = Generation::start(&config, &shared);
    let mut retiring = Vec::new();
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::hangup()), signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    loop {
        let reply = tokio::select! {
            _ = hup.recv() => None,
            Some(reply) = reload_rx.recv() => Some(reply),
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        let result = reload(&config_file, &state, &metrics);
        if let Ok(new) = &result {
            let old = std::mem::replace(&mut generation, Generation::start(new, &shared));
            let still_configured: Vec<String> = new.targets.iter().map(|t| t.name.clone()).collect();
            retiring.push(tokio::spawn(async move { old.finish(&still_configured).await }));
        }
        if let Some(reply) = reply {
            let _ = reply.send(result.map(drop));
        }
    }

    tracing::info!(grace_period = ?flags.grace_period, "Shutting down: stopping probes, unmounting, logging off");
    shared.shutdown.cancel();
    let drain = async {
        // Runs of retiring generations finish first: they may share the sessions logged off last.
        for r in retiring {
            let _ = r.await;
        }
        generation.finish(&[]).await;
    };
    if tokio::time::timeout(flags.grace_period, drain).await.is_err() {
        tracing::warn!("grace period over with probes still running; their mount records stay for the next start");
    }
    server_stop.cancel();
    let _ = server.await;
    tracing::info!("Stopped");
    ExitCode::SUCCESS
}

/// Loads the configuration again; on failure the old one stays in force.
fn reload(path: &Path, state: &WebState, metrics: &Metrics) -> Result<Arc<Config>, String> {
    match config::load(path) {
        Ok(new) => {
            let new = Arc::new(new);
            let old = std::mem::replace(&mut *state.config.write().unwrap_or_else(|p| p.into_inner()), new.clone());
            metrics.apply_config(&new, Some(&old));
            metrics.reload_success.set(1);
            metrics.reload_timestamp.set(unix_seconds(std::time::SystemTime::now()));
            tracing::info!(file = %path.display(), "configuration reloaded");
            Ok(new)
        }
        Err(e) => {
            metrics.reload_success.set(0);
            tracing::error!(file = %path.display(), err = %e.0.join("; "), "configuration reload failed; keeping the previous configuration");
            Err(e.to_string())
        }
    }
}

/// Starts the simulated EM in-process and writes a demo configuration and password for it
/// under `<storage>/demo/`.
async fn start_demo(storage: &Path) -> Result<(crate::sim::SimServer, PathBuf), String> {
    use sha2::Digest;
    use std::os::unix::fs::OpenOptionsExt;
    let timings = crate::sim::Timings {
        task_running: Duration::from_secs(1),
        task_collect_lag: Duration::from_millis(500),
        restore_duration: Duration::from_secs(6),
        ..crate::sim::Timings::default()
    };
    let sim = crate::sim::start(crate::sim::SimConfig { timings, ..crate::sim::SimConfig::default() }).await?;
    tracing::info!(url = %sim.api_url, "demo: simulated Enterprise Manager started");
    let dir = storage.join("demo");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, body: &str, mode: u32| -> Result<(), String> {
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, body.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    // The simulator's built-in account (see sim::DEFAULT_INVENTORY).
    write("password", "canary\n", 0o600)?;
    let sha = hex::encode(sha2::Sha256::digest(b"veeam-restore-exporter canary file\n"));
    let config = format!(
        r#"# Written by --demo: probes the built-in simulated Enterprise Manager.
targets:
  - name: demo
    url: {url}
    username: svc-canary
    password_file: password
    keepalive_interval: 30s
    poll_initial: 250ms
    poll_max: 2s
    max_concurrent_probes: 2
    probes:
      - name: canary-mount
        kind: mount
        vm: canary-win01
        interval: 20s
      - name: canary-file
        kind: file_restore
        mode: download
        vm: canary-win01
        path: C:/canary/canary.txt
        expected_sha256: {sha}
        interval: 20s
      - name: canary-catalog
        kind: file_restore
        mode: catalog
        vm: canary-win01
        path: C:/canary/canary.txt
        interval: 30s
"#,
        url = sim.api_url
    );
    write("config.yml", &config, 0o644)?;
    Ok((sim, dir.join("config.yml")))
}
