//! The configuration file (`--config.file`): EM targets and the probes to run against each.
//!
//! Parsing is strict (unknown keys are errors) and reports every problem at once: each target
//! and each probe is decoded on its own, and semantic checks run over everything that decoded,
//! so one typo does not hide the next. Relative file paths resolve against the config file's
//! directory, as in Prometheus.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use crate::em::{Format, OsKind, PointKind};
use crate::secret::Secret;

/// The whole configuration, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub targets: Vec<Target>,
}

/// One Enterprise Manager.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The `target` label value.
    pub name: String,
    /// API root, e.g. `https://em.example.com:9398/api/`.
    pub url: reqwest::Url,
    pub username: String,
    pub password: PasswordSource,
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    pub format: Format,
    /// At most this many probes of this target run at once.
    pub max_concurrent_probes: usize,
    pub request_timeout: Duration,
    /// How often the logon session is kept alive (EM expires it after 15 idle minutes) and EM
    /// health is checked.
    pub keepalive_interval: Duration,
    /// Task polling starts at `poll_initial` and backs off to `poll_max`.
    pub poll_initial: Duration,
    pub poll_max: Duration,
    pub probes: Vec<Probe>,
}

/// Where a target's password comes from. Never a literal in the config or on the command line.
#[derive(Clone, Debug, PartialEq)]
pub enum PasswordSource {
    /// Re-read at every logon, trailing whitespace trimmed (Kubernetes secret files end in `\n`).
    File(PathBuf),
    /// The name of an environment variable.
    Env(String),
}

impl PasswordSource {
    pub fn read(&self) -> Result<Secret, String> {
        match self {
            PasswordSource::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret::new(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|e| format!("cannot read password_file {}: {e}", path.display())),
            PasswordSource::Env(name) => {
                std::env::var(name).map(Secret::new).map_err(|_| format!("environment variable {name} is not set"))
            }
        }
    }
}

/// One probe: what it does and how often.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// The `probe` label value, unique within its target.
    pub name: String,
    pub kind: ProbeKind,
    pub vm: String,
    pub interval: Duration,
    /// Budget for the probe's work steps. Cleanup (unmount) always runs on its own timeout.
    pub timeout: Duration,
    pub steps: StepTimeouts,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProbeKind {
    Mount {
        point: PointKind,
        os_kind: Option<OsKind>,
        browse: bool,
    },
    FileRestore {
        path: String,
        mode: RestoreMode,
        /// For `download` mode, which mounts first.
        os_kind: Option<OsKind>,
        expected_size: Option<u64>,
        expected_sha256: Option<String>,
    },
}

impl ProbeKind {
    /// The `kind` label value.
    pub fn label(&self) -> &'static str {
        match self {
            ProbeKind::Mount { .. } => "mount",
            ProbeKind::FileRestore { .. } => "file_restore",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    /// The documented catalog restore: **writes into the production VM**.
    Catalog,
    /// Mount, restore for direct download, fetch the file, unmount. Touches nothing in the VM.
    Download,
}

/// Per-step timeouts. Each bounds one step on its own.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepTimeouts {
    /// Finding the newest restore point.
    #[serde(with = "crate::duration::serde")]
    pub lookup: Duration,
    /// Mount task to `Finished`.
    #[serde(with = "crate::duration::serde")]
    pub mount: Duration,
    /// Reading the mount and listing a directory.
    #[serde(with = "crate::duration::serde")]
    pub browse: Duration,
    /// Restore task to `Finished` (catalog or download restore).
    #[serde(with = "crate::duration::serde")]
    pub restore: Duration,
    /// Catalog restore session to `Stopped`.
    #[serde(with = "crate::duration::serde")]
    pub restore_session: Duration,
    /// Fetching the restored file.
    #[serde(with = "crate::duration::serde")]
    pub download: Duration,
    /// Deleting the mount and confirming it is gone.
    #[serde(with = "crate::duration::serde")]
    pub unmount: Duration,
}

impl Default for StepTimeouts {
    fn default() -> StepTimeouts {
        let m = |n: u64| Duration::from_secs(n * 60);
        StepTimeouts {
            lookup: m(1),
            mount: m(10),
            browse: m(2),
            restore: m(10),
            restore_session: m(30),
            download: m(5),
            unmount: m(5),
        }
    }
}

