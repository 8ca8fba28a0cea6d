//! The HTTP side of the VBR client: configuration, requests, response mapping, the token
//! calls and version negotiation. The calls a logged-on session makes are in `session.rs`.
//!
//! Written against Veeam's OpenAPI specs (`vbr_rest_1.2-rev1.json`, `vbr_rest_1.3-rev1.json`,
//! `vbr_rest_1.3-rev2.json`), not against any simulator. Where the specs are silent the client
//! is liberal and says so inline.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Method, Url};
use veeam_secret::Secret;

use crate::decode;
use crate::error::{ApiError, Error, Result};
use crate::model::TokenGrant;
use crate::session::Session;
use crate::version::{ApiVersion, is_version_refusal};

pub use crate::endpoint::{Endpoint, RequestObserver};

/// The header every request carries (`x-api-version`, "required" in every operation).
pub const API_VERSION_HEADER: &str = "x-api-version";

/// Everything needed to talk to one VBR server.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server root, e.g. `https://vbr.example.com:9419/`. The client adds `/api/…`; a URL
    /// that already ends in `/api/` or `/api/v1/` is accepted and trimmed back to the root.
    pub base_url: Url,
    pub username: String,
    pub password: Secret,
    /// PEM file with the CA (or the self-signed certificate) that signed VBR's certificate.
    /// VBR installs a self-signed certificate by default, so this is the usual setting.
    pub ca_file: Option<PathBuf>,
    /// Skip TLS verification entirely. Logged as a warning when the client is built.
    pub insecure_skip_verify: bool,
    /// Applies to each request on its own (connect to last body byte).
    pub request_timeout: Duration,
    /// Replaces `request_timeout` for the calls VBR answers only when the work is done: the
    /// mount (`201` "File system has been mounted"), the unmount (`201` "Restore session has
    /// been stopped") and the download stream. Mounting a backup takes minutes on real
    /// infrastructure.
    pub slow_request_timeout: Duration,
    /// JSON responses larger than this fail with [`Error::TooLarge`].
    pub max_body_bytes: usize,
    /// Download archives larger than this fail with [`Error::TooLarge`], checked while
    /// streaming (a large body is never buffered past the cap).
    pub max_download_bytes: usize,
}

impl ClientConfig {
    pub fn new(base_url: Url, username: impl Into<String>, password: Secret) -> ClientConfig {
        ClientConfig {
            base_url,
            username: username.into(),
            password,
            ca_file: None,
            insecure_skip_verify: false,
            request_timeout: Duration::from_secs(30),
            slow_request_timeout: Duration::from_secs(600),
            max_body_bytes: 4 << 20,
            max_download_bytes: 16 << 20,
        }
    }
}

/// A VBR REST client. Cheap to clone; clones share the agreed API revision.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Always ends in `/api/`.
    api: Url,
    config: ClientConfig,
    observer: Option<Arc<dyn RequestObserver>>,
    /// The revision the last successful logon agreed on: the next logon starts there.
    agreed: Mutex<Option<ApiVersion>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api", &self.inner.api.as_str())
            .field("username", &self.inner.config.username)
            .finish_non_exhaustive()
    }
}

/// A request body.
pub(crate) enum Body {
    Json(Vec<u8>),
    /// `application/x-www-form-urlencoded`, already encoded. Holds the password or refresh
    /// token on the token call: never logged.
    Form(String),
}

/// One request as the client sends it.
pub(crate) struct Call {
    pub method: Method,
    pub url: Url,
    pub endpoint: Endpoint,
    pub version: ApiVersion,
    pub token: Option<Secret>,
    pub body: Option<Body>,
    /// Bodies larger than this fail with [`Error::TooLarge`].
    pub cap: usize,
    pub accept: &'static str,
}

