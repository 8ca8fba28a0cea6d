//! Integration tests, compiled into one binary.
//!
//! - `em_fixtures`: Veeam's documented example bodies decode into the right values.
//! - `em_client`: the client against the simulator on loopback, both formats, every fault kind.
//! - `deploy`: Kubernetes manifests and the compose stack hold their invariants.
//! - `exporter`: the exporter binary against the simulator: probes, failures, crash recovery,
//!   shutdown, reload, bad configuration.
//! - `fuzz_regressions`: the fuzz targets over their seeds and every input that ever crashed one.
//! - `crash_points`: SIGKILL and SIGTERM at every EM request of a run of every kind; prints the matrix.
//! - `fault_matrix`: every simulator fault in every phase of every probe kind; prints the matrix.
//! - `sessions`: the exporter binary's logon-session hygiene: unmount retries, never logging off
//!   a session that owns a mount, re-logon after EM forgot the session, crash loops.
//! - `operations`: the exporter binary as operators run it: durable schedule, logon backoff,
//!   flags, state directory, web config (TLS, basic auth), shipped examples.
//! - `sim_api`: the simulator as a product: collections, paging links, 401 before 404, its
//!   independence from the client.
//! - `vbr_client`: the VBR client against the simulated VBR server: two readings of the specs meet.
//! - `vbr_exporter`: the exporter binary against the simulated VBR server, every probe kind.
//! - `vbr_fault_matrix`: every simulated VBR fault in every phase of every kind, and SIGTERM in
//!   every phase; prints the matrices.
//! - `first_contact`: `--preflight` and `--probe.once` against both simulators.
//! - `watch`: the passive restore watch: other users' restores counted once, across restarts.
//! - `monitoring`: dashboards and alert rules: structure, PromQL, only real metrics.
//! - `support`: shared helpers (simulator start-up, the exporter process, bounded polling).

mod crash_points;
mod deploy;
mod em_client;
mod em_fixtures;
mod exporter;
mod fault_matrix;
mod first_contact;
mod fuzz_regressions;
mod monitoring;
mod operations;
mod sessions;
mod sim_api;
mod support;
mod vbr_client;
mod vbr_exporter;
mod vbr_fault_matrix;
mod watch;
