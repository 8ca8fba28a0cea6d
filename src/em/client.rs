//! The HTTP side of the EM client: logon, requests, response mapping.
//!
//! Written against the EM REST documentation (`shared/docs/em-api.md`), not against the
//! simulator. Where the documentation is silent the client is liberal and says so inline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Method, Url};

use super::error::{Error, Result};
use super::model::*;
use super::wire::Doc;
use crate::secret::Secret;

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

/// The EM calls this client makes, as a bounded vocabulary (used for metric labels and by the
/// simulator to name fault-injection points).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
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
    CatalogBrowse,
    CatalogRestore,
    Task,
    TaskDelete,
    RestoreSession,
}

impl Endpoint {
    pub const ALL: &'static [Endpoint] = &[
        Endpoint::ApiRoot,
        Endpoint::Logon,
        Endpoint::Logoff,
        Endpoint::LogonSession,
        Endpoint::Query,
        Endpoint::MountCreate,
        Endpoint::MountList,
        Endpoint::MountGet,
        Endpoint::MountBrowse,
        Endpoint::MountDelete,
        Endpoint::FileRestore,
        Endpoint::Download,
        Endpoint::CatalogBrowse,
        Endpoint::CatalogRestore,
        Endpoint::Task,
        Endpoint::TaskDelete,
        Endpoint::RestoreSession,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ApiRoot => "api_root",
            Endpoint::Logon => "logon",
            Endpoint::Logoff => "logoff",
            Endpoint::LogonSession => "logon_session",
            Endpoint::Query => "query",
            Endpoint::MountCreate => "mount_create",
            Endpoint::MountList => "mount_list",
            Endpoint::MountGet => "mount_get",
            Endpoint::MountBrowse => "mount_browse",
            Endpoint::MountDelete => "mount_delete",
            Endpoint::FileRestore => "file_restore",
            Endpoint::Download => "download",
            Endpoint::CatalogBrowse => "catalog_browse",
            Endpoint::CatalogRestore => "catalog_restore",
            Endpoint::Task => "task",
            Endpoint::TaskDelete => "task_delete",
            Endpoint::RestoreSession => "restore_session",
        }
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
    fn as_str(self) -> &'static str {
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
struct Call<'a> {
    method: Method,
    url: Url,
    endpoint: Endpoint,
    token: Option<&'a Secret>,
    body: Option<(Vec<u8>, &'static str)>,
    /// Exactly one media type.
    accept: &'a str,
    /// Responses larger than this fail with [`Error::TooLarge`].
    cap: usize,
}

/// A logged-on session: the token, the logon-session id, and a client to use them with.
///
/// Mounts and tasks belong to the logon session that created them; keep this value for as long
/// as they exist. `Debug` prints neither the token nor the id (the token is the id's base64).
#[derive(Clone)]
pub struct Session {
    client: Client,
    id: String,
    token: Secret,
    logoff_href: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("client", &self.client).finish_non_exhaustive()
    }
}

/// Characters escaped in a query value we build (filters). `=`, `;` and `,` are filter
/// operators and stay literal, as in Veeam's examples; `&`, `+` and `%` would change meaning.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'&')
    .add(b'+')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

impl Client {
    /// Builds the client. TLS verification is on unless `insecure_skip_verify` is set.
    pub fn new(config: ClientConfig, observer: Option<Arc<dyn RequestObserver>>) -> Result<Client> {
        let mut base = config.base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        // No cookie store: EM prefers a cookie over the header, so a stale cookie could override a
        // fresh token (em-api.md §1.3). reqwest keeps no cookies unless asked to.
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

    pub fn base_url(&self) -> &Url {
        &self.inner.base
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
            // some clients use (em-api.md §2.2).
            Err(err) => {
                let id = location.as_deref().and_then(id_from_href).ok_or(err)?;
                LogonInfo { session_id: id.to_owned(), user_name: None, href: location.clone(), links: Vec::new() }
            }
        };
        Ok(Session {
            client: self.clone(),
            logoff_href: info.delete_href().map(str::to_owned),
            id: info.session_id,
            token: Secret::new(token),
        })
    }

