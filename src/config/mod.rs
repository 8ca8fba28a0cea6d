//! The configuration file (`--config.file`): EM targets and the probes to run against each.
//!
//! Parsing is strict (unknown keys are errors) and reports every problem at once: each target
//! and each probe is decoded on its own, and semantic checks run over everything that decoded,
//! so one typo does not hide the next. Relative file paths resolve against the config file's
//! directory, as in Prometheus.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_norway::Value;

use crate::duration::Prom;
use crate::em::Format;
use crate::fields::Fields;
use crate::probe::{Api, Kind, Spec, StepTimeouts};
use crate::secret::Secret;

/// The whole configuration, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub targets: Vec<Target>,
}

/// One Enterprise Manager, or one Backup & Replication server (`api: vbr`).
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The `target` label value.
    pub name: String,
    /// Which API it speaks (`api:`, default `em`).
    pub api: Api,
    /// EM: the API root, e.g. `https://em.example.com:9398/api/`. VBR: the server, e.g.
    /// `https://vbr.example.com:9419`.
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
    /// `restore_watch:`: count every restore session on EM (opt-in; EM only).
    pub restore_watch: Option<RestoreWatch>,
    /// VBR only: every FLR mount asks VBR to unmount it after this much inactivity, a last
    /// safety net should the exporter and its records both be lost.
    pub auto_unmount: Duration,
    pub probes: Vec<Spec>,
}

/// `restore_watch: { interval: 5m, running_max_age: 6h }`: the passive restore watch of a
/// target (see `crate::watch`).
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreWatch {
    /// How often EM's restore sessions are read.
    pub interval: Duration,
    /// A restore running longer is worth an alert (exported for the alert to compare).
    pub running_max_age: Duration,
}

const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(300);
const DEFAULT_RUNNING_MAX_AGE: Duration = Duration::from_secs(6 * 3600);

impl RestoreWatch {
    fn decode(f: &mut Fields) -> Option<RestoreWatch> {
        let mut inner = f.nested("restore_watch")?;
        let interval = positive_duration(&mut inner, "interval", DEFAULT_WATCH_INTERVAL);
        if interval < Duration::from_secs(1) {
            inner.error("interval", "must be at least 1s: each read pages through EM's restore sessions");
        }
        let running_max_age = positive_duration(&mut inner, "running_max_age", DEFAULT_RUNNING_MAX_AGE);
        inner.finish(None).then_some(RestoreWatch { interval, running_max_age })
    }
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

const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
const DEFAULT_POLL_INITIAL: Duration = Duration::from_millis(500);
const DEFAULT_POLL_MAX: Duration = Duration::from_secs(10);
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A first failure is confirmed this soon: two failures in a row (what the alerts wait for) then
/// come within minutes, not an interval.
const DEFAULT_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5 * 60);
/// VBR's `autoUnmount` default is 30 minutes; an hour stays well above every default step.
const DEFAULT_AUTO_UNMOUNT: Duration = Duration::from_secs(60 * 60);

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
    let root: Value = serde_norway::from_str(text).map_err(|e| ConfigErrors(vec![yaml_error("config", &e)]))?;
    let mut errors = Vec::new();
    let mut targets = Vec::new();
    let mut target_names = HashSet::new();
    let raw_targets: Vec<Value> = {
        let Some(mut top) = Fields::new(root, "config", &mut errors) else { return Err(ConfigErrors(errors)) };
        let listed = top.required("targets").unwrap_or_default();
        top.finish(None);
        listed
    };
    if raw_targets.is_empty() && errors.is_empty() {
        errors.push("targets: at least one target is required".to_owned());
    }
    for (i, value) in raw_targets.into_iter().enumerate() {
        let at = format!("targets[{i}]{}", name_hint(&value));
        // Checked on the raw value, so a target with other problems still counts.
        if let Some(name) = value.get("name").and_then(Value::as_str)
            && !target_names.insert(name.to_owned())
        {
            errors.push(format!("{at}.name: duplicate target name {name:?}"));
        }
        if let Some(target) = decode_target(value, &at, base_dir, &mut errors) {
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
fn check_label(f: &mut Fields, key: &str, value: &str) {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        f.error(key, format!("{value:?} must be 1-64 characters of A-Z a-z 0-9 - _ ."));
    }
}

/// Label names the exporter uses itself (or Prometheus adds): user labels must not clash.
pub const RESERVED_LABELS: &[&str] = &[
    "target",
    "api",
    "probe",
    "kind",
    "mode",
    "vm",
    "point",
    "job",
    "instance",
    "le",
    "quantile",
    "reason",
    "phase",
    "operation",
    "result",
    "endpoint",
    "code",
    "state",
    "version",
    "revision",
    "rustversion",
];

/// `labels:`: user-chosen labels (e.g. `site`, `tier`) for `veeam_restore_probe_info`.
fn decode_labels(f: &mut Fields) -> BTreeMap<String, String> {
    let labels: BTreeMap<String, String> = f.or("labels", BTreeMap::new());
    for (name, value) in &labels {
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with("__");
        if !valid_name {
            f.error(
                "labels",
                format!("{name:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)"),
            );
        } else if RESERVED_LABELS.contains(&name.as_str()) {
            f.error("labels", format!("{name:?} is a label the exporter sets itself"));
        }
        if value.is_empty() || value.chars().count() > 128 {
            f.error("labels", format!("the value of {name:?} must be 1-128 characters"));
        }
    }
    labels
}

/// A duration key with a default, which must be greater than 0.
fn positive_duration(f: &mut Fields, key: &str, default: Duration) -> Duration {
    let Prom(d) = f.or(key, Prom(default));
    if d.is_zero() {
        f.error(key, "must be greater than 0");
    }
    d
}

fn decode_url(f: &mut Fields) -> Option<reqwest::Url> {
    let text: String = f.required("url")?;
    let url = match reqwest::Url::parse(&text) {
        // Credentials in the URL would end up on the landing page and in logs.
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            f.error("url", "must not contain credentials; use username and password_file");
            return None;
        }
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        Ok(_) => {
            f.error("url", format!("{text:?} must be an http(s) URL with a host"));
            return None;
        }
        Err(e) => {
            f.error("url", format!("{text:?}: {e}"));
            return None;
        }
    };
    Some(url)
}