// ---- raw (as written) ---------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    targets: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    url: String,
    username: String,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    tls_config: RawTls,
    #[serde(default)]
    format: Format,
    #[serde(default = "default_concurrency")]
    max_concurrent_probes: usize,
    #[serde(default = "default_request_timeout", with = "crate::duration::serde")]
    request_timeout: Duration,
    #[serde(default = "default_keepalive", with = "crate::duration::serde")]
    keepalive_interval: Duration,
    #[serde(default = "default_poll_initial", with = "crate::duration::serde")]
    poll_initial: Duration,
    #[serde(default = "default_poll_max", with = "crate::duration::serde")]
    poll_max: Duration,
    #[serde(default)]
    probes: Vec<Value>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: String,
    kind: RawKind,
    vm: String,
    #[serde(with = "crate::duration::serde")]
    interval: Duration,
    #[serde(default = "default_probe_timeout", with = "crate::duration::serde")]
    timeout: Duration,
    #[serde(default)]
    step_timeouts: StepTimeouts,
    // mount
    #[serde(default)]
    point: Option<PointKind>,
    #[serde(default)]
    os_kind: Option<OsKind>,
    #[serde(default)]
    browse: Option<bool>,
    // file_restore
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    mode: Option<RestoreMode>,
    #[serde(default)]
    expected_size: Option<u64>,
    #[serde(default)]
    expected_sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawKind {
    Mount,
    FileRestore,
}

fn default_concurrency() -> usize {
    1
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_keepalive() -> Duration {
    Duration::from_secs(60)
}
fn default_poll_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_poll_max() -> Duration {
    Duration::from_secs(10)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

/// All problems found in a configuration, each with where it is.
#[derive(Debug, PartialEq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("cannot read config file {}: {e}", path.display())]))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
}

/// Parses configuration text; relative paths resolve against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = serde_norway::from_str(text).map_err(|e| ConfigErrors(vec![yaml_error("config", &e)]))?;
    let mut errors = Vec::new();
    let mut targets = Vec::new();
    let mut target_names = HashSet::new();
    if raw.targets.is_empty() {
        errors.push("targets: at least one target is required".to_owned());
    }
    for (i, value) in raw.targets.into_iter().enumerate() {
        let at = format!("targets[{i}]{}", name_hint(&value));
        let t: RawTarget = match serde_norway::from_value(value) {
            Ok(t) => t,
            Err(e) => {
                errors.push(yaml_error(&at, &e));
                continue;
            }
        };
        if !target_names.insert(t.name.clone()) {
            errors.push(format!("{at}.name: duplicate target name {:?}", t.name));
        }
        if let Some(target) = check_target(t, &at, base_dir, &mut errors) {
            targets.push(target);
        }
    }
    if errors.is_empty() { Ok(Config { targets }) } else { Err(ConfigErrors(errors)) }
}

fn name_hint(value: &Value) -> String {
    value.get("name").and_then(Value::as_str).map(|n| format!(" ({n})")).unwrap_or_default()
}

fn yaml_error(at: &str, e: &serde_norway::Error) -> String {
    match e.location() {
        Some(l) => format!("{at}: line {} column {}: {e}", l.line(), l.column()),
        None => format!("{at}: {e}"),
    }
}

fn resolve(base_dir: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() { path } else { base_dir.join(path) }
}

/// Label values must be short and plain: they end up in every series of the target or probe.
fn check_label(value: &str, at: &str, errors: &mut Vec<String>) {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        errors.push(format!("{at}: {value:?} must be 1-64 characters of A-Z a-z 0-9 - _ ."));
    }
}

