//! A simulated Veeam Backup & Replication REST API server (the file-level-restore subset), read
//! from Veeam's OpenAPI specs independently of any client, for testing clients in-process or as
//! a separate binary. See the README for the routes, the admin API and the strict readings.

pub mod admin;
pub mod api_flr;
pub mod api_jobs;
pub mod api_points;
pub mod auth;
pub mod config;
pub mod error;
pub mod faults;
mod flr_state;
pub mod guestfs;
pub mod inventory;
pub mod models;
pub mod query;
pub mod revision;
pub mod server;
pub mod state;
pub mod timefmt;
pub mod view;
pub mod zip;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Lenient, SimConfig, Timings};
pub use error::ApiError;
pub use faults::{FaultKind, FaultSpec};
pub use inventory::{GuestOs, Inventory, Malware, Role};
pub use revision::ApiRevision;
pub use view::StateView;

use state::Shared;

/// A running simulator.
pub struct SimServer {
    /// Server root, e.g. `http://127.0.0.1:9419/`; the API is under `api/`, the admin API under
    /// `sim/`.
    pub url: String,
    /// The self-signed certificate (PEM) when TLS is on.
    pub cert_file: Option<PathBuf>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimServer {
    /// A snapshot of mounts, tokens, tasks, sessions and restored files.
    pub fn state(&self) -> StateView {
        self.shared.lock().view()
    }

    /// Stops accepting, closes every connection and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The API routes (under `/api/`), wrapped in the logging/fault middleware.
fn api_router(sh: Arc<Shared>) -> Router<Arc<Shared>> {
    use crate::{api_flr as flr, api_jobs as jobs, api_points as pts, auth};
    let b = "/api/v1/backupBrowser/flr/{id}";
    Router::new()
        .route("/api/oauth2/token", post(auth::token))
        .route("/api/oauth2/logout", post(auth::logout))
        .route("/api/v1/serverInfo", get(pts::server_info))
        .route("/api/v1/serverTime", get(pts::server_time))
        .route("/api/v1/backupObjects", get(pts::backup_objects))
        .route("/api/v1/backupObjects/{id}/restorePoints", get(pts::object_points))
        .route("/api/v1/restorePoints", get(pts::restore_points))
        .route("/api/v1/restorePoints/{id}", get(pts::restore_point))
        .route("/api/v1/restore/flr", post(flr::mount))
        .route("/api/v1/restore/flr/{id}/unmount", post(flr::unmount))
        .route("/api/v1/backupBrowser/flr", get(flr::list))
        .route(b, get(flr::get))
        .route(&format!("{b}/browse"), post(flr::browse))
        .route(&format!("{b}/prepareDownload"), post(flr::prepare_download))
        .route(&format!("{b}/prepareDownload/{{task}}/download"), post(flr::download))
        .route(&format!("{b}/restore"), post(flr::restore))
        .route("/api/v1/tasks", get(jobs::tasks))
        .route("/api/v1/tasks/{id}", get(jobs::task))
        .route("/api/v1/tasks/{id}/stop", post(jobs::task_stop))
        .route("/api/v1/sessions", get(jobs::sessions))
        .route("/api/v1/sessions/{id}", get(jobs::session))
        .route("/api/v1/sessions/{id}/stop", post(jobs::session_stop))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "InvalidURI", "The requested URI does not exist") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "The method is not allowed for this URI")
        })
        .layer(axum::middleware::from_fn_with_state(sh, faults::api_middleware))
}

/// Starts a simulator; returns once it is listening.
pub async fn start(config: SimConfig) -> Result<SimServer, String> {
    let shared = Shared::new(&config);
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.map_err(|e| format!("bind {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tls, cert_file) = if config.tls {
        let path = config.tls_cert_file.clone().unwrap_or_else(server::default_cert_path);
        (Some(server::tls_acceptor(&path)?), Some(path))
    } else {
        (None, None)
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let app = admin::router().merge(api_router(shared.clone())).with_state(shared.clone());
    let (stop, rx) = watch::channel(false);
    let serve = tokio::spawn(server::serve(listener, app, tls, rx.clone()));
    let ticker = tokio::spawn(tick(shared.clone(), rx));
    Ok(SimServer { url: format!("{scheme}://{addr}/"), cert_file, shared, stop, tasks: vec![serve, ticker] })
}

/// Applies time (auto-unmount, finished tasks) even when no request arrives.
async fn tick(sh: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => { drop(sh.lock()); }
        }
    }
}
