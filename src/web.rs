//! The exporter's HTTP endpoints: landing page, metrics, health, readiness, reload.
//!
//! **Invariant:** nothing here talks to EM. `/metrics` serves what the scheduled runs cached,
//! so it answers whatever state EM is in, and `/-/healthy` and `/-/ready` never depend on EM.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use std::path::PathBuf;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::exposition;
use crate::history::History;
use crate::metrics::Metrics;
use crate::scheduler::{RunNow, Shared};
use crate::web_config::{Authenticator, WebConfig};

/// A reload request; the answer says whether the new configuration was applied.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

pub struct WebState {
    pub metrics: Arc<Metrics>,
    pub history: Arc<History>,
    pub config: RwLock<Arc<Config>>,
    pub reload: mpsc::Sender<ReloadRequest>,
    pub telemetry_path: String,
    /// `--web.config.file`, read again for every request.
    pub web_config: Option<PathBuf>,
    pub authenticator: Authenticator,
    /// `--web.enable-lifecycle`: without it `POST /-/reload` and `POST /-/probe` are refused
    /// (SIGHUP always reloads).
    pub enable_lifecycle: bool,
    /// For `POST /-/probe`.
    pub scheduler: Arc<Shared>,
}

/// Paths the exporter serves itself; `--web.telemetry-path` must not take one of them.
pub const RESERVED_PATHS: &[&str] = &["/", "/-/healthy", "/-/ready", "/-/reload", "/-/probe"];

pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(landing))
        .route(&state.telemetry_path.clone(), get(metrics))
        .route("/-/healthy", get(|| async { "Healthy.\n" }))
        .route("/-/ready", get(|| async { "Ready.\n" }))
        .route("/-/reload", post(reload))
        .route("/-/probe", post(run_probe))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Applies the web config: basic authentication and the configured response headers. The
/// health and readiness checks stay open (they reveal nothing and serve orchestrators), even
/// while the web config file is broken.
async fn guard(State(state): State<Arc<WebState>>, request: Request, next: Next) -> Response {
    let Some(path) = &state.web_config else { return next.run(request).await };
    let open = matches!(request.uri().path(), "/-/healthy" | "/-/ready");
    if open {
        return next.run(request).await;
    }
    let config = match WebConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(err = %e, "cannot use the web config; refusing requests until it is fixed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n").into_response();
        }
    };
    if config.requires_auth() && !authorized(&state, &config, &request) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"veeam-restore-exporter\"")],
            "Unauthorized\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    for (name, value) in &config.http_server_config.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn authorized(state: &WebState, config: &WebConfig, request: &Request) -> bool {
    use base64::Engine;
    let Some(encoded) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Some(decoded) =
        base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok().and_then(|b| String::from_utf8(b).ok())
    else {
        return false;
    };
    let Some((user, password)) = decoded.split_once(':') else { return false };
    state.authenticator.check(config, user, password)
}