    /// Rebuilds a session from a recorded id and token, e.g. to clean up after a restart.
    /// Nothing is checked here; the first call tells whether EM still knows the token.
    pub fn resume(&self, id: impl Into<String>, token: Secret) -> Session {
        Session { client: self.clone(), id: id.into(), token, logoff_href: None }
    }

    fn url(&self, relative: &str) -> Result<Url> {
        self.inner.base.join(relative).map_err(|e| Error::Config(format!("bad URL {relative:?}: {e}")))
    }

    /// Turns an href from EM into a URL under our configured base.
    ///
    /// Hrefs are opaque, but EM builds them from its own host name, which may differ from the
    /// address we were told to use (IP, proxy, port mapping). We keep what follows `/api/` and
    /// put it under our base URL, so requests and the session token only ever go to the
    /// configured endpoint.
    fn resolve(&self, href: &str) -> Result<Url> {
        let parsed = self.inner.base.join(href).map_err(|e| Error::Decode(format!("bad href {href:?}: {e}")))?;
        let path_and_query = &parsed[url::Position::BeforePath..];
        let lower = path_and_query.to_ascii_lowercase();
        let start = lower
            .find("/api/")
            .map(|i| i + "/api/".len())
            .ok_or_else(|| Error::Decode(format!("href outside the EM API: {href:?}")))?;
        self.url(&path_and_query[start..])
    }

