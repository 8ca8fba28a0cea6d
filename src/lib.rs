//! veeam-restore-exporter: proves Veeam restores work by running them.
//!
//! # Layout
//! - [`demo`]: `--demo`, the simulated EM in-process and a configuration probing it.
//! - [`duration`]: durations in Prometheus' syntax, for the configuration and the flags.
//! - [`em`]: typed client for the Enterprise Manager REST API. Knows nothing of metrics.
//! - [`sim`]: a simulated Enterprise Manager built from the documented API, for tests and demos.
//! - [`config`]: the configuration file, parsed strictly with every problem reported at once.
//! - [`probe`]: one probe run (mount, file restore), each step timed on its own.
//! - [`target`]: one EM at run time: logon session, logon backoff, concurrency limit.
//! - [`cleanup`]: what runs leave on a server, one record type each, followed up until gone.
//! - [`ledger`]: durable storage of those records in `--storage.path`.
//! - [`schedule`]: when each probe runs next, persisted across restarts and reloads.
//! - [`scheduler`]: runs probes on their schedules and publishes results.
//! - [`logging`]: log lines as Prometheus components write them (`ts`, `level`, `msg`).
//! - [`metrics`]: every metric name, in one place.
//! - [`fields`]: strict decoding of YAML mappings key by key (every problem, each named).
//! - [`history`]: recent runs for the landing page.
//! - [`overview`]: the landing page's overview of probes and targets, read from the exposition.
//! - [`exposition`]: the `/metrics` body, re-encoded in the background when something changed.
//! - [`watch`]: the passive restore watch: other users' restores, counted once.
//! - [`web`]: landing page, `/metrics`, health, readiness, reload.
//! - [`web_config`]: `--web.config.file` (TLS, basic auth, headers), exporter-toolkit format.
//! - [`app`]: flags, logging, start-up, reload and shutdown.
//! - [`platform`]: what differs on Unix and Windows: signals, private directories, the service.
//! - [`secret`]: a string type that never prints its value.
//! - [`fuzzing`]: every parser of outside input, reachable from bytes, for `fuzz/`.

pub mod app;
pub mod cleanup;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod duration;
pub use veeam_em as em;
pub mod exposition;
pub mod fields;
#[cfg(feature = "demo")]
pub mod fuzzing;
pub mod history;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod once;
pub mod overview;
pub mod platform;
pub mod preflight;
pub mod probe;
pub mod schedule;
pub mod scheduler;
#[cfg(feature = "demo")]
pub use veeam_em_sim as sim;
pub use veeam_secret as secret;
pub mod target;
pub mod watch;
pub mod web;
pub mod web_config;
