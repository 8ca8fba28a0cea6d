//! Runs the real `veeam-restore-exporter` binary as a child process on `127.0.0.1:0`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::eventually;

pub const BIN: &str = env!("CARGO_BIN_EXE_veeam-restore-exporter");

/// A config file and password file in a temp dir, plus a state directory.
pub struct Setup {
    pub dir: tempfile::TempDir,
    /// The target's `keepalive_interval`.
    pub keepalive: &'static str,
}

impl Setup {
    /// `probes` is YAML for the probe list, indented for the `probes:` key of one target.
    pub fn new(api_url: &str, probes: &str) -> Setup {
        Setup::with_password(api_url, probes, "canary")
    }

    pub fn with_password(api_url: &str, probes: &str, password: &str) -> Setup {
        Setup::with(api_url, probes, password, "1s")
    }

    pub fn with(api_url: &str, probes: &str, password: &str, keepalive: &'static str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password"), format!("{password}\n")).unwrap();
        let setup = Setup { dir, keepalive };
        setup.write_config(api_url, probes);
        setup
    }

    pub fn write_config(&self, api_url: &str, probes: &str) {
        let config = format!(
            "targets:\n  - name: sim\n    url: {api_url}\n    username: svc-canary\n    password_file: password\n    \
             keepalive_interval: {}\n    poll_initial: 50ms\n    poll_max: 200ms\n    request_timeout: 5s\n    probes:\n{probes}",
            self.keepalive
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Mount records currently on disk.
    pub fn records(&self) -> usize {
        std::fs::read_dir(self.storage().join("mounts"))
            .map(|d| d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
            .unwrap_or(0)
    }
}

pub struct Exporter {
    child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Exporter {
    /// With `--web.enable-lifecycle`, so tests can `POST /-/reload`.
    pub async fn start(config: &Path, storage: &Path) -> Exporter {
        Exporter::start_with(&[
            &format!("--config.file={}", config.display()),
            &format!("--storage.path={}", storage.display()),
            "--web.enable-lifecycle",
        ])
        .await
    }

    pub async fn start_with(args: &[&str]) -> Exporter {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--web.listen-address=127.0.0.1:0", "--log.level=debug", "--shutdown.grace-period=20s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("exporter starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let found = log.clone();
        let addr = eventually(Duration::from_secs(20), "the exporter to listen", || {
            let found = found.clone();
            async move {
                let lines = found.lock().unwrap();
                lines.iter().find(|l| l.contains("Listening on")).and_then(|l| listen_address(l))
            }
        })
        .await;
        Exporter { child, addr, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn metrics(&self) -> String {
        let response = reqwest::get(self.url("/metrics")).await.expect("/metrics answers");
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// Waits until `name{labels}` satisfies `ok`; returns the value.
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], ok: impl Fn(f64) -> bool) -> f64 {
        let what = format!("{name}{labels:?}");
        eventually(Duration::from_secs(30), &what, || async {
            value(&self.metrics().await, name, labels).filter(|v| ok(*v))
        })
        .await
    }

    pub fn logs(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = &mut self.child;
        eventually(limit, "the exporter to exit", || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address in the "Listening on" line, in logfmt or JSON.
fn listen_address(line: &str) -> Option<String> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        return v["address"].as_str().map(str::to_owned);
    }
    line.split_whitespace().find_map(|f| f.strip_prefix("address=")).map(str::to_owned)
}

/// The sum of the series `name` whose labels include all of `labels` (as PromQL's `sum`);
/// `None` when there is none.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, v) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            labels.iter().all(|(k, val)| rest.contains(&format!("{k}=\"{val}\""))).then(|| v.parse().ok())?
        })
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}
