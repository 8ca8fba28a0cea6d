//! The exporter process: flags, logging, start-up, reload and graceful shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clap::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use axum_server::tls_rustls::RustlsConfig;

use crate::config::{self, Config};
use crate::duration;
use crate::exposition;
use crate::history::History;
use crate::ledger::{Ledger, StateLock};
use crate::logging::{self, LogFormat};
use crate::metrics::{Metrics, unix_seconds};
use crate::platform::{self, Event, Signals};
use crate::scheduler::{Generation, Shared};
use crate::web::{self, ReloadRequest, WebState};
use crate::web_config::WebConfig;

/// Default port. Chosen to avoid Prometheus, Grafana, node/windows/blackbox exporters, the other
/// Veeam exporter (9247) and Veeam's own ports (9392, 9398, 9399, 9419).
pub const DEFAULT_PORT: u16 = 9731;

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
    /// Web configuration file (exporter-toolkit format): TLS and basic authentication.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,
    /// Enable POST /-/reload (SIGHUP always reloads).
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// Configuration file (YAML). Required unless --demo; on Windows the default is
    /// %ProgramData%\veeam-restore-exporter\config.yml.
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,
    /// Reload the configuration file when its contents change, checked this often (Prometheus
    /// duration; 0 turns it off). An invalid edit keeps the running configuration.
    #[arg(long = "config.auto-reload-interval", default_value = "0s")]
    pub auto_reload_interval: String,
    /// Validate the configuration file and exit (0 when valid).
    #[arg(long = "config.check")]
    pub config_check: bool,
    /// Directory for durable state: records of mounts in flight and of logon sessions (they
    /// hold session tokens), and the schedule.
    #[arg(long = "storage.path", default_value_os_t = platform::default_storage_path())]
    pub storage_path: PathBuf,
    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", default_value = "info", value_parser = ["debug", "info", "warn", "error"])]
    pub log_level: String,
    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,
    /// Append log lines to this file instead of writing them to standard error (a Windows
    /// service has no console; there it defaults to
    /// %ProgramData%\veeam-restore-exporter\veeam-restore-exporter.log).
    #[arg(long = "log.file")]
    pub log_file: Option<PathBuf>,
    /// How long shutdown waits for running probes to unmount before exiting anyway (Prometheus
    /// duration syntax).
    #[arg(long = "shutdown.grace-period", default_value = "2m")]
    pub grace_period: String,
    /// Start the built-in simulated Enterprise Manager and probe it with a demo configuration.
    #[arg(long)]
    pub demo: bool,
    /// Check every target without mounting or restoring anything (DNS, TCP, TLS, logon, API
    /// versions, each probe's VM and newest restore point), print one line per check, log off
    /// and exit: 0 when every check passed, 1 otherwise.
    #[arg(long, conflicts_with_all = ["config_check", "probe_once"])]
    pub preflight: bool,
    /// Run one probe now (TARGET/PROBE), print its phases, clean up and exit: 0 when it
    /// succeeded, 1 when it failed, 2 when it could not run (e.g. a running service holds
    /// --storage.path).
    #[arg(long = "probe.once", value_name = "TARGET/PROBE", conflicts_with = "config_check")]
    pub probe_once: Option<String>,
    /// Run as the Windows service `veeam-restore-exporter` (the MSI's service passes it).
    #[cfg(windows)]
    #[arg(long = "windows-service")]
    pub windows_service: bool,
}

/// Flag values that needed more than parsing, checked once before anything starts.
struct Checked {
    address: SocketAddr,
    grace_period: Duration,
    auto_reload: Option<Duration>,
    web_config: Option<WebConfig>,
}

