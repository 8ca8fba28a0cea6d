//! The HTTP side of the EM client: logon, requests, response mapping. The calls a logged-on
//! session makes are in `session.rs`.
//!
//! Written against the EM REST documentation (`docs/em-api-notes.md`), not against the
//! simulator. Where the documentation is silent the client is liberal and says so inline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Method, Url};

use super::error::{Error, Result};
use super::model::*;
use super::session::Session;
use super::wire::Doc;
use veeam_secret::Secret;

/// The session token header: sent on every call after logon, read from the logon response.
pub const SESSION_HEADER: &str = "X-RestSvcSessionId";

/// Response body format requested with `Accept`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Xml,
    Json,
}

impl Format {
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Xml => "application/xml",
            Format::Json => "application/json",
        }
    }
}

/// The EM calls this client makes, as a bounded vocabulary (label-safe: request accounting
/// reports it through [`RequestObserver`]). The simulator has its own names for the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::VariantArray, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Endpoint {
    ApiRoot,
    Logon,
    Logoff,
    LogonSession,
    Query,
    MountCreate,
    MountList,
    MountGet,
    MountBrowse,
    MountDelete,
    FileRestore,
    Download,
    CatalogPoints,
    CatalogBrowse,
    CatalogRestore,
    Task,
    TaskList,
    TaskDelete,
    RestoreSession,
}

impl Endpoint {
    pub const ALL: &'static [Endpoint] = <Endpoint as strum::VariantArray>::VARIANTS;

    /// The groups request durations are kept by: few, so histograms stay cheap.
    pub const FAMILIES: &'static [&'static str] = &["session", "query", "mount", "restore", "task"];

    pub fn family(self) -> &'static str {
        match self {
            Endpoint::ApiRoot | Endpoint::Logon | Endpoint::Logoff | Endpoint::LogonSession => "session",
            Endpoint::Query | Endpoint::CatalogPoints => "query",
            Endpoint::MountCreate
            | Endpoint::MountList
            | Endpoint::MountGet
            | Endpoint::MountBrowse
            | Endpoint::MountDelete => "mount",
            Endpoint::FileRestore
            | Endpoint::Download
            | Endpoint::CatalogBrowse
            | Endpoint::CatalogRestore
            | Endpoint::RestoreSession => "restore",
            Endpoint::Task | Endpoint::TaskList | Endpoint::TaskDelete => "task",
        }
    }

    /// The snake_case name: the `endpoint` label value.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Told about every request the client makes. The client knows nothing of metrics; the
/// exporter plugs its counters in here.
pub trait RequestObserver: Send + Sync {
    /// `status` is `None` when no HTTP status was received (timeout, transport error).
    fn observe(&self, endpoint: Endpoint, status: Option<u16>, elapsed: Duration);
}

/// Guest OS kind for a mount; EM defaults to Windows when none is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum OsKind {
    Windows,
    Linux,
}

impl OsKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            OsKind::Windows => "Windows",
            OsKind::Linux => "Linux",
        }
    }
}

/// Everything needed to talk to one EM.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The API root, e.g. `https://em.example.com:9398/api/`.
    pub base_url: Url,
    pub username: String,
    pub password: Secret,
    pub format: Format,
    /// PEM file with the CA (or the self-signed certificate) that signed EM's certificate.
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification entirely. Logged as a warning when the client is built.
    pub insecure_skip_verify: bool,
    /// Applies to each request on its own (connect to last body byte).
    pub request_timeout: Duration,
    /// Responses larger than this fail with [`Error::TooLarge`].
    pub max_body_bytes: usize,
}

impl ClientConfig {
    pub fn new(base_url: Url, username: impl Into<String>, password: Secret) -> ClientConfig {
        ClientConfig {
            base_url,
            username: username.into(),
            password,
            format: Format::Xml,
            ca_file: None,
            insecure_skip_verify: false,
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 4 << 20,
        }
    }
}

/// An EM REST client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    config: ClientConfig,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.inner.base.as_str()).finish_non_exhaustive()
    }
}

/// One request as the client sends it.
pub(super) struct Call<'a> {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) endpoint: Endpoint,
    pub(super) token: Option<&'a Secret>,
    pub(super) body: Option<(Vec<u8>, &'static str)>,
    /// Exactly one media type.
    pub(super) accept: &'a str,
    /// Responses larger than this fail with [`Error::TooLarge`].
    pub(super) cap: usize,
}

