//! `veeam-vbr-sim`: the simulator as a process. Prints `veeam-vbr-sim listening on <url>` (and
//! the certificate path with `--tls`) on stdout, then serves until SIGTERM or Ctrl+C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use veeam_vbr_sim::{ApiRevision, FaultSpec, Inventory, Lenient, SimConfig, Timings};

/// Simulated Veeam Backup & Replication REST API server (file-level restore subset).
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9419")]
    listen: SocketAddr,
    /// Serve HTTPS with a self-signed certificate.
    #[arg(long)]
    tls: bool,
    /// Where to write the certificate (PEM); a temporary file by default.
    #[arg(long = "tls.cert-file")]
    tls_cert_file: Option<PathBuf>,
    /// A fault, e.g. `kind=status,status=503,endpoint=flr_mount,times=1` (repeatable).
    #[arg(long = "fault")]
    faults: Vec<FaultSpec>,
    /// Inventory file (JSON, or YAML by extension) replacing the built-in one.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Access-token lifetime.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15m")]
    token_lifetime: Duration,
    /// Refresh-token lifetime.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "14days")]
    refresh_token_lifetime: Duration,
    /// Time `POST /api/v1/restore/flr` takes before answering 201.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "500ms")]
    mount_duration: Duration,
    /// Time a download/restore task takes.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    task_duration: Duration,
    /// Length of one minute of `autoUnmount.noActivityPeriodInMinutes` (scale it down in tests).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    auto_unmount_minute: Duration,
    /// Newest API revision accepted (e.g. 1.2-rev1 imitates VBR 12.3.1, 1.3-rev1 VBR 13.0.1).
    #[arg(long = "max-api-revision", alias = "api-version", default_value = "1.3-rev2")]
    max_api_revision: ApiRevision,
    /// Oldest API revision accepted.
    #[arg(long = "min-api-revision", default_value = "1.1-rev1")]
    min_api_revision: ApiRevision,
    /// Accept `grant_type` in any case on every revision.
    #[arg(long = "lenient.grant-type-any-case")]
    grant_type_any_case: bool,
    /// Treat a missing `x-api-version` as the newest accepted revision.
    #[arg(long = "lenient.missing-api-version")]
    missing_api_version: bool,
    /// Accept 1.3 FLR mount specs without `mountMode`/`mountServer`.
    #[arg(long = "lenient.mount-mode-optional")]
    mount_mode_optional: bool,
    /// Count every request naming a mount (and task polls) as autoUnmount activity.
    #[arg(long = "lenient.any-request-is-activity")]
    any_request_is_activity: bool,
    /// Put downloaded files at the ZIP root under their base names.
    #[arg(long = "lenient.zip-flat")]
    zip_flat: bool,
    /// Every lenient switch at once.
    #[arg(long)]
    lenient: bool,
}

impl Cli {
    fn config(self) -> Result<SimConfig, String> {
        let inventory = match &self.inventory {
            Some(p) => Inventory::load(p)?,
            None => Inventory::builtin(),
        };
        let all = self.lenient;
        Ok(SimConfig {
            listen: self.listen,
            tls: self.tls,
            tls_cert_file: self.tls_cert_file,
            inventory,
            timings: Timings {
                token_lifetime: self.token_lifetime,
                refresh_token_lifetime: self.refresh_token_lifetime,
                mount_duration: self.mount_duration,
                task_duration: self.task_duration,
                auto_unmount_minute: self.auto_unmount_minute,
            },
            faults: self.faults,
            lenient: Lenient {
                grant_type_any_case: all || self.grant_type_any_case,
                missing_api_version: all || self.missing_api_version,
                mount_mode_optional: all || self.mount_mode_optional,
                any_request_is_activity: all || self.any_request_is_activity,
                zip_flat: all || self.zip_flat,
            },
            max_api_revision: self.max_api_revision,
            min_api_revision: self.min_api_revision,
        })
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cfg = match Cli::parse().config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("veeam-vbr-sim: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let server = match veeam_vbr_sim::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("veeam-vbr-sim: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    // Before the address is printed: whoever reads it may send SIGTERM at once.
    let stop = stop_signal();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "veeam-vbr-sim listening on {}", server.url);
    if let Some(c) = &server.cert_file {
        let _ = writeln!(out, "veeam-vbr-sim certificate {}", c.display());
    }
    let _ = out.flush();
    drop(out);
    stop.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// SIGTERM or Ctrl+C; the SIGTERM handler is installed when this is called, not when awaited.
fn stop_signal() -> impl Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        match term {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