/// Checks every flag; the error is one line that names the flag.
fn check_flags(flags: &Flags) -> Result<Checked, String> {
    let address = listen_address(&flags.listen_address)?;
    let path = &flags.telemetry_path;
    let bad_path = |why: &str| Err(format!("--web.telemetry-path {path:?}: {why}"));
    if !path.starts_with('/') {
        return bad_path("must start with /");
    }
    if crate::web::RESERVED_PATHS.contains(&path.as_str()) || path.starts_with("/-/") {
        return bad_path("clashes with the exporter's own endpoints (/, /-/…)");
    }
    if path.len() > 1 && path.ends_with('/') || path.contains("//") {
        return bad_path("must not end in / or contain //");
    }
    if !path.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~')) {
        return bad_path("may contain only A-Z a-z 0-9 / - _ . ~");
    }
    let grace_period = duration::parse(&flags.grace_period).map_err(|e| format!("--shutdown.grace-period: {e}"))?;
    let auto_reload =
        duration::parse(&flags.auto_reload_interval).map_err(|e| format!("--config.auto-reload-interval: {e}"))?;
    let auto_reload = (!auto_reload.is_zero()).then_some(auto_reload);
    let web_config = match &flags.web_config_file {
        None => None,
        Some(file) => {
            let config = WebConfig::load(file).map_err(|e| format!("--web.config.file: {e}"))?;
            config.rustls().map_err(|e| format!("--web.config.file {}: {e}", file.display()))?;
            Some(config)
        }
    };
    if flags.config_file.is_none() && !flags.demo {
        return Err("--config.file is required (or --demo to try the exporter against the built-in simulator)".into());
    }
    Ok(Checked { address, grace_period, auto_reload, web_config })
}

/// `:9731` means all interfaces, as in Prometheus flags.
fn listen_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') { format!("0.0.0.0{s}") } else { s.to_owned() };
    std::net::ToSocketAddrs::to_socket_addrs(&full)
        .map_err(|e| format!("--web.listen-address {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--web.listen-address {s:?}: no address"))
}