impl Client {
    /// Builds the client. TLS verification is on unless `insecure_skip_verify` is set.
    pub fn new(config: ClientConfig, observer: Option<Arc<dyn RequestObserver>>) -> Result<Client> {
        let mut base = config.base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        // No cookie store: EM prefers a cookie over the header, so a stale cookie could override a
        // fresh token (docs/em-api-notes.md §1.3). reqwest keeps no cookies unless asked to.
        let mut builder =
            reqwest::Client::builder().timeout(config.request_timeout).connect_timeout(config.request_timeout);
        if let Some(ca_file) = &config.ca_file {
            let pem = std::fs::read(ca_file)
                .map_err(|e| Error::Config(format!("cannot read ca_file {}: {e}", ca_file.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Config(format!("ca_file {} holds no usable PEM certificate: {e}", ca_file.display()))
            })?;
            if certs.is_empty() {
                return Err(Error::Config(format!("ca_file {} holds no PEM certificate", ca_file.display())));
            }
            builder = builder.tls_certs_merge(certs);
        }
        if config.insecure_skip_verify {
            tracing::warn!(url = %base, "TLS certificate verification is disabled for this EM (insecure_skip_verify)");
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Client { inner: Arc::new(Inner { http, base, config, observer }) })
    }

    /// The response format this client asks for.
    pub(super) fn format(&self) -> Format {
        self.inner.config.format
    }

    /// `GET /api/` without credentials: a cheap "is EM answering" check.
    pub async fn api_root(&self) -> Result<EntryPoint> {
        let url = self.inner.base.clone();
        let (_, body) = self.send(Method::GET, url, Endpoint::ApiRoot, None, None).await?;
        Ok(EntryPoint::decode(parse(&body)?.root()))
    }

    /// Logs on with Basic auth and returns the new session.
    pub async fn logon(&self) -> Result<Session> {
        let url = self.url("sessionMngr/?v=latest")?;
        let (headers, body) = self.send(Method::POST, url, Endpoint::Logon, None, None).await?;
        // The token is whatever EM put in the header. Never derive it from the session id.
        let token = headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::Decode(format!("logon response has no {SESSION_HEADER} header")))?;
        let location = headers.get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let info = match parse(&body).and_then(|doc| LogonInfo::decode(doc.root())) {
            Ok(info) => info,
            // The body is the documented source of the id; the Location header is the fallback
            // some clients use (docs/em-api-notes.md §2.2).
            Err(err) => {
                let id = location.as_deref().and_then(id_from_href).ok_or(err)?;
                LogonInfo { session_id: id.to_owned(), user_name: None, href: location.clone(), links: Vec::new() }
            }
        };
        let logoff_href = info.delete_href().map(str::to_owned);
        Ok(Session::new(self.clone(), info.session_id, Secret::new(token), logoff_href))
    }

    /// Rebuilds a session from a recorded id and token, e.g. to clean up after a restart.
    /// Nothing is checked here; the first call tells whether EM still knows the token.
    pub fn resume(&self, id: impl Into<String>, token: Secret) -> Session {
        Session::new(self.clone(), id.into(), token, None)
    }

    pub(super) fn url(&self, relative: &str) -> Result<Url> {
        self.inner.base.join(relative).map_err(|e| Error::Config(format!("bad URL {relative:?}: {e}")))
    }

    /// Turns an href from EM into a URL under our configured base.
    ///
    /// Hrefs are opaque, but EM builds them from its own host name, which may differ from the
    /// address we were told to use (IP, proxy, port mapping). We keep what follows `/api/` and
    /// put it under our base URL, so requests and the session token only ever go to the
    /// configured endpoint.
    pub(super) fn resolve(&self, href: &str) -> Result<Url> {
        let parsed = self.inner.base.join(href).map_err(|e| Error::Decode(format!("bad href {href:?}: {e}")))?;
        let path_and_query = &parsed[url::Position::BeforePath..];
        let lower = path_and_query.to_ascii_lowercase();
        let start = lower
            .find("/api/")
            .map(|i| i + "/api/".len())
            .ok_or_else(|| Error::Decode(format!("href outside the EM API: {href:?}")))?;
        self.url(&path_and_query[start..])
    }

    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        endpoint: Endpoint,
        token: Option<&Secret>,
        body: Option<(Vec<u8>, &'static str)>,
    ) -> Result<(HeaderMap, Bytes)> {
        let config = &self.inner.config;
        let accept = config.format.media_type();
        self.call(Call { method, url, endpoint, token, body, accept, cap: config.max_body_bytes }).await
    }