/// Serves the cached exposition (see [`crate::exposition`]), gzip-compressed when the client
/// accepts it, as Prometheus does by default.
async fn metrics(State(state): State<Arc<WebState>>, headers: axum::http::HeaderMap) -> Response {
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(accepts_gzip);
    let snapshot = state.metrics.exposition().snapshot();
    // Two frames, no copy of the (megabytes at 1,000 probes of) cached text.
    let frames = exposition::body(&snapshot, gzip).map(Ok::<_, std::convert::Infallible>);
    let body = axum::body::Body::from_stream(futures_util::stream::iter(frames));
    let mut response = ([(header::CONTENT_TYPE, exposition::CONTENT_TYPE)], body).into_response();
    if gzip {
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// Whether one `Accept-Encoding` entry (`gzip`, `gzip;q=0.5`, `*`) admits gzip (RFC 9110 12.5.3).
fn accepts_gzip(entry: &str) -> bool {
    let mut parts = entry.split(';');
    let coding = parts.next().unwrap_or("").trim();
    let refused = parts.any(|p| {
        let p = p.trim();
        p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")).and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0)
    });
    (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
}

async fn reload(State(state): State<Arc<WebState>>) -> Response {
    if !state.enable_lifecycle {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled (--web.enable-lifecycle); SIGHUP reloads.\n")
            .into_response();
    }
    let (tx, rx) = oneshot::channel();
    if state.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(())) => (StatusCode::OK, "Configuration reloaded.\n").into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("failed to reload config: {e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

/// `POST /-/probe?target=T&probe=P`: runs a probe now ("I fixed the proxy, show me that
/// mounts work again"), unless it is running already.
async fn run_probe(
    State(state): State<Arc<WebState>>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if !state.enable_lifecycle {
        return (StatusCode::FORBIDDEN, "Lifecycle API is not enabled (--web.enable-lifecycle).\n").into_response();
    }
    let (Some(target), Some(probe)) = (query.get("target"), query.get("probe")) else {
        return (StatusCode::BAD_REQUEST, "target and probe are required: /-/probe?target=T&probe=P\n").into_response();
    };
    let config = state.config.read().unwrap_or_else(|p| p.into_inner()).clone();
    let known = config.targets.iter().any(|t| &t.name == target && t.probes.iter().any(|p| &p.name == probe));
    if !known {
        return (StatusCode::NOT_FOUND, "no such target and probe in the configuration\n").into_response();
    }
    match state.scheduler.run_now(target, probe) {
        RunNow::AlreadyRunning => (StatusCode::CONFLICT, "the probe is running; see /\n").into_response(),
        RunNow::Started => {
            tracing::info!(target_name = %target, probe = %probe, "probe run requested over HTTP");
            (StatusCode::ACCEPTED, [(header::LOCATION, "/")], "Probe run started; its result will show on /\n")
                .into_response()
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn ago(t: SystemTime) -> String {
    let secs = t.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    format!("{} ago", humantime::format_duration(std::time::Duration::from_secs(secs)))
}

/// A form posting to `/-/probe`; a probe that writes into the VM asks first.
fn run_now_button(target: &str, probe: &crate::probe::Spec) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("target", target)
        .append_pair("probe", &probe.name)
        .finish();
    let confirm = if probe.kind.writes_into_vm() {
        " onsubmit=\"return confirm('This probe restores a file INTO THE PRODUCTION VM. Run it now?')\""
    } else {
        ""
    };
    format!(
        "<form method=\"post\" action=\"/-/probe?{}\"{confirm}><button type=\"submit\">Run now</button></form>",
        escape(&query)
    )
}

fn until(t: SystemTime) -> String {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => format!("in {}", humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))),
        Err(_) => "due now".to_owned(),
    }
}

async fn landing(State(state): State<Arc<WebState>>) -> Html<String> {
    let config = state.config.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Veeam Restore Exporter</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}\
         .ok{{color:#1a7f37}}.fail{{color:#cf222e}}.state{{font-weight:bold;color:#fff}}.up{{background:#1a7f37}}\
         .down{{background:#cf222e}}.unknown{{background:#9a6700}}</style></head><body>\
         <h1>Veeam Restore Exporter</h1><p>Proves Veeam restores work by running them on a schedule. Version {}.</p>\
         <ul><li><a href=\"{}\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li><li><a href=\"/-/ready\">Readiness</a></li></ul>",
        env!("CARGO_PKG_VERSION"),
        escape(&state.telemetry_path)
    );
    let exposition = state.metrics.exposition().snapshot();
    page.push_str(&crate::overview::render(&config, &String::from_utf8_lossy(&exposition.plain), &state.history));
    for target in &config.targets {
        let _ =
            write!(page, "<h2>Target {} <small>({})</small></h2>", escape(&target.name), escape(target.url.as_str()));
        for probe in &target.probes {
            let history = state.history.get(&target.name, &probe.name);
            let _ = write!(
                page,
                "<h3>Probe {} <small>{} on {}, every {}</small></h3>",
                escape(&probe.name),
                probe.kind.label(),
                escape(&probe.vm),
                humantime::format_duration(probe.interval)
            );
            if let Some(next) = history.next_run {
                let _ = write!(page, "<p>Next run: {}.</p>", until(next));
            }
            if state.enable_lifecycle {
                page.push_str(&run_now_button(&target.name, probe));
            }
            if history.recent.is_empty() {
                page.push_str("<p>No run has finished yet.</p>");
                continue;
            }
            page.push_str(
                "<table><tr><th>Finished</th><th>Result</th><th>Duration</th><th>Phases</th><th>Details</th></tr>",
            );
            let last_failure_shown = history.recent.iter().any(|r| r.outcome.is_err());
            let extra = history.last_failure.iter().filter(|_| !last_failure_shown);
            for run in history.recent.iter().chain(extra) {
                let (class, result, details) = match &run.outcome {
                    Ok(note) => ("ok", "success".to_owned(), note.clone().unwrap_or_default()),
                    Err((reason, message)) => ("fail", format!("failed: {reason}"), message.clone()),
                };
                let result = if run.manual { format!("{result} (manual)") } else { result };
                let details = match &run.cleanup_error {
                    Some(c) => format!("{details}; cleanup: {c}"),
                    None => details,
                };
                let phases: Vec<String> =
                    run.phases.iter().map(|(p, d)| format!("{p} {:.2}s", d.as_secs_f64())).collect();
                let _ = write!(
                    page,
                    "<tr><td>{}</td><td class=\"{class}\">{}</td><td>{:.2}s</td><td>{}</td><td>{}</td></tr>",
                    ago(run.finished_at),
                    escape(&result),
                    run.duration.as_secs_f64(),
                    escape(&phases.join(", ")),
                    escape(&details)
                );
            }
            page.push_str("</table>");
        }
    }
    page.push_str("</body></html>\n");
    Html(page)
}