fn check_target(t: RawTarget, at: &str, base_dir: &Path, errors: &mut Vec<String>) -> Option<Target> {
    let before = errors.len();
    check_label(&t.name, &format!("{at}.name"), errors);
    let url = match reqwest::Url::parse(&t.url) {
        // Credentials in the URL would end up on the landing page and in logs.
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            errors.push(format!("{at}.url: must not contain credentials; use username and password_file"));
            None
        }
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(_) => {
            errors.push(format!("{at}.url: {:?} must be an http(s) URL with a host", t.url));
            None
        }
        Err(e) => {
            errors.push(format!("{at}.url: {:?}: {e}", t.url));
            None
        }
    };
    if url.as_ref().is_some_and(|u| u.scheme() == "http") {
        tracing::warn!(target_name = %t.name, "EM URL uses plain http: the password and session token travel unencrypted");
    }
    if t.username.is_empty() {
        errors.push(format!("{at}.username: must not be empty"));
    }
    let password = match (t.password_file, t.password_env) {
        (Some(file), None) => Some(PasswordSource::File(resolve(base_dir, file))),
        (None, Some(env)) if !env.is_empty() => Some(PasswordSource::Env(env)),
        (None, Some(_)) => {
            errors.push(format!("{at}.password_env: must not be empty"));
            None
        }
        (Some(_), Some(_)) => {
            errors.push(format!("{at}: set only one of password_file and password_env"));
            None
        }
        (None, None) => {
            errors.push(format!("{at}: one of password_file or password_env is required"));
            None
        }
    };
    if t.tls_config.insecure_skip_verify && t.tls_config.ca_file.is_some() {
        errors.push(format!("{at}.tls_config: ca_file and insecure_skip_verify contradict each other"));
    }
    let ca_file = t.tls_config.ca_file.map(|f| resolve(base_dir, f));
    if let Some(f) = &ca_file
        && !f.is_file()
    {
        errors.push(format!("{at}.tls_config.ca_file: {} is not a readable file", f.display()));
    }
    if t.max_concurrent_probes == 0 {
        errors.push(format!("{at}.max_concurrent_probes: must be at least 1"));
    }
    for (key, d) in [
        ("request_timeout", t.request_timeout),
        ("keepalive_interval", t.keepalive_interval),
        ("poll_initial", t.poll_initial),
        ("poll_max", t.poll_max),
    ] {
        if d.is_zero() {
            errors.push(format!("{at}.{key}: must be greater than 0"));
        }
    }
    if t.keepalive_interval >= Duration::from_secs(14 * 60) {
        errors.push(format!("{at}.keepalive_interval: must be well under EM's 15m idle timeout"));
    }
    if t.poll_initial > t.poll_max {
        errors.push(format!("{at}.poll_initial: must not exceed poll_max"));
    }
    if t.probes.is_empty() {
        errors.push(format!("{at}.probes: at least one probe is required"));
    }
    let mut probes = Vec::new();
    let mut probe_names = HashSet::new();
    for (j, value) in t.probes.into_iter().enumerate() {
        let at = format!("{at}.probes[{j}]{}", name_hint(&value));
        match serde_norway::from_value::<RawProbe>(value) {
            Ok(p) => {
                if !probe_names.insert(p.name.clone()) {
                    errors.push(format!("{at}.name: duplicate probe name {:?}", p.name));
                }
                if let Some(p) = check_probe(p, &at, errors) {
                    probes.push(p);
                }
            }
            Err(e) => errors.push(yaml_error(&at, &e)),
        }
    }
    (errors.len() == before).then(|| Target {
        name: t.name,
        url: url.expect("checked"),
        username: t.username,
        password: password.expect("checked"),
        ca_file,
        insecure_skip_verify: t.tls_config.insecure_skip_verify,
        format: t.format,
        max_concurrent_probes: t.max_concurrent_probes,
        request_timeout: t.request_timeout,
        keepalive_interval: t.keepalive_interval,
        poll_initial: t.poll_initial,
        poll_max: t.poll_max,
        probes,
    })
}

