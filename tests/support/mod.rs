//! Helpers shared by the integration tests. Nothing here sleeps for a fixed time to wait for a
//! condition: waiting is polling with a bounded deadline.

pub mod exporter;
pub mod matrix;

use std::future::Future;
use std::time::{Duration, Instant};

use veeam_restore_exporter::em::{Client, ClientConfig, Format, Session, Task};
use veeam_restore_exporter::secret::Secret;
use veeam_restore_exporter::sim::{self, Quirk, SimConfig, SimServer, Timings};

/// Held by the long matrix and crash-loop tests, so that they run one at a time: each starts
/// hundreds of runs with second-long timeouts, and on a 2-core machine four of them at once
/// starve each other's exporters past those timeouts.
pub async fn one_heavy_test_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

pub const USER: &str = "svc-canary";
pub const PASSWORD: &str = "canary";

/// Fast simulated timings so tests finish quickly.
pub fn fast_timings() -> Timings {
    Timings {
        session_idle_timeout: Duration::from_secs(900),
        task_running: Duration::from_millis(100),
        task_collect_lag: Duration::from_millis(100),
        restore_duration: Duration::from_millis(800),
    }
}

pub async fn start_sim() -> SimServer {
    start_sim_with(&[]).await
}

/// A simulator imitating the given EM quirks.
pub async fn start_sim_with(quirks: &[Quirk]) -> SimServer {
    let config = SimConfig { timings: fast_timings(), quirks: quirks.to_vec(), ..SimConfig::default() };
    sim::start(config).await.expect("simulator starts")
}

pub fn client(sim: &SimServer, format: Format) -> Client {
    let mut config = ClientConfig::new(sim.api_url.parse().unwrap(), USER, Secret::new(PASSWORD));
    config.format = format;
    config.request_timeout = Duration::from_secs(5);
    Client::new(config, None).expect("client builds")
}

/// Polls `check` until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls a task until EM reports it `Finished`.
pub async fn finish(session: &Session, task: &Task) -> Task {
    let href = task.href.clone();
    eventually(Duration::from_secs(10), "task to finish", || async {
        let t = session.task(&href).await.expect("task poll succeeds");
        t.is_finished().then_some(t)
    })
    .await
}