impl Client {
    /// Builds the client. TLS verification is on unless `insecure_skip_verify` is set.
    pub fn new(config: ClientConfig, observer: Option<Arc<dyn RequestObserver>>) -> Result<Client> {
        let api = api_root(&config.base_url)?;
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
            tracing::warn!(url = %api, "TLS certificate verification is disabled for this VBR server (insecure_skip_verify)");
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Client { inner: Arc::new(Inner { http, api, config, observer, agreed: Mutex::new(None) }) })
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The revision the last logon agreed on, if any.
    pub fn agreed_version(&self) -> Option<ApiVersion> {
        *self.inner.agreed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs on with the password (OAuth2 password grant) and returns the session.
    ///
    /// Version negotiation: the token call is the first request and carries `x-api-version`,
    /// so it is where the revision is agreed. The client sends the newest revision it speaks
    /// (or the one the previous logon agreed on) and, while the server answers with a version
    /// refusal ([`crate::version::is_version_refusal`]: documented as HTTP 400 `NotImplemented`
    /// "The specified API version is not supported."), retries with the next older one.
    pub async fn logon(&self) -> Result<Session> {
        let (grant, version) = self.negotiate().await?;
        Ok(Session::new(self.clone(), version, grant))
    }

    /// Runs the password grant down the revision list; returns the grant and the revision.
    pub(crate) async fn negotiate(&self) -> Result<(TokenGrant, ApiVersion)> {
        let start = self.agreed_version().unwrap_or(ApiVersion::NEWEST);
        let mut tried = Vec::new();
        let mut last = ApiError::bare("no revision tried");
        for version in start.older() {
            match self.password_grant(version).await {
                Ok(grant) => {
                    *self.inner.agreed.lock().unwrap_or_else(|p| p.into_inner()) = Some(version);
                    if !tried.is_empty() {
                        tracing::info!(%version, refused = %tried.join(","), "VBR refused newer API revisions; using an older one");
                    }
                    return Ok((grant, version));
                }
                Err(err) => match version_refusal(err) {
                    Ok(error) => {
                        tracing::debug!(%version, %error, "VBR refused API revision");
                        tried.push(version.as_str());
                        last = error;
                    }
                    Err(other) => return Err(other),
                },
            }
        }
        Err(Error::UnsupportedVersion { tried: tried.join(","), error: last })
    }

    /// `POST /api/oauth2/token` with `grant_type=password`.
    pub(crate) async fn password_grant(&self, version: ApiVersion) -> Result<TokenGrant> {
        let config = &self.inner.config;
        let form = |grant: &str| {
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", grant)
                .append_pair("username", &config.username)
                .append_pair("password", config.password.expose())
                .finish()
        };
        self.grant(Endpoint::Logon, version, "password", form).await
    }

    /// `POST /api/oauth2/token` with `grant_type=refresh_token`. Spends `refresh` (single use).
    pub(crate) async fn refresh_grant(&self, version: ApiVersion, refresh: &Secret) -> Result<TokenGrant> {
        let form = |grant: &str| {
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", grant)
                .append_pair("refresh_token", refresh.expose())
                .finish()
        };
        self.grant(Endpoint::TokenRefresh, version, "refresh_token", form).await
    }

    /// A token call with the grant type spelt as the revision's schema spells it, and once more
    /// in the other spelling when the server rejects that one.
    ///
    /// `ELoginGrantType` is lower case in 1.2-rev1 (`password`, `refresh_token`) and capitalised
    /// from 1.3-rev1 on (`Password`, `Refresh_token`), while every example of every revision and
    /// RFC 6749 use lower case. A server that enforces its schema accepts only its own
    /// spelling; a lenient one accepts both. A rejected grant type is a 400 about the request's
    /// content, so nothing was spent (not even a single-use refresh token).
    async fn grant(
        &self,
        endpoint: Endpoint,
        version: ApiVersion,
        grant: &str,
        form: impl Fn(&str) -> String,
    ) -> Result<TokenGrant> {
        let (first, second) = match version.capitalises_grant_types() {
            true => (capitalised(grant), grant.to_owned()),
            false => (grant.to_owned(), capitalised(grant)),
        };
        match self.token_call(endpoint, version, form(&first)).await {
            Err(Error::Rejected { status: 400, error }) if is_grant_type_refusal(&error) => {
                tracing::debug!(%version, %error, spelling = %second, "VBR refused the grant type's spelling; trying the other");
                self.token_call(endpoint, version, form(&second)).await
            }
            other => other,
        }
    }

    async fn token_call(&self, endpoint: Endpoint, version: ApiVersion, form: String) -> Result<TokenGrant> {
        let url = self.url(&["oauth2", "token"], &[])?;
        let cap = self.inner.config.max_body_bytes;
        let call = Call {
            method: Method::POST,
            url,
            endpoint,
            version,
            token: None,
            body: Some(Body::Form(form)),
            cap,
            accept: "application/json",
        };
        let body = self.call(call).await?;
        decode::token(&body)
    }

    /// A URL under `/api/`: `segments` are percent-encoded one by one, so an id can never
    /// change the path.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url> {
        let mut url = self.inner.api.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Config(format!("base URL {} cannot have a path", self.inner.api)))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// Sends one request and tells the observer about it. Returns the body of a 2xx answer.
    pub(crate) async fn call(&self, call: Call) -> Result<Bytes> {
        let started = Instant::now();
        let endpoint = call.endpoint;
        let result = self.exchange(call).await;
        if let Some(observer) = &self.inner.observer {
            let status = match &result {
                Ok((status, _)) => Some(*status),
                Err((status, _)) => *status,
            };
            observer.observe(endpoint, status, started.elapsed());
        }
        result.map(|(_, body)| body).map_err(|(_, e)| e)
    }