    /// Sends one request and tells the observer about it.
    pub(super) async fn call(&self, call: Call<'_>) -> Result<(HeaderMap, Bytes)> {
        let started = Instant::now();
        let endpoint = call.endpoint;
        let result = self.exchange(call).await;
        if let Some(observer) = &self.inner.observer {
            let status = match &result {
                Ok((status, _, _)) => Some(*status),
                Err((status, _)) => *status,
            };
            observer.observe(endpoint, status, started.elapsed());
        }
        result.map(|(_, headers, body)| (headers, body)).map_err(|(_, e)| e)
    }

    /// One request/response. Errors carry the HTTP status when one was received.
    async fn exchange(&self, call: Call<'_>) -> std::result::Result<(u16, HeaderMap, Bytes), (Option<u16>, Error)> {
        let Call { method, url, endpoint, token, body, accept, cap } = call;
        let config = &self.inner.config;
        // Exactly one Accept value: a list broke XML POSTs on some EM versions (docs/em-api-notes.md §1.3).
        let mut request = self.inner.http.request(method.clone(), url).header(ACCEPT, accept);
        if endpoint == Endpoint::Logon {
            request = request.basic_auth(&config.username, Some(config.password.expose())).header(CONTENT_LENGTH, "0");
        }
        if let Some(token) = token {
            request = request.header(SESSION_HEADER, token.expose());
        }
        request = match body {
            Some((bytes, content_type)) => request.header(CONTENT_TYPE, content_type).body(bytes),
            None if method == Method::POST => request.header(CONTENT_LENGTH, "0"),
            None => request,
        };
        let timeout = config.request_timeout;
        let transport = |e: reqwest::Error| {
            if e.is_timeout() { Error::Timeout(timeout) } else { Error::Transport(error_chain(&e)) }
        };
        let response = request.send().await.map_err(|e| (None, transport(e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_capped(response, cap, timeout).await.map_err(|e| (Some(status), e))?;
        if (200..300).contains(&status) {
            return Ok((status, headers, body));
        }
        let message = Doc::parse(&body)
            .ok()
            .and_then(|doc| error_message(doc.root()))
            .unwrap_or_else(|| format!("HTTP {status} without an EM error message"));
        Err((Some(status), Error::from_status(status, message, endpoint == Endpoint::Logon)))
    }
}

/// Reads a body, failing as soon as it exceeds `cap` bytes (so a huge body is never buffered).
async fn read_capped(response: reqwest::Response, cap: usize, timeout: Duration) -> Result<Bytes> {
    if response.content_length().is_some_and(|len| len > cap as u64) {
        return Err(Error::TooLarge { limit: cap });
    }
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| if e.is_timeout() { Error::Timeout(timeout) } else { Error::Transport(error_chain(&e)) })?;
        if body.len() + chunk.len() > cap {
            return Err(Error::TooLarge { limit: cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// reqwest's top-level message is terse ("error sending request"); the cause chain says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(super) fn parse(body: &[u8]) -> Result<Doc> {
    Doc::parse(body).map_err(Error::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::new(ClientConfig::new(Url::parse(base).unwrap(), "u", Secret::new("p")), None).unwrap()
    }

    #[test]
    fn hrefs_are_rebased_onto_the_configured_url() {
        let c = client("https://10.0.0.5:9398/api");
        let url = c.resolve("https://em.corp.local:9398/api/tasks/task-1?x=1&y=2").unwrap();
        assert_eq!(url.as_str(), "https://10.0.0.5:9398/api/tasks/task-1?x=1&y=2");
        let url = c.resolve("/api/vmRestorePoints/a/mounts/1/E:/Documentation%202014").unwrap();
        assert_eq!(url.as_str(), "https://10.0.0.5:9398/api/vmRestorePoints/a/mounts/1/E:/Documentation%202014");
        assert!(c.resolve("https://evil.example/steal").is_err());
    }

    #[test]
    fn debug_hides_credentials_and_tokens() {
        let c = client("https://em:9398/api/");
        let s = c.resume("id-1", Secret::new("TOKEN123"));
        let printed = format!("{c:?} {s:?}");
        assert!(!printed.contains("TOKEN123") && !printed.contains("id-1") && !printed.contains("\"p\""), "{printed}");
    }
}
