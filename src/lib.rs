//! veeam-restore-exporter: proves Veeam restores work by running them.
//!
//! # Layout
//! - [`em`]: typed client for the Enterprise Manager REST API. Knows nothing of metrics.
//! - [`sim`]: a simulated Enterprise Manager built from the documented API, for tests and demos.
//! - [`secret`]: a string type that never prints its value.

pub mod em;
pub mod secret;
pub mod sim;
