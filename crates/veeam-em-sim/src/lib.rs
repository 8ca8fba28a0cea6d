//! `veeam-em-sim`: a simulated Veeam Backup Enterprise Manager REST API.
//!
//! Built from the documentation (see `docs/em-api-notes.md`), not from the client: the same
//! paths, status codes, XML namespace and element names, session scoping, task and
//! restore-session state machines. Where the documentation states a rule the simulator
//! enforces it (e.g. `guestfs` only after a browse in the same session); where it is silent it
//! picks the harder behaviour. Faults can be injected at start and at run time under `/sim/`.
//!
//! Rooms: `api` (the EM routes and request plumbing), `admin` (the `/sim/` API), `world` (state
//! and semantics, no HTTP: `world/{sessions,query,mounts,restores,faults}.rs`), `render` (one
//! element tree as XML or JSON), `inventory` (users, VMs, points, guest files).
//!
//! Admin endpoints (JSON): `GET /sim/requests` (request log), `DELETE /sim/requests`,
//! `GET|POST|DELETE /sim/faults`, `GET|POST|DELETE /sim/hold` (`{"request": N, "when":
//! "before"|"after"}`: hold the N-th API request from now until released, for crash-point tests), `POST /sim/sessions/expire`, `GET /sim/state`,
//! `POST /sim/mounts/release` (an operator stopping unreachable mounts), `GET|PUT /sim/timings`,
//! `PUT /sim/files` (`{"vm", "path", "content"}`: a guest file's content in the VM's points),
//! `POST /sim/restoreSessions` (`{"vm", "job_type", "age", "duration"?, "result"?}`: a restore
//! another user started; answers `{"id"}`), `POST /sim/restoreSessions/{id}/stop`
//! (`{"result"}`), `DELETE /sim/restoreSessions/{id}`.
//!
//! # Example
//!
//! Start a simulator on a free loopback port, log on as any EM client does, and look at its
//! state:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use veeam_em_sim::{self as sim, SimConfig};
//!
//! let server = sim::start(SimConfig::default()).await.unwrap();
//! let http = reqwest::Client::new();
//! let logon = http
//!     .post(format!("{}sessionMngr/?v=latest", server.api_url))
//!     .basic_auth("svc-canary", Some("canary")) // the built-in inventory's account
//!     .send()
//!     .await
//!     .unwrap();
//! assert_eq!(logon.status(), 201);
//! assert!(logon.headers().contains_key("X-RestSvcSessionId"));
//! assert_eq!(server.state().sessions.len(), 1);
//! server.shutdown().await;
//! # });
//! ```

mod admin;
mod api;
mod hold;
mod inventory;
mod plumbing;
mod quirks;
mod render;
mod vocab;
mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;

pub use admin::parse_fault_flag;
pub use hold::{HeldRequest, HoldPoint, HoldSpec, HoldView};
pub use inventory::{DEFAULT_INVENTORY, InventoryFile};
pub use quirks::Quirk;
pub use vocab::{Call, OsKind, PointKind};
pub use world::{
    ExternalRestore, Fault, FaultKind, LoggedRequest, MountView, RestoreSessionView, RestoredFile, SessionView,
    StateView, Timings,
};

use world::World;
/// The simulator's reading of EM's filter language, for the `filter` fuzz target: does
/// `filter` hold for a row with `fields`?
#[doc(hidden)]
pub fn filter_holds(filter: &str, fields: &[(&str, String)]) -> Result<bool, String> {
    world::filter_holds(filter, fields).map_err(|e| e.message)
}
/// How to start a simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Serve HTTPS with a self-signed certificate generated at start.
    pub tls: bool,
    /// Where to write the certificate (PEM) so clients can trust it; a temp file when `None`.
    pub tls_cert_file: Option<PathBuf>,
    /// Inventory YAML text; [`DEFAULT_INVENTORY`] when `None`.
    pub inventory: Option<String>,
    pub timings: Timings,
    pub faults: Vec<Fault>,
    /// Deviations from a current EM; none by default.
    pub quirks: Vec<Quirk>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            tls_cert_file: None,
            inventory: None,
            timings: Timings::default(),
            faults: Vec::new(),
            quirks: Vec::new(),
        }
    }
}

