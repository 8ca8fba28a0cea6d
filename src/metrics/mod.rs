//! Every metric the exporter exposes, defined in this one place.
//!
//! Probe results are produced by scheduled runs and cached; no scrape ever triggers EM work, and
//! the HELP strings say so. Label values come only from the configuration (target and probe
//! names) or from fixed vocabularies (phase, reason, operation, result, endpoint): never IDs,
//! paths or user names. Counters are created at 0 for every known label set when a
//! configuration is applied, and the series of removed targets and probes are deleted.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::{Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::config::Config;
use crate::em::{Endpoint, RequestObserver};
use crate::exposition::Exposition;
use crate::probe::{Kind, Operation, Phase, RestoreResult, RunObserver, TaskOutcome};
use crate::watch;

mod probe_info;
use probe_info::ProbeInfo;

const CACHED: &str = "Cached from the latest scheduled run; scrapes never trigger a probe.";

/// Run durations, seconds to an hour, in few buckets: every bucket is a series per probe (see
/// docs/benchmarks.md for the series budget). Treat as API: changing buckets breaks queries.
pub const RUN_BUCKETS: &[f64] = &[30.0, 300.0, 1800.0];
/// EM request durations, per endpoint family rather than per endpoint for the same reason.
const API_BUCKETS: &[f64] = &[0.25, 1.0, 5.0];

pub const ORPHAN_STATES: &[&str] = &["retrying", "unresolved"];
/// VBR's malware statuses of a restore point (`ESuspiciousActivitySeverity`), lower-cased, and
/// `unknown` when VBR says nothing (before 12.3.1, or the point was never scanned).
pub const MALWARE_STATES: &[&str] = &["clean", "informative", "suspicious", "infected", "unknown"];

/// Whether a kind of probe follows restore sessions (so those series exist for it).
fn follows_restore_sessions(kind: &Kind) -> bool {
    kind.phases().contains(&Phase::RestoreSession)
}

