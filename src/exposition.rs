//! The `/metrics` body, encoded off the scrape path.
//!
//! Encoding every series is the expensive part of a scrape (tens of milliseconds at 1,000
//! probes), while results change about once a second at most. So a background task re-encodes
//! when something changed, keeps the text and a gzip copy, and a scrape only copies bytes: it
//! never waits for an encode, nor on a lock held across EM I/O. Process metrics are read fresh at
//! each scrape and appended; compressed, they are a second gzip member (RFC 1952 allows several
//! per file, and Prometheus, curl and Python's urllib3 read them all).

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::metrics::Metrics;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Shortest time between two encodes: how stale a scrape can be after a change.
const MIN_GAP: Duration = Duration::from_millis(200);
/// Encodes are spaced by this multiple of their own cost, so they take at most 1/50 of a core
/// however many series there are.
const COST_FACTOR: u32 = 50;

/// The latest encoding of the registry.
pub struct Snapshot {
    pub plain: Bytes,
    pub gzip: Bytes,
}

pub struct Exposition {
    registry: Registry,
    changed: AtomicBool,
    current: RwLock<Arc<Snapshot>>,
}

impl Exposition {
    pub fn new(registry: Registry) -> Exposition {
        let empty = Arc::new(Snapshot { plain: Bytes::new(), gzip: Bytes::new() });
        Exposition { registry, changed: AtomicBool::new(true), current: RwLock::new(empty) }
    }

    /// Something changed: the next refresh encodes again.
    pub fn mark_changed(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// What a scrape serves: a reference-counted copy, never blocked by an encode.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Encodes again if anything changed since the last encode, and says how long to wait before
    /// the next refresh.
    pub fn refresh(&self) -> Duration {
        if !self.changed.swap(false, Ordering::AcqRel) {
            return MIN_GAP;
        }
        let started = Instant::now();
        let mut plain = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut plain) {
            tracing::error!(err = %e, "cannot encode metrics");
        }
        let gzip = gzip(&plain);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Snapshot { plain: plain.into(), gzip: gzip.into() });
        release_freed_memory();
        (started.elapsed() * COST_FACTOR).max(MIN_GAP)
    }
}

/// Hands memory the encode freed back to the system. The encode allocates megabytes at 1,000
/// probes and frees them at once; glibc keeps such memory for reuse, and resident memory would
/// creep up with every encode that lands in a different place.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps the exposition of `metrics` fresh for as long as the process serves it.
pub async fn keep_fresh(metrics: Arc<Metrics>) {
    loop {
        let m = metrics.clone();
        let gap = tokio::task::spawn_blocking(move || m.exposition().refresh()).await.unwrap_or(MIN_GAP);
        tokio::time::sleep(gap).await;
    }
}

/// The body of a scrape in two parts: the snapshot (shared, not copied) and fresh process
/// metrics, both gzip-compressed if `gzip_wanted`.
pub fn body(snapshot: &Snapshot, gzip_wanted: bool) -> [Bytes; 2] {
    let process = process_metrics();
    if gzip_wanted { [snapshot.gzip.clone(), gzip(&process).into()] } else { [snapshot.plain.clone(), process.into()] }
}

/// One gzip member. Fast compression: the cost is paid on every change, and the text format
/// compresses tenfold even so.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 8), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// The standard `process_*` metrics, read now. `process_cpu_seconds_total` has the kernel's
/// tick precision (10 ms), not whole seconds, so that CPU graphs are smooth.
pub fn process_metrics() -> Vec<u8> {
    #[cfg(target_os = "linux")]
    {
        linux::process_metrics().unwrap_or_default().into_bytes()
    }
    #[cfg(windows)]
    {
        crate::platform::process_metrics().unwrap_or_default().into_bytes()
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        Vec::new()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fmt::Write as _;

    /// Reads `/proc/self/stat` (see proc(5)); `None` if it cannot be read or parsed.
    pub fn process_metrics() -> Option<String> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name may contain spaces and parentheses; fields are counted after the last ')'.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
        // proc(5) numbers fields from 1 with the pid; `fields[0]` is field 3 (state).
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
        let cpu = (field(14)? + field(15)?) / ticks;
        let threads = field(20)?;
        let start = boot_time()? + field(22)? / ticks;
        let virtual_bytes = field(23)?;
        let resident_bytes = field(24)? * page;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count().saturating_sub(1);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        metric("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu);
        metric("process_open_fds", "gauge", "Number of open file descriptors.", open_fds as f64);
        if let Some(max) = max_fds() {
            metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", max);
        }
        metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", resident_bytes);
        metric("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", start);
        metric("process_threads", "gauge", "Number of OS threads in the process.", threads);
        metric("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", virtual_bytes);
        Some(out)
    }

    fn boot_time() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
    }

    fn max_fds() -> Option<f64> {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we own.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        ok.then_some(limit.rlim_cur as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn encodes_only_after_a_change_and_serves_both_encodings() {
        let metrics = Metrics::new();
        let exposition = metrics.exposition();
        exposition.refresh();
        let first = exposition.snapshot();
        assert!(std::str::from_utf8(&first.plain).unwrap().contains("veeam_restore_exporter_build_info"));
        exposition.refresh();
        assert!(Arc::ptr_eq(&first, &exposition.snapshot()), "nothing changed, nothing encoded");
        metrics.write().reload_success.set(1);
        exposition.refresh();
        let second = exposition.snapshot();
        let line = "\nveeam_restore_exporter_config_last_reload_successful 1\n";
        assert!(!std::str::from_utf8(&first.plain).unwrap().contains(line));
        assert!(std::str::from_utf8(&second.plain).unwrap().contains(line));

        // Two gzip members read back as snapshot followed by process metrics.
        let mut text = String::new();
        let zipped = body(&second, true).concat();
        flate2::read::MultiGzDecoder::new(&zipped[..]).read_to_string(&mut text).unwrap();
        assert!(text.starts_with(std::str::from_utf8(&second.plain).unwrap()));
        #[cfg(target_os = "linux")]
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
        let plain = String::from_utf8(body(&second, false).concat()).unwrap();
        assert!(plain.starts_with(std::str::from_utf8(&second.plain).unwrap()) && plain.len() > second.plain.len());
    }

    /// A write handle held across an encode (as across an EM request) still gets its writes
    /// encoded: the change is marked when the handle is dropped.
    #[test]
    fn writes_are_marked_when_the_handle_is_dropped() {
        let metrics = Metrics::new();
        let exposition = metrics.exposition();
        exposition.refresh();
        let handle = metrics.write();
        exposition.refresh();
        handle.reload_success.set(1);
        exposition.refresh();
        let text = |e: &Exposition| String::from_utf8(e.snapshot().plain.to_vec()).unwrap();
        let line = "\nveeam_restore_exporter_config_last_reload_successful 1\n";
        assert!(!text(exposition).contains(line));
        drop(handle);
        exposition.refresh();
        assert!(text(exposition).contains(line));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_come_from_proc() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        let text = String::from_utf8(process_metrics()).unwrap();
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("process_cpu_seconds_total") > 0.0);
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_start_time_seconds") > 1.6e9);
    }
}