/// A running simulator. Dropping it does not stop it; call [`SimServer::shutdown`].
pub struct SimServer {
    pub addr: SocketAddr,
    /// The API root, e.g. `http://127.0.0.1:40123/api/`.
    pub api_url: String,
    /// The certificate file when serving TLS.
    pub cert_file: Option<PathBuf>,
    sim: Sim,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SimServer {
    /// Stops accepting connections and waits for the server task.
    pub async fn shutdown(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        let _ = self.task.await;
    }

    /// The state, as `/sim/state` would return it.
    pub fn state(&self) -> StateView {
        self.sim.world().state(Instant::now())
    }

    /// Adds a fault, as `POST /sim/faults` would.
    pub fn add_fault(&self, fault: Fault) {
        self.sim.world().faults.push(fault);
    }

    /// The faults not yet used up, as `GET /sim/faults` lists them.
    pub fn faults(&self) -> Vec<Fault> {
        self.sim.world().faults.clone()
    }

    /// Removes all faults, as `DELETE /sim/faults` would.
    pub fn clear_faults(&self) {
        self.sim.world().faults.clear();
    }

    /// Expires every logon session now, as `POST /sim/sessions/expire` would.
    pub fn expire_sessions(&self) -> usize {
        self.sim.world().expire_all()
    }

    /// Stops unreachable mounts, as `POST /sim/mounts/release` would.
    pub fn release_orphans(&self) -> usize {
        self.sim.world().release_orphans()
    }

    /// Sets a guest file's content in every restore point of the VM, as `PUT /sim/files` would.
    pub fn set_guest_file(&self, vm: &str, path: &str, content: &str) -> bool {
        self.sim.world().inventory.set_file(vm, path, content)
    }

    /// Adds a restore session another user started, as `POST /sim/restoreSessions` would.
    pub fn add_restore_session(&self, spec: ExternalRestore) -> Result<String, String> {
        self.sim.world().add_external_restore(spec, Instant::now()).map_err(|e| e.to_string())
    }

    /// Ends a running restore session another user started, with `result`.
    pub fn stop_restore_session(&self, id: &str, result: &str) -> Result<(), String> {
        self.sim.world().stop_external_restore(id, result).map_err(|e| e.to_string())
    }

    /// Forgets a restore session, as EM does after 30 days.
    pub fn remove_restore_session(&self, id: &str) -> bool {
        self.sim.world().remove_restore_session(id)
    }

    /// Holds the `spec.request`-th API request from now, as `POST /sim/hold` would.
    pub fn hold(&self, spec: HoldSpec) {
        self.sim.hold.arm(spec);
    }

    /// The hold's state, as `GET /sim/hold` returns it.
    pub fn hold_view(&self) -> HoldView {
        self.sim.hold.view()
    }

    /// Lets a held request go and disarms, as `DELETE /sim/hold` would.
    pub fn release_hold(&self) {
        self.sim.hold.release();
    }

    /// The request log, as `GET /sim/requests` would return it.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.sim.world().log.clone()
    }
}

#[derive(Clone)]
struct Sim {
    world: Arc<Mutex<World>>,
    quirks: Arc<[Quirk]>,
    hold: Arc<hold::Hold>,
}

impl Sim {
    fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock is a simulator bug; keep serving rather than cascade.
        self.world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts the simulator on `config.listen` and returns once it accepts connections.
pub async fn start(config: SimConfig) -> Result<SimServer, String> {
    let inventory = inventory::Inventory::parse(config.inventory.as_deref().unwrap_or(DEFAULT_INVENTORY))?;
    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if config.tls { "https" } else { "http" };
    let mut world = World::new(inventory, config.timings, config.faults);
    world.base = format!("{scheme}://{addr}/api");
    let sim = Sim { world: Arc::new(Mutex::new(world)), quirks: config.quirks.clone().into(), hold: Arc::default() };
    let app = router(sim.clone());
    let handle = axum_server::Handle::new();
    let (task, cert_file) = if config.tls {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), addr.ip().to_string()])
            .map_err(|e| format!("cannot generate certificate: {e}"))?;
        let cert_pem = cert.cert.pem();
        let path = config
            .tls_cert_file
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("veeam-em-sim-{}.pem", addr.port())));
        std::fs::write(&path, &cert_pem).map_err(|e| format!("cannot write certificate to {}: {e}", path.display()))?;
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )
        .await
        .map_err(|e| format!("TLS configuration: {e}"))?;
        let server = axum_server::from_tcp_rustls(listener, tls).map_err(|e| e.to_string())?.handle(handle.clone());
        (tokio::spawn(server.serve(app.into_make_service())), Some(path))
    } else {
        let server = axum_server::from_tcp(listener).map_err(|e| e.to_string())?.handle(handle.clone());
        (tokio::spawn(server.serve(app.into_make_service())), None)
    };
    Ok(SimServer { addr, api_url: format!("{scheme}://{addr}/api/"), cert_file, sim, handle, task })
}

fn router(sim: Sim) -> Router {
    api::routes(sim.clone()).merge(admin::routes()).with_state(sim)
}