fn decode_password(f: &mut Fields, base_dir: &Path) -> Option<PasswordSource> {
    let file: Option<PathBuf> = f.optional("password_file");
    let env: Option<String> = f.optional("password_env");
    match (file, env) {
        (Some(file), None) => Some(PasswordSource::File(resolve(base_dir, file))),
        (None, Some(env)) if !env.is_empty() => Some(PasswordSource::Env(env)),
        (None, Some(_)) => {
            f.error("password_env", "must not be empty");
            None
        }
        (Some(_), Some(_)) => {
            f.error("", "set only one of password_file and password_env");
            None
        }
        (None, None) => {
            f.error("", "one of password_file or password_env is required");
            None
        }
    }
}

/// `tls_config`: `(ca_file, insecure_skip_verify)`.
fn decode_tls(f: &mut Fields, base_dir: &Path) -> (Option<PathBuf>, bool) {
    let Some(mut tls) = f.nested("tls_config") else { return (None, false) };
    let ca_file: Option<PathBuf> = tls.optional("ca_file");
    let insecure = tls.or("insecure_skip_verify", false);
    let ca_file = ca_file.map(|c| resolve(base_dir, c));
    if insecure && ca_file.is_some() {
        tls.error("", "ca_file and insecure_skip_verify contradict each other");
    }
    if let Some(c) = &ca_file
        && !c.is_file()
    {
        tls.error("ca_file", format!("{} is not a readable file", c.display()));
    }
    tls.finish(None);
    (ca_file, insecure)
}

fn decode_target(value: Value, at: &str, base_dir: &Path, errors: &mut Vec<String>) -> Option<Target> {
    let mut f = Fields::new(value, at, errors)?;
    let name: Option<String> = f.required("name");
    if let Some(n) = &name {
        check_label(&mut f, "name", n);
    }
    let api: Api = f.or("api", Api::Em);
    let url = decode_url(&mut f);
    if url.as_ref().is_some_and(|u| u.scheme() == "http") {
        tracing::warn!(
            target_name = name.as_deref().unwrap_or(""),
            "EM URL uses plain http: the password and session token travel unencrypted"
        );
    }
    let username: Option<String> = f.required("username");
    if username.as_deref() == Some("") {
        f.error("username", "must not be empty");
    }
    let password = decode_password(&mut f, base_dir);
    let (ca_file, insecure_skip_verify) = decode_tls(&mut f, base_dir);
    let (format, restore_watch, auto_unmount) = decode_api_keys(&mut f, api);
    let max_concurrent_probes = f.or("max_concurrent_probes", 1usize);
    if max_concurrent_probes == 0 {
        f.error("max_concurrent_probes", "must be at least 1");
    }
    let request_timeout = positive_duration(&mut f, "request_timeout", DEFAULT_REQUEST_TIMEOUT);
    let keepalive_interval = positive_duration(&mut f, "keepalive_interval", DEFAULT_KEEPALIVE);
    if keepalive_interval >= Duration::from_secs(14 * 60) {
        f.error("keepalive_interval", "must be well under EM's 15m idle timeout");
    }
    let poll_initial = positive_duration(&mut f, "poll_initial", DEFAULT_POLL_INITIAL);
    let poll_max = positive_duration(&mut f, "poll_max", DEFAULT_POLL_MAX);
    if poll_initial > poll_max {
        f.error("poll_initial", "must not exceed poll_max");
    }

    let target_labels = decode_labels(&mut f);
    let retry = decode_retry(&mut f);
    let raw_probes: Vec<Value> = f.or("probes", Vec::new());
    if raw_probes.is_empty() {
        f.error("probes", "at least one probe is required");
    }
    let mut probes = Vec::new();
    let mut probe_names = HashSet::new();
    for (j, value) in raw_probes.into_iter().enumerate() {
        let at = format!("{}.probes[{j}]{}", f.at(), name_hint(&value));
        if let Some(p) = decode_probe(value, &at, api, retry, &target_labels, f.errors()) {
            check_auto_unmount(&mut f, api, auto_unmount, &p);
            if !probe_names.insert(p.name.clone()) {
                f.errors().push(format!("{at}.name: duplicate probe name {:?}", p.name));
            }
            probes.push(p);
        }
    }
    let owner = match api {
        Api::Em => "an em target",
        Api::Vbr => "a vbr target",
    };
    if !f.finish(Some(owner)) {
        return None;
    }
    Some(Target {
        name: name?,
        api,
        url: url?,
        username: username?,
        password: password?,
        ca_file,
        insecure_skip_verify,
        format,
        max_concurrent_probes,
        request_timeout,
        keepalive_interval,
        poll_initial,
        poll_max,
        restore_watch,
        auto_unmount,
        probes,
    })
}