fn check_probe(p: RawProbe, at: &str, errors: &mut Vec<String>) -> Option<Probe> {
    let before = errors.len();
    check_label(&p.name, &format!("{at}.name"), errors);
    if p.vm.is_empty() {
        errors.push(format!("{at}.vm: must not be empty"));
    }
    if p.interval < Duration::from_secs(1) {
        errors.push(format!("{at}.interval: must be at least 1s"));
    }
    if p.timeout.is_zero() {
        errors.push(format!("{at}.timeout: must be greater than 0"));
    }
    let s = &p.step_timeouts;
    for (key, d) in [
        ("lookup", s.lookup),
        ("mount", s.mount),
        ("browse", s.browse),
        ("restore", s.restore),
        ("restore_session", s.restore_session),
        ("download", s.download),
        ("unmount", s.unmount),
    ] {
        if d.is_zero() {
            errors.push(format!("{at}.step_timeouts.{key}: must be greater than 0"));
        }
    }
    let misplaced = |keys: &[(&str, bool)], kind: &str, errors: &mut Vec<String>| {
        for (key, set) in keys {
            if *set {
                errors.push(format!("{at}.{key}: not a setting of a {kind} probe"));
            }
        }
    };
    let kind = match p.kind {
        RawKind::Mount => {
            misplaced(
                &[
                    ("path", p.path.is_some()),
                    ("mode", p.mode.is_some()),
                    ("expected_size", p.expected_size.is_some()),
                    ("expected_sha256", p.expected_sha256.is_some()),
                ],
                "mount",
                errors,
            );
            ProbeKind::Mount {
                point: p.point.unwrap_or(PointKind::Backup),
                os_kind: p.os_kind,
                browse: p.browse.unwrap_or(true),
            }
        }
        RawKind::FileRestore => {
            misplaced(&[("point", p.point.is_some()), ("browse", p.browse.is_some())], "file_restore", errors);
            let mode = p.mode.unwrap_or_else(|| {
                errors.push(format!("{at}.mode: required for file_restore (catalog or download)"));
                RestoreMode::Download
            });
            if mode == RestoreMode::Catalog && p.os_kind.is_some() {
                errors.push(format!("{at}.os_kind: only used by mount and download probes"));
            }
            if mode == RestoreMode::Catalog && (p.expected_size.is_some() || p.expected_sha256.is_some()) {
                errors.push(format!(
                    "{at}: expected_size/expected_sha256 need mode download (catalog restores are not read back)"
                ));
            }
            let path = p.path.filter(|s| !s.trim().is_empty()).unwrap_or_else(|| {
                errors.push(format!("{at}.path: required for file_restore"));
                String::new()
            });
            let sha = p.expected_sha256.map(|s| s.to_ascii_lowercase());
            if let Some(h) = &sha
                && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                errors.push(format!("{at}.expected_sha256: must be 64 hex digits"));
            }
            ProbeKind::FileRestore {
                path,
                mode,
                os_kind: p.os_kind,
                expected_size: p.expected_size,
                expected_sha256: sha,
            }
        }
    };
    (errors.len() == before).then_some(Probe {
        name: p.name,
        kind,
        vm: p.vm,
        interval: p.interval,
        timeout: p.timeout,
        steps: p.step_timeouts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
targets:
  - name: em-prod
    url: https://em.example.com:9398/api/
    username: svc-canary
    password_file: secrets/password
    probes:
      - { name: win-mount, kind: mount, vm: canary-win01, interval: 15m }
      - name: canary-file
        kind: file_restore
        vm: canary-win01
        path: C:/canary/canary.txt
        mode: download
        expected_size: 35
        interval: 1h
        step_timeouts: { mount: 2m }
"#;

    #[test]
    fn good_config_with_defaults_and_relative_paths() {
        let c = parse(GOOD, Path::new("/etc/vre")).unwrap();
        let t = &c.targets[0];
        assert_eq!(t.password, PasswordSource::File(PathBuf::from("/etc/vre/secrets/password")));
        assert_eq!(t.format, Format::Xml);
        assert_eq!(t.max_concurrent_probes, 1);
        assert_eq!(t.probes.len(), 2);
        assert_eq!(t.probes[0].kind, ProbeKind::Mount { point: PointKind::Backup, os_kind: None, browse: true });
        assert_eq!(t.probes[1].steps.mount, Duration::from_secs(120));
        assert_eq!(t.probes[1].steps.unmount, Duration::from_secs(300));
    }

    #[test]
    fn every_problem_is_reported_with_its_location() {
        let bad = r#"
targets:
  - name: em-prod
    url: not a url
    username: svc
    password_file: a
    password_env: B
    probes:
      - { name: m, kind: mount, vm: v, interval: 5x }
      - { name: m2, kind: mount, vm: v, interval: 1m, path: C:/x }
      - { name: f, kind: file_restore, vm: v, interval: 1m }
  - name: em-prod
    url: https://em:9398/api/
    username: svc
    password_env: P
    probes:
      - { name: "bad name", kind: mount, vm: v, interval: 1m, intervall: 2m }
  - name: em-leaky
    url: https://svc:hunter2@em:9398/api/
    username: svc
    password_env: P
    probes:
      - { name: m, kind: mount, vm: v, interval: 1m }
"#;
        let errors = parse(bad, Path::new("/")).unwrap_err().0;
        let expected = [
            "targets[0] (em-prod).url: \"not a url\"",
            "targets[0] (em-prod): set only one of password_file and password_env",
            "targets[0] (em-prod).probes[0] (m): ",
            "targets[0] (em-prod).probes[1] (m2).path: not a setting of a mount probe",
            "targets[0] (em-prod).probes[2] (f).mode: required for file_restore",
            "targets[0] (em-prod).probes[2] (f).path: required for file_restore",
            "targets[1] (em-prod).name: duplicate target name",
            "targets[1] (em-prod).probes[0] (bad name): unknown field `intervall`",
            "targets[2] (em-leaky).url: must not contain credentials",
        ];
        assert!(!errors.iter().any(|e| e.contains("hunter2")), "errors never echo a password: {errors:#?}");
        for e in expected {
            assert!(errors.iter().any(|x| x.starts_with(e)), "missing {e:?} in {errors:#?}");
        }
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    }

    #[test]
    fn syntax_errors_have_line_numbers() {
        let errors = parse("targets:\n  - name: [\n", Path::new("/")).unwrap_err().0;
        assert!(errors[0].contains("line"), "{errors:?}");
        let errors = parse("targets: []\nextra: 1\n", Path::new("/")).unwrap_err().0;
        assert!(errors[0].contains("unknown field `extra`"), "{errors:?}");
    }

    #[test]
    fn password_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(PasswordSource::File(file).read().unwrap().expose(), "s3cret");
        assert!(PasswordSource::Env("VRE_TEST_SURELY_UNSET".into()).read().is_err());
    }
}