/// Declares every metric once: the [`Series`] field, its type, name, help, labels (and buckets).
macro_rules! metrics {
    ($($field:ident: $ty:ty = ($name:literal, $help:expr, $labels:expr $(, $buckets:expr)?),)+) => {
        /// The exporter's own series. Reached for writing only through [`Metrics::write`], which
        /// marks the exposition for re-encoding: no write can be missed by the scrape cache.
        pub struct Series {
            $(pub $field: $ty,)+
        }

        impl Series {
            fn define(registry: &Registry) -> Series {
                Series {
                    $($field: register(registry, <$ty>::define($name, &$help, $labels, &[$($buckets)?][..])),)+
                }
            }

            /// Removes every series, of every metric, whose labels `stale` says are stale. The
            /// table's label lists give the order values are removed in.
            fn prune(&self, stale: &dyn Fn(&str, &Labels<'_>) -> bool) {
                $(self.$field.prune($name, $labels, stale);)+
            }
        }
    };
}

/// Help text of a result the scheduled runs cache.
fn cached(help: &str) -> String {
    format!("{help} {CACHED}")
}

const T: &[&str] = &["target"];
const TP: &[&str] = &["target", "probe"];
const TPK: &[&str] = &["target", "probe", "kind"];
const TPKP: &[&str] = &["target", "probe", "kind", "phase"];

metrics! {
    server_up: IntGaugeVec = ("veeam_restore_server_up", "1 if the last check of the target's server (logon or keep-alive) succeeded, 0 if not; api is em (Enterprise Manager) or vbr (Backup & Replication).", &["target", "api"]),
    probe_success: IntGaugeVec = ("veeam_restore_probe_success", cached("1 if the probe's last completed run succeeded, 0 if it failed."), TPK),
    probe_duration: HistogramVec = ("veeam_restore_probe_duration_seconds", "Duration of completed probe runs, cleanup included.", TPK, RUN_BUCKETS),
    probe_last_duration: GaugeVec = ("veeam_restore_probe_last_duration_seconds", cached("Duration of the probe's last completed run, cleanup included."), TPK),
    phase_last_duration: GaugeVec = ("veeam_restore_probe_phase_last_duration_seconds", cached("Duration of each phase in the probe's last run that reached it."), TPKP),
    failures_in_a_row: GaugeVec = ("veeam_restore_probe_failures_in_a_row", cached("Failed runs of the probe in a row, 0 after a success (kept across restarts). A first failure is re-run after retry_after_failure, so a second one comes within minutes."), TPK),
    probe_interval: GaugeVec = ("veeam_restore_probe_interval_seconds", "Configured time between runs of the probe, for staleness alerts.", TPK),
    probe_timeout: GaugeVec = ("veeam_restore_probe_timeout_seconds", "Configured budget of one run's work steps (unmount comes on top).", TPK),
    probe_runs: IntCounterVec = ("veeam_restore_probe_runs_total", "Probe runs by result: success, failure, or cancelled (cut short by shutdown, cleanup done).", &["target", "probe", "kind", "result"]),
    probe_failures: IntCounterVec = ("veeam_restore_probe_failures_total", "Failed probe runs by the reason of the first failure. A reason appears with its first failure; runs_total{result=\"failure\"} counts all of them from 0.", &["target", "probe", "kind", "reason"]),
    last_run: GaugeVec = ("veeam_restore_probe_last_run_timestamp_seconds", "Unix time the probe's last run completed.", TPK),
    last_success: GaugeVec = ("veeam_restore_probe_last_success_timestamp_seconds", "Unix time the probe's last successful run completed.", TPK),
    next_run: GaugeVec = ("veeam_restore_probe_next_run_timestamp_seconds", "Unix time the probe is scheduled to run next (kept across restarts and reloads).", TPK),
    tasks: IntCounterVec = ("veeam_restore_server_tasks_total", "Server tasks started by probes (EM tasks, VBR FLR tasks), by operation and outcome.", &["target", "operation", "result"]),
    restore_progress: GaugeVec = ("veeam_restore_probe_restore_session_progress_ratio", "Progress (0-1) of the original-location restore a probe is following (EM restore session, VBR restore task), updated live.", TP),
    restore_sessions: IntCounterVec = ("veeam_restore_probe_restore_sessions_total", "Original-location restores followed to the end, by the server's result.", &["target", "probe", "result"]),
    content_age: GaugeVec = ("veeam_restore_probe_content_age_seconds", cached("Age of the timestamp in the restored canary file (content_timestamp) when the probe read it."), TP),
    content_max_age: GaugeVec = ("veeam_restore_probe_content_max_age_seconds", "Configured content_timestamp.max_age of the probe.", TP),
    point_malware: IntGaugeVec = ("veeam_restore_point_malware_status", cached("VBR's malware status of the newest restore point the probe found: 1 for the current status (clean, informative, suspicious, infected, or unknown when VBR reports none), 0 for the others. VBR targets only."), &["target", "probe", "status"]),
    point_creation: GaugeVec = ("veeam_restore_point_creation_timestamp_seconds", cached("Unix time the newest restore point the probe found was created."), TP),
    orphaned_mounts: IntGaugeVec = ("veeam_restore_orphaned_mounts", "Mounts left behind by earlier runs: retrying = cleanup will be retried, unresolved = the owning logon session expired and an operator must remove it.", &["target", "state"]),
    orphans_cleaned: IntCounterVec = ("veeam_restore_orphaned_mounts_cleaned_total", "Mounts left behind by earlier runs that were found and deleted.", T),
    logons: IntCounterVec = ("veeam_restore_logons_total", "Logon attempts.", T),
    logon_failures: IntCounterVec = ("veeam_restore_logon_failures_total", "Failed logon attempts, by reason.", &["target", "reason"]),
    logon_backoff: GaugeVec = ("veeam_restore_logon_backoff_seconds", "Wait imposed after the last refused logon before the next attempt (0 after a successful logon); protects the account from lockout.", T),
    logoffs: IntCounterVec = ("veeam_restore_logoffs_total", "Logon sessions logged off: at shutdown, and sessions an earlier process left open.", T),
    api_requests: IntCounterVec = ("veeam_restore_server_requests_total", "Requests to the target's REST API (EM or VBR), by endpoint and HTTP status (\"error\" when none was received).", &["target", "endpoint", "code"]),
    api_duration: HistogramVec = ("veeam_restore_server_request_duration_seconds", "Duration of requests to the target's REST API (EM or VBR), by endpoint family (session, query, mount, restore, task).", &["target", "family"], API_BUCKETS),
    watch_sessions: IntCounterVec = ("veeam_restore_watch_sessions_total", "Restore sessions anyone ran on EM that finished, by job type and result (restore_watch; the canary VMs' own sessions excluded). Kept across restarts.", &["target", "job_type", "result"]),
    watch_running: IntGaugeVec = ("veeam_restore_watch_running_sessions", "Restore sessions running on EM now (restore_watch; the canary VMs' own excluded).", T),
    watch_oldest_running: GaugeVec = ("veeam_restore_watch_oldest_running_seconds", "How long the oldest running restore session has been running (0 when none).", T),
    watch_running_max_age: GaugeVec = ("veeam_restore_watch_running_max_age_seconds", "Configured restore_watch.running_max_age: a restore running longer is worth an alert.", T),
    watch_last_success: GaugeVec = ("veeam_restore_watch_last_success_timestamp_seconds", "Unix time the restore watch last read EM's restore sessions.", T),
    reload_success: IntGauge = ("veeam_restore_exporter_config_last_reload_successful", "1 if the last configuration load succeeded, 0 if it failed (the previous configuration stays in force).", &[]),
    reload_timestamp: Gauge = ("veeam_restore_exporter_config_last_reload_success_timestamp_seconds", "Unix time of the last successful configuration load.", &[]),
}

/// The labels of one series, by name.
pub struct Labels<'a>(Vec<(&'a str, &'a str)>);

impl Labels<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// Removing the series of a metric vector that match a predicate: the children are read from
/// what the vector collects, since `prometheus` offers no partial-match removal.
trait Prune {
    fn prune(&self, name: &str, labels: &[&str], stale: &dyn Fn(&str, &Labels<'_>) -> bool);
}

macro_rules! prune_vec {
    ($($ty:ty),+) => {$(
        impl Prune for $ty {
            fn prune(&self, name: &str, labels: &[&str], stale: &dyn Fn(&str, &Labels<'_>) -> bool) {
                use prometheus::core::Collector;
                for family in self.collect() {
                    for metric in family.get_metric() {
                        let pairs = Labels(metric.get_label().iter().map(|p| (p.name(), p.value())).collect());
                        if stale(name, &pairs) {
                            let values: Vec<&str> = labels.iter().map(|l| pairs.get(l).unwrap_or("")).collect();
                            let _ = self.remove_label_values(&values);
                        }
                    }
                }
            }
        }
    )+};
}
prune_vec!(IntGaugeVec, GaugeVec, IntCounterVec, HistogramVec);

/// Unlabelled metrics have no series to prune.
macro_rules! prune_none {
    ($($ty:ty),+) => {$(
        impl Prune for $ty {
            fn prune(&self, _: &str, _: &[&str], _: &dyn Fn(&str, &Labels<'_>) -> bool) {}
        }
    )+};
}
prune_none!(IntGauge, Gauge);

/// How each metric type is built from a name, help, labels and (for histograms) buckets.
trait Define: Sized {
    fn define(name: &str, help: &str, labels: &[&str], buckets: &[&[f64]]) -> prometheus::Result<Self>;
}

macro_rules! define_vec {
    ($($ty:ty),+) => {$(
        impl Define for $ty {
            fn define(name: &str, help: &str, labels: &[&str], _: &[&[f64]]) -> prometheus::Result<Self> {
                <$ty>::new(Opts::new(name, help), labels)
            }
        }
    )+};
}
define_vec!(IntGaugeVec, GaugeVec, IntCounterVec);

impl Define for HistogramVec {
    fn define(name: &str, help: &str, labels: &[&str], buckets: &[&[f64]]) -> prometheus::Result<Self> {
        let buckets = buckets.first().map(|b| b.to_vec()).unwrap_or_default();
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
    }
}

impl Define for IntGauge {
    fn define(name: &str, help: &str, _: &[&str], _: &[&[f64]]) -> prometheus::Result<Self> {
        IntGauge::new(name, help)
    }
}

impl Define for Gauge {
    fn define(name: &str, help: &str, _: &[&str], _: &[&[f64]]) -> prometheus::Result<Self> {
        Gauge::new(name, help)
    }
}

/// Registers a metric built from the table above; both steps only fail on a programming error.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<M>) -> M {
    let metric = metric.expect("metric definitions are valid");
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

/// Every metric of the exporter, and the cached exposition `/metrics` serves.
pub struct Metrics {
    series: Series,
    /// `veeam_restore_probe_info`, whose label names the configuration chooses.
    probe_info: ProbeInfo,
    exposition: Exposition,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let series = Series::define(&registry);
        let probe_info = ProbeInfo::new();
        registry.register(Box::new(probe_info.clone())).expect("metric names are unique");
        let build = register(
            &registry,
            IntGaugeVec::define(
                "veeam_restore_exporter_build_info",
                "A metric with a constant '1' value labeled by the version, revision and Rust version it was built from.",
                &["version", "revision", "rustversion"],
                &[],
            ),
        );
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("VRE_GIT_REVISION").unwrap_or("unknown"),
                env!("VRE_RUSTC_VERSION"),
            ])
            .set(1);
        Metrics { series, probe_info, exposition: Exposition::new(registry) }
    }

    /// The series, for a change. The exposition is marked for re-encoding when the returned
    /// handle is dropped, that is after the writes, however long it was held.
    pub fn write(&self) -> Write<'_> {
        Write(self)
    }

    /// The `/metrics` body; see [`Exposition`].
    pub fn exposition(&self) -> &Exposition {
        &self.exposition
    }

    /// The exposition as text, encoded now: for tests and tools, not for scrapes.
    pub fn encode(&self) -> String {
        self.exposition.refresh();
        let mut out = self.exposition.snapshot().plain.to_vec();
        out.extend(crate::exposition::process_metrics());
        String::from_utf8(out).unwrap_or_default()
    }

    /// Creates every known series of `config` at its zero value and deletes the series of
    /// targets and probes no longer configured (`previous`). Series that only matter once
    /// something happened (a failure reason, a task outcome, a status code) appear with it.
    pub fn apply_config(&self, config: &Config, previous: Option<&Config>) {
        let m = self.write();
        if let Some(previous) = previous {
            self.remove_stale(config, previous);
        }
        self.probe_info.set(config);
        for t in &config.targets {
            let target = t.name.as_str();
            let api = t.api.as_str();
            // A target that switched API keeps no series of the old one.
            self.series.prune(&|name, labels| {
                name == "veeam_restore_server_up"
                    && labels.get("target") == Some(target)
                    && labels.get("api") != Some(api)
            });
            m.server_up.with_label_values(&[target, api]);
            m.logons.with_label_values(&[target]);
            m.logoffs.with_label_values(&[target]);
            m.logon_backoff.with_label_values(&[target]);
            m.orphans_cleaned.with_label_values(&[target]);
            match &t.restore_watch {
                Some(w) => {
                    for job in watch::JOB_TYPES {
                        for result in &watch::RESULTS[..3] {
                            m.watch_sessions.with_label_values(&[target, job, result]);
                        }
                    }
                    m.watch_running.with_label_values(&[target]);
                    m.watch_oldest_running.with_label_values(&[target]);
                    m.watch_running_max_age.with_label_values(&[target]).set(w.running_max_age.as_secs_f64());
                }
                None => self.remove_watch(target),
            }
            for state in ORPHAN_STATES {
                m.orphaned_mounts.with_label_values(&[target, state]);
            }
            for p in &t.probes {
                let (probe, kind) = (p.name.as_str(), p.kind.label());
                // Cancellations are rare and no rate needs them from 0.
                for result in [RUN_SUCCESS, RUN_FAILURE] {
                    m.probe_runs.with_label_values(&[target, probe, kind, result]);
                }
                m.probe_duration.with_label_values(&[target, probe, kind]);
                m.probe_interval.with_label_values(&[target, probe, kind]).set(p.interval.as_secs_f64());
                m.probe_timeout.with_label_values(&[target, probe, kind]).set(p.timeout.as_secs_f64());
                if follows_restore_sessions(&p.kind) {
                    for result in RestoreResult::ALL {
                        m.restore_sessions.with_label_values(&[target, probe, result.as_str()]);
                    }
                    m.restore_progress.with_label_values(&[target, probe]);
                }
                if let Some(max_age) = p.kind.content_max_age() {
                    m.content_max_age.with_label_values(&[target, probe]).set(max_age.as_secs_f64());
                } else {
                    let _ = m.content_max_age.remove_label_values(&[target, probe]);
                    let _ = m.content_age.remove_label_values(&[target, probe]);
                }
            }
        }
    }

    /// Deletes the series of targets no longer configured, and of probes no longer configured
    /// with the same name and kind, whatever metric they belong to.
    fn remove_stale(&self, config: &Config, previous: &Config) {
        let current: HashSet<(&str, &str, &str)> = config
            .targets
            .iter()
            .flat_map(|t| t.probes.iter().map(move |p| (t.name.as_str(), p.name.as_str(), p.kind.label())))
            .collect();
        let gone_targets: HashSet<&str> = previous
            .targets
            .iter()
            .map(|t| t.name.as_str())
            .filter(|name| !config.targets.iter().any(|t| t.name == *name))
            .collect();
        let gone_probes: HashSet<(&str, &str)> = previous
            .targets
            .iter()
            .flat_map(|t| t.probes.iter().map(move |p| (t.name.as_str(), p.name.as_str(), p.kind.label())))
            .filter(|key| !current.contains(key))
            .map(|(t, p, _)| (t, p))
            .collect();
        self.series.prune(&|_, labels| match (labels.get("target"), labels.get("probe")) {
            (Some(target), _) if gone_targets.contains(target) => true,
            (Some(target), Some(probe)) => gone_probes.contains(&(target, probe)),
            _ => false,
        });
    }

    /// Deletes the restore watch's series of `target`.
    fn remove_watch(&self, target: &str) {
        self.series
            .prune(&|name, labels| name.starts_with("veeam_restore_watch_") && labels.get("target") == Some(target));
    }
}

/// Access to the series for writing; see [`Metrics::write`].
pub struct Write<'a>(&'a Metrics);

impl std::ops::Deref for Write<'_> {
    type Target = Series;

    fn deref(&self) -> &Series {
        &self.0.series
    }
}