/// The keys only one API has: EM's `format` and `restore_watch`, VBR's `auto_unmount`. The
/// other API's keys are left for `finish` to report as not a setting of that target.
fn decode_api_keys(f: &mut Fields, api: Api) -> (Format, Option<RestoreWatch>, Duration) {
    match api {
        Api::Em => (f.or("format", Format::Xml), RestoreWatch::decode(f), DEFAULT_AUTO_UNMOUNT),
        // VBR speaks JSON only.
        Api::Vbr => (Format::Json, None, decode_auto_unmount(f)),
    }
}

/// `retry_after_failure`: `Some(None)` for an explicit `0s` (off), `None` when not set.
fn decode_retry(f: &mut Fields) -> Option<Option<Duration>> {
    let Prom(d) = f.optional::<Prom>("retry_after_failure")?;
    Some((!d.is_zero()).then_some(d))
}

/// `auto_unmount` (VBR): whole minutes, as VBR takes it.
fn decode_auto_unmount(f: &mut Fields) -> Duration {
    let d = positive_duration(f, "auto_unmount", DEFAULT_AUTO_UNMOUNT);
    if !d.as_secs().is_multiple_of(60) || d < Duration::from_secs(60) {
        f.error("auto_unmount", "must be whole minutes (VBR counts inactivity in minutes)");
    }
    d
}

/// VBR's auto-unmount must never end a mount a probe is still working on: it has to outlast
/// every step of every probe, with room to spare.
fn check_auto_unmount(f: &mut Fields, api: Api, auto_unmount: Duration, p: &Spec) {
    if api != Api::Vbr {
        return;
    }
    let longest = p.kind.phases_on(api).iter().map(|phase| p.steps.get(*phase)).max().unwrap_or_default();
    if auto_unmount < longest + Duration::from_secs(5 * 60) {
        f.error(
            "auto_unmount",
            format!(
                "{} must exceed the longest step timeout of probe {:?} ({}) by 5m at least",
                crate::duration::format(auto_unmount),
                p.name,
                crate::duration::format(longest)
            ),
        );
    }
}

fn decode_probe(
    value: Value,
    at: &str,
    api: Api,
    target_retry: Option<Option<Duration>>,
    target_labels: &BTreeMap<String, String>,
    errors: &mut Vec<String>,
) -> Option<Spec> {
    let mut f = Fields::new(value, at, errors)?;
    let mut labels = target_labels.clone();
    labels.extend(decode_labels(&mut f));
    let name: Option<String> = f.required("name");
    if let Some(n) = &name {
        check_label(&mut f, "name", n);
    }
    let vm: Option<String> = f.required("vm");
    if vm.as_deref() == Some("") {
        f.error("vm", "must not be empty");
    }
    let interval = f.required::<Prom>("interval").map(|Prom(d)| d);
    if interval.is_some_and(|d| d < Duration::from_secs(1)) {
        f.error("interval", "must be at least 1s");
    }
    let timeout = positive_duration(&mut f, "timeout", DEFAULT_PROBE_TIMEOUT);
    let retry = decode_retry(&mut f).or(target_retry);
    let kind = Kind::decode(&mut f);
    let owner = kind.as_ref().map(Kind::owner);
    let steps = match &kind {
        Some(k) => StepTimeouts::decode(&mut f, k.phases_on(api), owner.as_deref().unwrap_or("this probe")),
        None => {
            f.raw("step_timeouts");
            StepTimeouts::default()
        }
    };
    // Without a known kind, its keys cannot be judged: only the kind's error is reported.
    let kind = kind?;
    if api == Api::Vbr && kind.point() != crate::em::PointKind::Backup {
        f.error("point", "VBR's file-level restore mounts backups; replica points are EM only");
    }
    if !f.finish(owner.as_deref()) {
        return None;
    }
    // Confirming a failure runs the probe again: not by default for kinds that write into the VM.
    let default_retry = (!kind.writes_into_vm()).then_some(DEFAULT_RETRY_AFTER_FAILURE);
    let retry_after_failure = retry.unwrap_or(default_retry);
    Some(Spec { name: name?, vm: vm?, interval: interval?, timeout, steps, kind, api, retry_after_failure, labels })
}

#[cfg(test)]
mod tests;