/// `--config.check`: validates the file and reports.
fn config_check(flags: &Flags) -> ExitCode {
    let Some(path) = &flags.config_file else {
        eprintln!("--config.check needs --config.file");
        return ExitCode::FAILURE;
    };
    match config::load(path) {
        Ok(c) => {
            let probes: usize = c.targets.iter().map(|t| t.probes.len()).sum();
            println!("{}: OK ({} target(s), {probes} probe(s))", path.display(), c.targets.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `--preflight` and `--probe.once`: talk to the servers in the foreground, print to standard
/// output, log (warnings and up, unless `--log.level` says otherwise) to standard error.
async fn first_contact(mut flags: Flags) -> ExitCode {
    let level = if flags.log_level == "info" { "warn" } else { flags.log_level.as_str() };
    if let Err(e) = logging::init(level, flags.log_format, flags.log_file.as_deref()) {
        eprintln!("--log.file: {e}");
        return ExitCode::FAILURE;
    }
    // With --demo, against the built-in simulators: a way to see what these print.
    let _demo = match start_demo(&mut flags).await {
        Ok(demo) => demo,
        Err(e) => {
            eprintln!("cannot start the demo: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(path) = &flags.config_file else {
        eprintln!("--config.file is required");
        return ExitCode::from(2);
    };
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match &flags.probe_once {
        Some(which) => crate::once::run(&config, which, &flags.storage_path).await,
        None => crate::preflight::run(&config).await,
    }
}

/// Parses the command line: `--help` and `--version` print and exit 0; any other problem is one
/// line naming the flag, and exit code 1.
pub fn parse_flags() -> Result<Flags, ExitCode> {
    match Flags::try_parse() {
        Ok(flags) => Ok(flags),
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("invalid command line"));
            Err(ExitCode::FAILURE)
        }
    }
}

/// The process: a Tokio runtime running [`run`], or with `--windows-service` the service
/// control manager's dispatcher, which runs [`run_until`] itself.
pub fn main(flags: Flags) -> ExitCode {
    #[cfg(windows)]
    if flags.windows_service && !flags.config_check {
        return platform::service::run(flags);
    }
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run(flags)),
        Err(e) => {
            eprintln!("cannot start the Tokio runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the exporter until SIGTERM or SIGINT (on Windows: Ctrl+C, Ctrl+Break, closing the
/// console, system shutdown). Returns the process exit code.
pub async fn run(flags: Flags) -> ExitCode {
    run_until(flags, CancellationToken::new()).await
}

/// [`run`], also shutting down gracefully when `stop` is cancelled (the Windows service's stop).
pub async fn run_until(mut flags: Flags, stop: CancellationToken) -> ExitCode {
    if flags.config_file.is_none() && !flags.demo {
        flags.config_file = platform::default_config_file();
    }
    if flags.config_check {
        return config_check(&flags);
    }
    if flags.preflight || flags.probe_once.is_some() {
        return first_contact(flags).await;
    }
    // Logging first, so that every start-up error comes in the chosen format.
    if let Err(e) = logging::init(&flags.log_level, flags.log_format, flags.log_file.as_deref()) {
        eprintln!("--log.file: {e}");
        return ExitCode::FAILURE;
    }
    let checked = match check_flags(&flags).and_then(|c| platform::secure_defaults(&flags).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "Starting veeam-restore-exporter");

    // Keep the demo simulator alive for the life of the process.
    let _demo = match start_demo(&mut flags).await {
        Ok(demo) => demo,
        Err(e) => {
            tracing::error!(err = %e, "cannot start the demo");
            return ExitCode::FAILURE;
        }
    };
    match Exporter::start(&flags, checked).await {
        Ok(exporter) => exporter.serve_until_signal(stop).await.drain().await,
        Err(e) => {
            tracing::error!(err = %e, "cannot start");
            ExitCode::FAILURE
        }
    }
}

/// A started exporter: web server, scheduler generations, and what reloads need.
struct Exporter {
    /// Keeps `--probe.once` (or a second service) off the records while this process runs.
    _state_lock: StateLock,
    config_file: PathBuf,
    grace_period: Duration,
    /// `--config.auto-reload-interval`, and the checksum of the file as last loaded or tried.
    auto_reload: Option<Duration>,
    config_checksum: Option<[u8; 32]>,
    web_config_file: Option<PathBuf>,
    tls: Option<RustlsConfig>,
    state: Arc<WebState>,
    shared: Arc<Shared>,
    generation: Generation,
    retiring: Vec<tokio::task::JoinHandle<()>>,
    server: axum_server::Handle<SocketAddr>,
    server_task: tokio::task::JoinHandle<std::io::Result<()>>,
    reloads: mpsc::Receiver<ReloadRequest>,
}

impl Exporter {
    /// Loads the configuration, opens the state directory, listens, starts the probes.
    async fn start(flags: &Flags, checked: Checked) -> Result<Exporter, String> {
        let config_file = flags.config_file.clone().ok_or("--config.file is required")?;
        let config = config::load(&config_file).map_err(|e| {
            for problem in &e.0 {
                tracing::error!(file = %config_file.display(), problem = %problem, "invalid configuration");
            }
            format!("invalid configuration {} ({} problem(s))", config_file.display(), e.0.len())
        })?;
        let config = Arc::new(config);
        let ledger = Ledger::open(&flags.storage_path).map_err(|e| format!("--storage.path: {e}"))?;
        let state_lock = ledger.lock().map_err(|e| format!("--storage.path: {e}"))?;
        let listener = std::net::TcpListener::bind(checked.address)
            .map_err(|e| format!("cannot listen on {}: {e}", checked.address))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        no_delay(&listener);
        let bound = listener.local_addr().map_err(|e| e.to_string())?;

        let metrics = Arc::new(Metrics::new());
        metrics.apply_config(&config, None);
        metrics.write().reload_success.set(1);
        metrics.write().reload_timestamp.set(unix_seconds(std::time::SystemTime::now()));
        metrics.exposition().refresh();
        tokio::spawn(exposition::keep_fresh(metrics.clone()));
        let history = Arc::new(History::default());
        let shared = Arc::new(Shared::new(metrics.clone(), history.clone(), ledger));
        let (reload_tx, reloads) = mpsc::channel::<ReloadRequest>(4);
        let state = Arc::new(WebState {
            metrics,
            history,
            config: RwLock::new(config.clone()),
            reload: reload_tx,
            telemetry_path: flags.telemetry_path.clone(),
            web_config: flags.web_config_file.clone(),
            authenticator: Default::default(),
            enable_lifecycle: flags.enable_lifecycle,
            scheduler: shared.clone(),
        });
        let app = web::router(state.clone()).into_make_service();
        let server = axum_server::Handle::new();
        let tls_config = checked.web_config.as_ref().map(WebConfig::rustls).transpose()?.flatten();
        let (server_task, tls) = match tls_config {
            Some(tls) => {
                let tls = RustlsConfig::from_config(tls);
                let serve = axum_server::from_tcp_rustls(listener, tls.clone()).map_err(|e| e.to_string())?;
                (tokio::spawn(serve.handle(server.clone()).serve(app)), Some(tls))
            }
            None => {
                let serve = axum_server::from_tcp(listener).map_err(|e| e.to_string())?;
                (tokio::spawn(serve.handle(server.clone()).serve(app)), None)
            }
        };
        // Tests and scripts read this line to find a server started on port 0.
        tracing::info!(address = %bound, tls = tls.is_some(), "Listening on");
        let generation = Generation::start(&config, &shared);
        Ok(Exporter {
            _state_lock: state_lock,
            config_checksum: checksum(&config_file),
            config_file,
            grace_period: checked.grace_period,
            auto_reload: checked.auto_reload,
            web_config_file: flags.web_config_file.clone(),
            tls,
            state,
            shared,
            generation,
            retiring: Vec::new(),
            server,
            server_task,
            reloads,
        })
    }

    /// Reloads on SIGHUP and `POST /-/reload` until a stop: SIGTERM or SIGINT, a console event
    /// on Windows, or `stop` (the service's stop).
    async fn serve_until_signal(mut self, stop: CancellationToken) -> Exporter {
        let Ok(mut signals) = Signals::install() else {
            tracing::error!("cannot install signal handlers; shutting down");
            return self;
        };
        let mut file_check = tokio::time::interval(self.auto_reload.unwrap_or(Duration::from_secs(3600)));
        file_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        file_check.tick().await;
        loop {
            let reply = tokio::select! {
                event = signals.next() => match event {
                    Event::Reload => None,
                    Event::Stop => break,
                },
                Some(reply) = self.reloads.recv() => Some(reply),
                _ = file_check.tick(), if self.auto_reload.is_some() => {
                    // Only a changed file reloads; an invalid one is tried once per change.
                    let now = checksum(&self.config_file);
                    if now.is_none() || now == self.config_checksum {
                        continue;
                    }
                    tracing::info!(file = %self.config_file.display(), "configuration file changed; reloading");
                    None
                }
                _ = stop.cancelled() => break,
            };
            let result = self.reload().await;
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        }
        self
    }

    /// Loads the configuration (and the web config's TLS files) again; on failure the old
    /// configuration stays in force.
    async fn reload(&mut self) -> Result<(), String> {
        self.config_checksum = checksum(&self.config_file);
        self.reload_tls().await;
        let new = reload(&self.config_file, &self.state, &self.state.metrics)?;
        let old = std::mem::replace(&mut self.generation, Generation::start(&new, &self.shared));
        let still_configured: Vec<String> = new.targets.iter().map(|t| t.name.clone()).collect();
        self.retiring.push(tokio::spawn(async move { old.finish(&still_configured).await }));
        Ok(())
    }

    async fn reload_tls(&self) {
        let Some(file) = &self.web_config_file else { return };
        let loaded = WebConfig::load(file).and_then(|c| c.rustls());
        match (loaded, &self.tls) {
            (Ok(Some(new)), Some(tls)) => {
                tls.reload_from_config(new);
                tracing::info!(file = %file.display(), "TLS settings reloaded");
            }
            (Ok(None), None) => {}
            (Ok(_), _) => tracing::warn!(file = %file.display(), "switching TLS on or off needs a restart"),
            (Err(e), _) => {
                tracing::error!(file = %file.display(), err = %e, "web config reload failed; keeping the TLS settings in force")
            }
        }
    }

    /// Stops scheduling, lets running probes unmount (within the grace period), logs off, stops
    /// the web server.
    async fn drain(self) -> ExitCode {
        tracing::info!(grace_period = %duration::format(self.grace_period), "Shutting down: stopping probes, unmounting, logging off");
        self.shared.shutdown.cancel();
        let (generation, retiring) = (self.generation, self.retiring);
        let drain = async {
            // Runs of retiring generations finish first: they may share the sessions logged off last.
            for r in retiring {
                let _ = r.await;
            }
            generation.finish(&[]).await;
        };
        if tokio::time::timeout(self.grace_period, drain).await.is_err() {
            tracing::warn!("grace period over with probes still running; their mount records stay for the next start");
        }
        self.server.graceful_shutdown(Some(Duration::from_secs(5)));
        let _ = self.server_task.await;
        tracing::info!("Stopped");
        ExitCode::SUCCESS
    }
}

/// SHA-256 of the file's contents, `None` when it cannot be read.
fn checksum(path: &Path) -> Option<[u8; 32]> {
    use sha2::Digest;
    std::fs::read(path).ok().map(|bytes| sha2::Sha256::digest(&bytes).into())
}

/// Loads the configuration again; on failure the old one stays in force.
fn reload(path: &Path, state: &WebState, metrics: &Metrics) -> Result<Arc<Config>, String> {
    match config::load(path) {
        Ok(new) => {
            let new = Arc::new(new);
            let old = std::mem::replace(&mut *state.config.write().unwrap_or_else(|p| p.into_inner()), new.clone());
            metrics.apply_config(&new, Some(&old));
            metrics.write().reload_success.set(1);
            metrics.write().reload_timestamp.set(unix_seconds(std::time::SystemTime::now()));
            tracing::info!(file = %path.display(), "configuration reloaded");
            Ok(new)
        }
        Err(e) => {
            metrics.write().reload_success.set(0);
            tracing::error!(file = %path.display(), err = %e.0.join("; "), "configuration reload failed; keeping the previous configuration");
            Err(e.to_string())
        }
    }
}

/// Sets `TCP_NODELAY` on the listening socket, which Linux and Windows pass on to accepted
/// connections: a scrape is written in two parts (cached text, fresh process metrics), and with
/// Nagle's algorithm the second waits for the client's delayed ACK, 40 ms.
fn no_delay(listener: &std::net::TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).set_tcp_nodelay(true) {
        tracing::debug!(err = %e, "cannot set TCP_NODELAY");
    }
}

/// With `--demo`: the simulated EM in-process, and its configuration as `--config.file`.
#[cfg(feature = "demo")]
async fn start_demo(flags: &mut Flags) -> Result<Option<crate::demo::Demo>, String> {
    if !flags.demo {
        return Ok(None);
    }
    let (demo, path) = crate::demo::start(&flags.storage_path).await?;
    flags.config_file = Some(path);
    Ok(Some(demo))
}

#[cfg(not(feature = "demo"))]
async fn start_demo(flags: &mut Flags) -> Result<Option<()>, String> {
    match flags.demo {
        true => Err("this build has no simulator (built without the `demo` feature)".into()),
        false => Ok(None),
    }
}
