//! Integration tests, compiled into one binary.
//!
//! - `em_fixtures`: Veeam's documented example bodies decode into the right values.
//! - `em_client`: the client against the simulator on loopback, both formats, every fault kind.
//! - `deploy`: Kubernetes manifests and the compose stack hold their invariants.
//! - `exporter`: the exporter binary against the simulator: probes, failures, crash recovery,
//!   shutdown, reload, bad configuration.
//! - `monitoring`: dashboards and alert rules: structure, PromQL, only real metrics.
//! - `support`: shared helpers (simulator start-up, the exporter process, bounded polling).

mod deploy;
mod em_client;
mod em_fixtures;
mod exporter;
mod monitoring;
mod support;