    async fn send(
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
    async fn call(&self, call: Call<'_>) -> Result<(HeaderMap, Bytes)> {
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
        // Exactly one Accept value: a list broke XML POSTs on some EM versions (em-api.md §1.3).
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

fn parse(body: &[u8]) -> Result<Doc> {
    Doc::parse(body).map_err(Error::Decode)
}

/// Appends `extra` (already encoded) to a URL's query.
fn with_query(mut url: Url, extra: &str) -> Url {
    let query = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{extra}"),
        _ => extra.to_owned(),
    };
    url.set_query(Some(&query));
    url
}

/// Appends a guest path (`C:\dir\a b.txt` or `C:/dir/a b.txt`) as URL path segments, each
/// percent-encoded, as in EM's `…/E:/Documentation%202014` example.
fn push_guest_path(url: &mut Url, guest_path: &str) -> Result<()> {
    let mut segments = url.path_segments_mut().map_err(|_| Error::Config("base URL cannot have a path".into()))?;
    segments.pop_if_empty();
    for segment in guest_path.split(['/', '\\']).filter(|s| !s.is_empty()) {
        segments.push(segment);
    }
    Ok(())
}

/// A filter string value: always double-quoted, embedded quotes doubled (em-api.md §3.1).
fn quote_filter_value(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

impl Session {
    /// The logon session id (for log-off and for orphan records).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The session token, for the durable orphan record only.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn get(&self, url: Url, endpoint: Endpoint) -> Result<Doc> {
        let (_, body) = self.client.send(Method::GET, url, endpoint, Some(&self.token), None).await?;
        parse(&body)
    }

    async fn post(&self, url: Url, endpoint: Endpoint, body: Option<Vec<u8>>) -> Result<Doc> {
        let content_type = self.client.inner.config.format.media_type();
        let body = body.map(|b| (b, content_type));
        let (_, body) = self.client.send(Method::POST, url, endpoint, Some(&self.token), body).await?;
        parse(&body)
    }

    async fn delete(&self, url: Url, endpoint: Endpoint) -> Result<()> {
        self.client.send(Method::DELETE, url, endpoint, Some(&self.token), None).await.map(drop)
    }

    fn format(&self) -> Format {
        self.client.inner.config.format
    }

    /// A cheap authenticated call that resets EM's 15-minute idle timer.
    pub async fn keep_alive(&self) -> Result<()> {
        let url = self.client.url(&format!("logonSessions/{}", self.id))?;
        self.get(url, Endpoint::LogonSession).await.map(drop)
    }

    /// Logs off (`DELETE /logonSessions/{id}`). Delete mounts first: afterwards they are unreachable.
    pub async fn logoff(&self) -> Result<()> {
        let url = match &self.logoff_href {
            Some(href) => self.client.resolve(href)?,
            None => self.client.url(&format!("logonSessions/{}", self.id))?,
        };
        self.delete(url, Endpoint::Logoff).await
    }

    /// The newest restore point (or replica point) of the VM with this display name.
    pub async fn newest_point(&self, kind: PointKind, vm: &str) -> Result<Option<RestorePoint>> {
        let filter = format!("VmDisplayName=={}", quote_filter_value(vm));
        let query = format!(
            "query?type={}&format=Entities&sortDesc=CreationTime&pageSize=1&page=1&filter={}",
            kind.query_type(),
            utf8_percent_encode(&filter, QUERY_VALUE)
        );
        let doc = self.get(self.client.url(&query)?, Endpoint::Query).await?;
        let points = RestorePoint::decode_query(doc.root(), kind)?;
        // Liberal: should EM ignore sorting, paging or the filter, pick the answer ourselves.
        Ok(points
            .into_iter()
            .filter(|p| p.vm_display_name.as_deref().is_none_or(|n| n.eq_ignore_ascii_case(vm)))
            .max_by_key(|p| p.creation_time))
    }

    /// Starts mounting a restore point for guest file restore. Returns the `MountRestorePoint` task.
    pub async fn start_mount(&self, point: &RestorePoint, os: Option<OsKind>) -> Result<Task> {
        let url = self.client.resolve(&point.mounts_href())?;
        let body = os.map(|os| match self.format() {
            Format::Xml => format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><StartMountSpec xmlns=\"http://www.veeam.com/ent/v1.0\" \
                 xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
                 <OsKind>{}</OsKind></StartMountSpec>",
                os.as_str()
            ),
            Format::Json => format!("{{\"OsKind\":\"{}\"}}", os.as_str()),
        });
        let doc = self.post(url, Endpoint::MountCreate, body.map(String::into_bytes)).await?;
        Task::decode(doc.root())
    }

    /// Reads a task (`GET /tasks/{id}`). Polling is the caller's business.
    pub async fn task(&self, href: &str) -> Result<Task> {
        let doc = self.get(self.client.resolve(href)?, Endpoint::Task).await?;
        Task::decode(doc.root())
    }

    /// Removes a finished task (housekeeping) or stops a running one.
    pub async fn delete_task(&self, task: &Task) -> Result<()> {
        self.delete(self.client.resolve(task.delete_href())?, Endpoint::TaskDelete).await
    }

    /// Reads a mount.
    pub async fn mount(&self, href: &str) -> Result<Mount> {
        let doc = self.get(self.client.resolve(href)?, Endpoint::MountGet).await?;
        Mount::decode(doc.root())
    }

    /// Follows a finished mount task's `Related` link to the mount.
    ///
    /// The docs show a replica-mount task linking to `/vmRestorePoints/{id}/mounts/1` with
    /// `Type="VmRestorePointMount"` (em-api.md §4.2); whether that is a doc error is unknown.
    /// So if the link as given is not found, the same mount is tried under the point's own
    /// collection.
    pub async fn mount_from_task(&self, task: &Task, kind: PointKind) -> Result<Mount> {
        let related = task
            .related()
            .ok_or_else(|| Error::Decode(format!("finished {} task has no Related link", task.operation)))?;
        match self.mount(&related.href).await {
            Err(Error::NotFound { message }) => {
                let other = if kind == PointKind::Backup { PointKind::Replica } else { PointKind::Backup };
                let needle = format!("/{}/", other.collection());
                if !related.href.contains(&needle) {
                    return Err(Error::NotFound { message });
                }
                let swapped = related.href.replacen(&needle, &format!("/{}/", kind.collection()), 1);
                self.mount(&swapped).await
            }
            other => other,
        }
    }

    /// Lists this session's mounts of a restore point (other sessions' mounts are invisible).
    pub async fn mounts(&self, point: &RestorePoint) -> Result<Vec<Mount>> {
        self.mounts_at(&point.mounts_href(), point.kind).await
    }

    /// Lists this session's mounts given the point's mounts href (as kept in orphan records).
    pub async fn mounts_at(&self, mounts_href: &str, kind: PointKind) -> Result<Vec<Mount>> {
        let doc = self.get(self.client.resolve(mounts_href)?, Endpoint::MountList).await?;
        Mount::decode_list(doc.root(), kind)
    }

    /// Lists the subdirectories of a mounted directory, one page of at most `page_size`.
    pub async fn list_dirs(&self, directory_href: &str, page_size: u32) -> Result<FileSystemEntries> {
        let url = self.client.resolve(directory_href.split('?').next().unwrap_or(directory_href))?;
        let url = with_query(url, &format!("action=listDirs&pageSize={page_size}&page=1"));
        let doc = self.get(url, Endpoint::MountBrowse).await?;
        Ok(FileSystemEntries::decode(doc.root()))
    }

    /// Deletes (unmounts) a mount. EM documents 204; any 2xx is accepted.
    pub async fn delete_mount(&self, href: &str) -> Result<()> {
        self.delete(self.client.resolve(href)?, Endpoint::MountDelete).await
    }

    /// Starts a restore of one guest file from a mount for direct download (nothing is written
    /// to the production VM). Returns the `FileRestoreFromMountPoint` task.
    pub async fn start_download_restore(&self, mount: &Mount, guest_path: &str) -> Result<Task> {
        let mut url = self.client.resolve(&mount.href)?;
        push_guest_path(&mut url, guest_path)?;
        let url = with_query(url, "action=restore");
        let body = match self.format() {
            Format::Xml => "<?xml version=\"1.0\" encoding=\"utf-8\"?><FileRestoreSpec xmlns=\"http://www.veeam.com/ent/v1.0\" \
                 xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
                 <ForDirectDownload/></FileRestoreSpec>"
                .to_owned(),
            Format::Json => "{\"ForDirectDownload\":{}}".to_owned(),
        };
        let doc = self.post(url, Endpoint::FileRestore, Some(body.into_bytes())).await?;
        Task::decode(doc.root())
    }

    /// Downloads a restored file from a task's `Download` link, failing past `max_bytes`.
    pub async fn download(&self, href: &str, max_bytes: usize) -> Result<Bytes> {
        let url = self.client.resolve(href)?;
        let call = Call {
            method: Method::GET,
            url,
            endpoint: Endpoint::Download,
            token: Some(&self.token),
            body: None,
            // The file, not an EM representation: any media type.
            accept: "*/*",
            cap: max_bytes,
        };
        let (_, body) = self.client.call(call).await?;
        Ok(body)
    }

    /// Opens a restore point's guest file system in the catalog
    /// (`POST /catalog/vms/{vm}/vmRestorePoints/{id}?action=browse`). Returns the `BrowseVM` task.
    ///
    /// EM's `guestfs` resources "become available after" this call, so a catalog restore must
    /// browse first, in the same logon session. The reference page says `200 OK`, the scenario
    /// page shows `202` with a task already `Finished`: any 2xx is accepted, and the task is
    /// returned as sent (it may need no polling). No DELETE is documented for a browse.
    pub async fn browse_catalog_point(&self, vm: &str, point_id: &str) -> Result<Task> {
        let url = with_query(self.catalog_point_url(vm, point_id)?, "action=browse");
        let doc = self.post(url, Endpoint::CatalogBrowse, None).await?;
        Task::decode(doc.root())
    }

    /// `…/catalog/vms/{vm}/vmRestorePoints/{id}`, each part one encoded path segment.
    fn catalog_point_url(&self, vm: &str, point_id: &str) -> Result<Url> {
        let mut url = self.client.url("catalog/vms")?;
        url.path_segments_mut()
            .map_err(|_| Error::Config("base URL cannot have a path".into()))?
            .pop_if_empty()
            .push(vm)
            .push("vmRestorePoints")
            .push(point_id);
        Ok(url)
    }

    /// Starts the catalog restore of one guest file **to its original location in the
    /// production VM** (`POST /catalog/vms/{vm}/vmRestorePoints/{id}/guestfs/{path}?action=restore`).
    /// Returns the `RestoreFile` task; its success only means "started".
    pub async fn start_catalog_restore(&self, vm: &str, point_id: &str, guest_path: &str) -> Result<Task> {
        let mut url = self.catalog_point_url(vm, point_id)?;
        push_guest_path(&mut url, &format!("guestfs/{guest_path}"))?;
        let url = with_query(url, "action=restore");
        let doc = self.post(url, Endpoint::CatalogRestore, None).await?;
        Task::decode(doc.root())
    }

    /// Reads a restore session entity (adds `format=Entity` when the href lacks it).
    pub async fn restore_session(&self, href: &str) -> Result<RestoreSession> {
        let mut url = self.client.resolve(href)?;
        if !url.query_pairs().any(|(k, v)| k.eq_ignore_ascii_case("format") && v.eq_ignore_ascii_case("Entity")) {
            url = with_query(url, "format=Entity");
        }
        let doc = self.get(url, Endpoint::RestoreSession).await?;
        RestoreSession::decode(doc.root())
    }

    /// File-level restore sessions still `Working` for a VM: how a mount that can no longer be
    /// reached through the API (its logon session expired) still shows up.
    pub async fn working_flr_sessions(&self, vm: &str) -> Result<Vec<RestoreSession>> {
        let filter = format!("Type==FileLevelRestore;State==Working;VmDisplayName=={}", quote_filter_value(vm));
        let query =
            format!("query?type=RestoreSession&format=Entities&filter={}", utf8_percent_encode(&filter, QUERY_VALUE));
        let doc = self.get(self.client.url(&query)?, Endpoint::Query).await?;
        let sessions = RestoreSession::decode_query(doc.root())?;
        // Liberal: re-apply the filter in case EM ignored part of it.
        Ok(sessions
            .into_iter()
            .filter(|s| s.state == RestoreSessionState::Working)
            .filter(|s| s.job_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("FileLevelRestore")))
            .filter(|s| s.vm_display_name.as_deref().is_none_or(|n| n.eq_ignore_ascii_case(vm)))
            .collect())
    }
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
    fn guest_paths_become_encoded_segments() {
        let mut url = Url::parse("https://em/api/vmRestorePoints/a/mounts/1").unwrap();
        push_guest_path(&mut url, r"C:\canary dir\a#b?.txt").unwrap();
        assert_eq!(url.as_str(), "https://em/api/vmRestorePoints/a/mounts/1/C:/canary%20dir/a%23b%3F.txt");
    }

    #[test]
    fn filter_values_are_quoted_and_escaped() {
        let filter = format!("VmDisplayName=={}", quote_filter_value("my \"vm\" & co"));
        assert_eq!(
            utf8_percent_encode(&filter, QUERY_VALUE).to_string(),
            "VmDisplayName==%22my%20%22%22vm%22%22%20%26%20co%22"
        );
    }

    #[test]
    fn debug_hides_credentials_and_tokens() {
        let c = client("https://em:9398/api/");
        let s = c.resume("id-1", Secret::new("TOKEN123"));
        let printed = format!("{c:?} {s:?}");
        assert!(!printed.contains("TOKEN123") && !printed.contains("id-1") && !printed.contains("\"p\""), "{printed}");
    }
}
