//! Integration tests, compiled into one binary.
//!
//! - `em_fixtures`: Veeam's documented example bodies decode into the right values.
//! - `em_client`: the client against the simulator on loopback, both formats, every fault kind.
//! - `support`: shared helpers (simulator start-up, bounded polling).

mod em_client;
mod em_fixtures;
mod support;