    /// One request/response. Errors carry the HTTP status when one was received.
    async fn exchange(&self, call: Call) -> std::result::Result<(u16, Bytes), (Option<u16>, Error)> {
        let Call { method, url, endpoint, version, token, body, cap, accept } = call;
        let config = &self.inner.config;
        let slow = matches!(endpoint, Endpoint::MountCreate | Endpoint::MountDelete | Endpoint::Download);
        let timeout = if slow { config.slow_request_timeout } else { config.request_timeout };
        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .timeout(timeout)
            .header(ACCEPT, accept)
            .header(API_VERSION_HEADER, version.as_str());
        if let Some(token) = &token {
            request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        request = match body {
            Some(Body::Json(bytes)) => request.header(CONTENT_TYPE, "application/json").body(bytes),
            Some(Body::Form(form)) => request.header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(form),
            None if method == Method::POST => request.header(CONTENT_LENGTH, "0"),
            None => request,
        };
        let response = request.send().await.map_err(|e| (None, transport(&e, timeout)))?;
        let status = response.status().as_u16();
        let is_ok = (200..300).contains(&status);
        // Error bodies are small JSON; cap them at the JSON cap even on a download.
        let cap = if is_ok { cap } else { cap.min(config.max_body_bytes) };
        let what = if endpoint == Endpoint::Download && is_ok { "download archive" } else { "response body" };
        let body = read_capped(response, cap, timeout, what).await.map_err(|e| (Some(status), e))?;
        if is_ok {
            return Ok((status, body));
        }
        let is_token_call = matches!(endpoint, Endpoint::Logon | Endpoint::TokenRefresh);
        let error = decode::api_error(&body).unwrap_or_else(|| fallback_error(status, &body, is_token_call));
        Err((Some(status), Error::from_status(status, error, is_token_call)))
    }
}

/// The API root (`…/api/`) from the configured server root, tolerating a URL that already
/// names `/api/` or `/api/v1/`.
fn api_root(base: &Url) -> Result<Url> {
    if !matches!(base.scheme(), "https" | "http") {
        return Err(Error::Config(format!("base_url must be https:// (got {})", base.scheme())));
    }
    if base.scheme() == "http" {
        // The spec: "unencrypted HTTP is not supported". Allowed for loopback tests only.
        tracing::warn!(url = %base, "VBR base_url uses plain http; VBR itself only serves https");
    }
    let mut root = base.clone();
    root.set_query(None);
    root.set_fragment(None);
    let mut path = root.path().trim_end_matches('/').to_owned();
    for suffix in ["/api/v1", "/api"] {
        if path.to_ascii_lowercase().ends_with(suffix) {
            path.truncate(path.len() - suffix.len());
            break;
        }
    }
    root.set_path(&format!("{path}/api/"));
    Ok(root)
}

/// Turns a token-call error into the version refusal's [`ApiError`], or gives it back.
fn version_refusal(err: Error) -> std::result::Result<ApiError, Error> {
    match err {
        Error::Rejected { status, error }
        | Error::ServerError { status, error }
        | Error::LogonFailed { status, error }
            if is_version_refusal(status, &error) =>
        {
            Ok(error)
        }
        other => Err(other),
    }
}

/// An error for a body that is not VBR's `Error`. On the token call nothing of the body is
/// quoted (it could echo the form); elsewhere a short, printable excerpt helps (a proxy's page).
fn fallback_error(status: u16, body: &[u8], is_token_call: bool) -> ApiError {
    let text = String::from_utf8_lossy(body);
    let excerpt: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    if is_token_call || excerpt.trim().is_empty() {
        ApiError::bare(format!("HTTP {status} without a VBR error body"))
    } else {
        ApiError::bare(format!("HTTP {status}: {}", excerpt.trim()))
    }
}

fn transport(e: &reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() { Error::Timeout(timeout) } else { Error::Transport(error_chain(e)) }
}

/// Reads a body, failing as soon as it exceeds `cap` bytes (so a huge body is never buffered).
async fn read_capped(response: reqwest::Response, cap: usize, timeout: Duration, what: &'static str) -> Result<Bytes> {
    let limit = cap as u64;
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(Error::TooLarge { what, limit });
    }
    let mut stream = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| transport(&e, timeout))?;
        if body.len() + chunk.len() > cap {
            return Err(Error::TooLarge { what, limit });
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

/// `password` → `Password`, `refresh_token` → `Refresh_token`, as the 1.3 schemas spell them.
fn capitalised(grant: &str) -> String {
    let mut chars = grant.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// A 400 about the grant type itself (not about credentials or the API revision).
fn is_grant_type_refusal(error: &ApiError) -> bool {
    let message = error.message.to_ascii_lowercase();
    message.contains("grant_type") || message.contains("granttype") || message.contains("grant type")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        let mut config = ClientConfig::new(Url::parse(base).unwrap(), "admin", Secret::new("hunter2"));
        config.insecure_skip_verify = false;
        Client::new(config, None).unwrap()
    }

    #[test]
    fn api_root_is_derived_from_the_server_root() {
        for base in ["https://vbr:9419", "https://vbr:9419/", "https://vbr:9419/api", "https://vbr:9419/api/v1/"] {
            assert_eq!(client(base).inner.api.as_str(), "https://vbr:9419/api/", "{base}");
        }
        assert_eq!(client("https://h/prefix/").inner.api.as_str(), "https://h/prefix/api/");
        assert!(Client::new(ClientConfig::new(Url::parse("ftp://x/").unwrap(), "u", Secret::new("p")), None).is_err());
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        let c = client("https://vbr:9419/");
        let url = c.url(&["v1", "tasks", "../../oauth2/token?x=1"], &[("nameFilter", "a b&c".into())]).unwrap();
        assert_eq!(url.as_str(), "https://vbr:9419/api/v1/tasks/..%2F..%2Foauth2%2Ftoken%3Fx=1?nameFilter=a+b%26c");
    }

    #[test]
    fn debug_hides_the_password() {
        let c = client("https://vbr:9419/");
        let printed = format!("{c:?} {:?}", c.config());
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
