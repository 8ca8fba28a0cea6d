//! Log lines the way Prometheus components write them: logfmt with `ts`, `level` (lower case)
//! and `msg` first, or flat JSON with the same keys, one event per line on stderr, or appended
//! to `--log.file` (a Windows service has no console).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Installs the global subscriber: `level` and above (noisy HTTP crates at `warn`), in `format`,
/// on stderr or appended to `file` (its directory is created if missing).
pub fn init(level: &str, format: LogFormat, file: Option<&Path>) -> Result<(), String> {
    let file = match file {
        None => None,
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let opened = std::fs::OpenOptions::new().create(true).append(true).open(path);
            Some(Mutex::new(opened.map_err(|e| format!("cannot open {}: {e}", path.display()))?))
        }
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,reqwest=warn,rustls=warn,h2=warn"));
    tracing_subscriber::registry().with(filter).with(Lines { format, file }).init();
    Ok(())
}

/// One line per event.
struct Lines {
    format: LogFormat,
    /// `--log.file`; stderr when `None`.
    file: Option<Mutex<std::fs::File>>,
}

/// A field value, keeping numbers and booleans apart from text for JSON.
enum Value {
    Text(String),
    Raw(String),
}

#[derive(Default)]
struct Collected {
    msg: String,
    fields: Vec<(&'static str, Value)>,
}

impl Visit for Collected {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Text(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::Raw(value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::Raw(value.to_string()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        let text = if value.is_finite() { value.to_string() } else { format!("\"{value}\"") };
        self.put(field, Value::Raw(text));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Raw(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::Text(format!("{value:?}")));
    }
}

impl Collected {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::Text(t) | Value::Raw(t)) => self.msg = t,
            (name, value) => self.fields.push((name, value)),
        }
    }
}

impl<S: Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut collected = Collected::default();
        event.record(&mut collected);
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let line = match self.format {
            LogFormat::Logfmt => logfmt_line(&ts, &level, &collected),
            LogFormat::Json => json_line(&ts, &level, &collected),
        };
        // One write per line, so lines of concurrent events never interleave.
        match &self.file {
            Some(file) => {
                let _ = file.lock().unwrap_or_else(|p| p.into_inner()).write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }
}

fn logfmt_line(ts: &str, level: &str, c: &Collected) -> String {
    let mut out = format!("ts={ts} level={level} msg={}", logfmt_value(&c.msg));
    for (key, value) in &c.fields {
        let (Value::Text(v) | Value::Raw(v)) = value;
        let _ = write!(out, " {key}={}", logfmt_value(v));
    }
    out.push('\n');
    out
}

/// Quotes a logfmt value when it is empty or holds spaces, quotes, `=` or control characters.
fn logfmt_value(v: &str) -> String {
    let plain = !v.is_empty() && !v.chars().any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control());
    if plain {
        return v.to_owned();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_line(ts: &str, level: &str, c: &Collected) -> String {
    let mut map = serde_json::Map::new();
    map.insert("ts".into(), ts.into());
    map.insert("level".into(), level.into());
    map.insert("msg".into(), c.msg.clone().into());
    for (key, value) in &c.fields {
        let json = match value {
            Value::Text(t) => serde_json::Value::String(t.clone()),
            Value::Raw(r) => serde_json::from_str(r).unwrap_or_else(|_| serde_json::Value::String(r.clone())),
        };
        map.insert((*key).to_owned(), json);
    }
    let mut line = serde_json::Value::Object(map).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Collected {
        Collected {
            msg: "probe failed".into(),
            fields: vec![
                ("target_name", Value::Text("em".into())),
                ("err", Value::Text("HTTP 500: \"boom\"\nagain".into())),
                ("duration_seconds", Value::Raw("1.5".into())),
                ("empty", Value::Text(String::new())),
            ],
        }
    }

    #[test]
    fn logfmt_quotes_what_needs_quoting() {
        let line = logfmt_line("2026-01-01T00:00:00.000Z", "warn", &sample());
        assert_eq!(
            line,
            "ts=2026-01-01T00:00:00.000Z level=warn msg=\"probe failed\" target_name=em \
             err=\"HTTP 500: \\\"boom\\\"\\nagain\" duration_seconds=1.5 empty=\"\"\n"
        );
    }

    #[test]
    fn json_is_flat_with_typed_numbers() {
        let line = json_line("t", "info", &sample());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "probe failed");
        assert_eq!(v["level"], "info");
        assert_eq!(v["duration_seconds"], 1.5);
        assert_eq!(v["err"], "HTTP 500: \"boom\"\nagain");
        assert!(v.get("fields").is_none());
    }
}