impl Drop for Write<'_> {
    fn drop(&mut self) {
        self.0.exposition.mark_changed();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The `result` values of `veeam_restore_probe_runs_total`.
pub const RUN_SUCCESS: &str = "success";
pub const RUN_FAILURE: &str = "failure";
pub const RUN_CANCELLED: &str = "cancelled";

/// Unix seconds of a wall-clock time.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Records one probe's runs: the [`RunObserver`] the probe code reports through.
pub struct ProbeObserver {
    pub metrics: Arc<Metrics>,
    pub target: String,
    pub probe: String,
    pub kind: &'static str,
}

impl RunObserver for ProbeObserver {
    fn phase(&self, phase: Phase, took: Duration) {
        let labels = [self.target.as_str(), self.probe.as_str(), self.kind, phase.as_str()];
        self.metrics.write().phase_last_duration.with_label_values(&labels).set(took.as_secs_f64());
    }

    fn point_created(&self, at: SystemTime) {
        self.metrics.write().point_creation.with_label_values(&[&self.target, &self.probe]).set(unix_seconds(at));
    }

    fn task(&self, operation: Operation, outcome: TaskOutcome) {
        self.metrics.write().tasks.with_label_values(&[&self.target, operation.as_str(), outcome.as_str()]).inc();
    }

    fn restore_progress(&self, ratio: f64) {
        self.metrics.write().restore_progress.with_label_values(&[&self.target, &self.probe]).set(ratio);
    }

    fn restore_session(&self, result: RestoreResult) {
        self.metrics.write().restore_sessions.with_label_values(&[&self.target, &self.probe, result.as_str()]).inc();
    }

    fn content_age(&self, age: Duration) {
        self.metrics.write().content_age.with_label_values(&[&self.target, &self.probe]).set(age.as_secs_f64());
    }

    /// A state set: 1 for the newest point's status, 0 for the others.
    fn malware_status(&self, status: Option<&str>) {
        let status = status.map(str::to_ascii_lowercase);
        let current = match status.as_deref() {
            Some(s) if MALWARE_STATES.contains(&s) => s,
            _ => "unknown",
        };
        let m = self.metrics.write();
        for state in MALWARE_STATES {
            m.point_malware
                .with_label_values(&[self.target.as_str(), self.probe.as_str(), state])
                .set(i64::from(*state == current));
        }
    }
}

/// Counts the EM client's requests for one target.
pub struct ApiObserver {
    pub metrics: Arc<Metrics>,
    pub target: String,
}

impl veeam_vbr::RequestObserver for ApiObserver {
    fn observe(&self, endpoint: veeam_vbr::Endpoint, status: Option<u16>, elapsed: Duration) {
        let code = status.map(|s| s.to_string()).unwrap_or_else(|| "error".to_owned());
        let m = self.metrics.write();
        m.api_requests.with_label_values(&[self.target.as_str(), endpoint.as_str(), code.as_str()]).inc();
        m.api_duration.with_label_values(&[self.target.as_str(), endpoint.family()]).observe(elapsed.as_secs_f64());
    }
}

impl RequestObserver for ApiObserver {
    fn observe(&self, endpoint: Endpoint, status: Option<u16>, elapsed: Duration) {
        let code = status.map(|s| s.to_string()).unwrap_or_else(|| "error".to_owned());
        let m = self.metrics.write();
        m.api_requests.with_label_values(&[self.target.as_str(), endpoint.as_str(), code.as_str()]).inc();
        m.api_duration.with_label_values(&[self.target.as_str(), endpoint.family()]).observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What rates and alerts need exists from the start; what only matters once it happened does not.
    #[test]
    fn every_vocabulary_value_is_pre_created() {
        let config = crate::config::parse(
            r#"
targets:
  - name: t
    url: https://em:9398/api/
    username: u
    password_env: P
    probes:
      - { name: m, kind: mount, vm: v, interval: 1m }
      - { name: d, kind: file_restore, mode: download, vm: v, path: C:/f, interval: 1m }
      - { name: c, kind: file_restore, mode: catalog, vm: v, path: C:/f, interval: 1m }
"#,
            std::path::Path::new("/"),
        )
        .unwrap();
        let metrics = Metrics::new();
        metrics.apply_config(&config, None);
        let text = metrics.encode();
        let has = |needle: String| assert!(text.contains(&needle), "missing {needle}");
        for probe in &config.targets[0].probes {
            for result in [RUN_SUCCESS, RUN_FAILURE] {
                has(format!("kind=\"{}\",probe=\"{}\",result=\"{result}\"", probe.kind.label(), probe.name));
            }
        }
        for result in RestoreResult::ALL {
            has(format!("probe=\"c\",result=\"{}\"", result.as_str()));
        }
        has("veeam_restore_logons_total{target=\"t\"} 0".into());
        // What only matters once it happened is not pre-created: it would multiply series.
        assert!(!text.contains("veeam_restore_logon_failures_total{"), "{text}");
        assert!(!text.contains("result=\"cancelled\""), "{text}");
        assert!(!text.contains("veeam_restore_probe_failures_total{"), "{text}");
        assert!(!text.contains("veeam_restore_server_tasks_total{"), "{text}");
        assert!(!text.contains("probe=\"m\",result=\"warning\""), "only catalog probes follow restore sessions");
    }

    #[test]
    fn probe_info_carries_the_users_labels_and_follows_reloads() {
        let config = |labels: &str| {
            let text = format!(
                "targets:\n  - name: t\n    url: https://em:9398/api/\n    username: u\n    password_env: P\n    \
                 labels: {{ site: ams }}\n    probes:\n      - {{ name: m, kind: mount, vm: v, interval: 1m, point: replica{labels} }}\n"
            );
            crate::config::parse(&text, std::path::Path::new("/")).unwrap()
        };
        let metrics = Metrics::new();
        let first = config(", labels: { tier: gold }");
        metrics.apply_config(&first, None);
        let text = metrics.encode();
        assert!(
            text.contains(
                "veeam_restore_probe_info{api=\"em\",kind=\"mount\",mode=\"\",point=\"replica\",probe=\"m\",site=\"ams\",target=\"t\",tier=\"gold\",vm=\"v\"} 1"
            ),
            "{text}"
        );
        metrics.apply_config(&config(""), Some(&first));
        let text = metrics.encode();
        assert!(!text.contains("tier=") && text.contains("site=\"ams\""), "{text}");
    }

    /// A reload removes every series of a removed target and of a removed (or re-kinded) probe,
    /// the lazily created ones included, and nothing of what stays.
    #[test]
    fn a_reload_prunes_the_series_of_what_was_removed() {
        let config = |targets: &str| crate::config::parse(targets, std::path::Path::new("/")).unwrap();
        let target = |name: &str, probes: &str| {
            format!(
                "  - name: {name}\n    url: https://em:9398/api/\n    username: u\n    password_env: P\n    probes:\n{probes}"
            )
        };
        let mount = |name: &str| format!("      - {{ name: {name}, kind: mount, vm: v, interval: 1m }}\n");
        let download = |name: &str| {
            format!("      - {{ name: {name}, kind: file_restore, mode: download, vm: v, path: C:/f, interval: 1m }}\n")
        };
        let first = config(&format!(
            "targets:\n{}{}",
            target("keep", &(mount("m") + &mount("gone") + &mount("rekinded"))),
            target("old", &mount("m"))
        ));
        let metrics = Metrics::new();
        metrics.apply_config(&first, None);
        for (t, p) in [("keep", "m"), ("keep", "gone"), ("keep", "rekinded"), ("old", "m")] {
            metrics.write().probe_failures.with_label_values(&[t, p, "mount", "timeout"]).inc();
            metrics.write().point_creation.with_label_values(&[t, p]).set(1.0);
        }
        metrics.write().api_requests.with_label_values(&["old", "logon", "503"]).inc();
        metrics.write().api_requests.with_label_values(&["keep", "logon", "503"]).inc();
        let second = config(&format!("targets:\n{}", target("keep", &(mount("m") + &download("rekinded")))));
        metrics.apply_config(&second, Some(&first));
        let text = metrics.encode();
        let series = |needle: &str| text.lines().filter(|l| !l.starts_with('#') && l.contains(needle)).count();
        assert_eq!(series("target=\"old\""), 0, "{text}");
        assert_eq!(series("probe=\"gone\""), 0, "{text}");
        assert_eq!(series("probe=\"rekinded\",reason"), 0, "the mount kind's failures went with it: {text}");
        assert!(text.contains("kind=\"file_restore\",probe=\"rekinded\",result=\"success\""), "{text}");
        assert_eq!(series("probe=\"m\",reason=\"timeout\",target=\"keep\""), 1, "{text}");
        assert_eq!(series("veeam_restore_server_requests_total{code=\"503\",endpoint=\"logon\",target=\"keep\"}"), 1);
    }
}
