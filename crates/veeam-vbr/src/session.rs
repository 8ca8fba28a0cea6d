//! A logged-on VBR session: the OAuth2 tokens, their renewal, and the calls that are not
//! file-level restore (those are in `flr.rs`).
//!
//! Token rules, from `TokenModel` in every spec: the access token "can be used multiple
//! times, but its lifetime is 15 minutes"; the refresh token "can be used only once, and its
//! default lifetime is 14 days". So the session renews the access token shortly before it
//! expires (and once after an unexpected 401), spending the refresh token exactly once: the
//! tokens sit behind an async mutex that is held across the renewal, and a caller that saw a
//! 401 with an older token generation does not renew again. When the refresh grant fails
//! (spent, expired, revoked, server restarted), the session logs on again with the password.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;
use tokio::sync::Mutex;
use veeam_secret::Secret;

use crate::client::{Body, Call, Client};
use crate::decode;
use crate::endpoint::Endpoint;
use crate::error::{ApiError, Error, Result};
use crate::model::*;
use crate::version::ApiVersion;

/// A logged-on session. Cheap to clone; clones share the tokens.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    client: Client,
    version: ApiVersion,
    tokens: Mutex<Tokens>,
}

struct Tokens {
    access: Secret,
    /// `None` once sent (it is single use) until the next grant brings a new one.
    refresh: Option<Secret>,
    renew_at: Instant,
    /// Bumped on every new grant, so a caller that saw a 401 can tell whether someone else
    /// already renewed.
    generation: u64,
    logged_out: bool,
}

impl Tokens {
    fn install(&mut self, grant: TokenGrant) {
        let lifetime = grant.lifetime();
        // Renew a minute early (a fifth of the lifetime for short ones): clocks and queues.
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        self.access = grant.access_token;
        self.refresh = grant.refresh_token;
        self.renew_at = Instant::now() + lifetime - margin;
        self.generation += 1;
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.inner.client)
            .field("api_version", &self.inner.version)
            .field("tokens", &"<secret>")
            .finish()
    }
}

/// A JSON request of a session, before the token is added.
pub(crate) struct Req<'a> {
    pub method: Method,
    pub endpoint: Endpoint,
    pub segments: &'a [&'a str],
    pub query: Vec<(&'static str, String)>,
    pub body: Option<serde_json::Value>,
}

impl<'a> Req<'a> {
    pub fn get(endpoint: Endpoint, segments: &'a [&'a str]) -> Req<'a> {
        Req { method: Method::GET, endpoint, segments, query: Vec::new(), body: None }
    }

    pub fn post(endpoint: Endpoint, segments: &'a [&'a str], body: Option<serde_json::Value>) -> Req<'a> {
        Req { method: Method::POST, endpoint, segments, query: Vec::new(), body }
    }

    pub fn query(mut self, key: &'static str, value: impl ToString) -> Req<'a> {
        self.query.push((key, value.to_string()));
        self
    }
}

impl Session {
    pub(crate) fn new(client: Client, version: ApiVersion, grant: TokenGrant) -> Session {
        let mut tokens = Tokens {
            access: Secret::new(""),
            refresh: None,
            renew_at: Instant::now(),
            generation: 0,
            logged_out: false,
        };
        tokens.install(grant);
        Session { inner: Arc::new(SessionInner { client, version, tokens: Mutex::new(tokens) }) }
    }

    /// The `x-api-version` the logon agreed on; every request of this session carries it.
    pub fn api_version(&self) -> ApiVersion {
        self.inner.version
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// `POST /api/oauth2/logout`: "your access and refresh tokens become invalid". Later calls
    /// on this session fail with [`Error::SessionExpired`].
    pub async fn logout(&self) -> Result<()> {
        let result = self
            .send(Req::post(Endpoint::Logoff, &["oauth2", "logout"], None), self.json_cap(), "application/json")
            .await;
        let mut tokens = self.inner.tokens.lock().await;
        tokens.logged_out = true;
        tokens.access = Secret::new("");
        tokens.refresh = None;
        result.map(drop)
    }

    /// `GET /api/v1/serverInfo`. "Available to: Veeam Backup Administrator" only: a restore
    /// operator account gets [`Error::Forbidden`], which callers should treat as "unknown".
    pub async fn server_info(&self) -> Result<ServerInfo> {
        decode::server_info(&self.json(Req::get(Endpoint::ServerInfo, &["v1", "serverInfo"])).await?)
    }

    /// `GET /api/v1/serverTime` ("Available to: Anyone").
    pub async fn server_time(&self) -> Result<ServerTime> {
        decode::server_time(&self.json(Req::get(Endpoint::ServerTime, &["v1", "serverTime"])).await?)
    }

    /// `GET /api/v1/tasks/{id}`: FLR download and restore tasks are read here (the spec has no
    /// task path under `backupBrowser/flr`).
    pub async fn task(&self, task_id: &str) -> Result<Task> {
        decode::task(&self.json(Req::get(Endpoint::Task, &["v1", "tasks", task_id])).await?)
    }

    /// Polls [`Session::task`] every `poll` until it finishes or `deadline` passes. A task that
    /// finishes with anything but `Success`/`Warning` is [`Error::TaskFailed`]; running past
    /// the deadline is [`Error::Timeout`] (the task is left running: VBR has no FLR-task
    /// cancel that a restore operator may call, `POST /tasks/{id}/stop` is admin only).
    pub async fn wait_for_task(&self, task_id: &str, poll: Duration, deadline: Duration) -> Result<Task> {
        let started = Instant::now();
        loop {
            let task = self.task(task_id).await?;
            if task.is_finished() {
                if task.succeeded() {
                    return Ok(task);
                }
                let result = task.result.as_ref().map_or("no result", |r| r.as_str());
                let message = match &task.message {
                    Some(m) => format!("{result}: {m}"),
                    None => result.to_owned(),
                };
                let operation = task.task_type.clone().unwrap_or_else(|| "task".into());
                return Err(Error::TaskFailed { operation, message });
            }
            if started.elapsed() + poll > deadline {
                return Err(Error::Timeout(deadline));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// `GET /api/v1/sessions/{id}`: e.g. the FLR session after unmount, to confirm it stopped.
    pub async fn session_info(&self, session_id: &str) -> Result<SessionInfo> {
        decode::session(&self.json(Req::get(Endpoint::RestoreSession, &["v1", "sessions", session_id])).await?)
    }

    /// Sessions created after `after` (`GET /api/v1/sessions?createdAfterFilter=`, paged): a
    /// file-level restore shows here as soon as VBR starts it, before its mount is ready.
    pub async fn sessions_created_after(&self, after: std::time::SystemTime) -> Result<Vec<SessionInfo>> {
        let after = humantime::format_rfc3339_seconds(after).to_string();
        let query = vec![("createdAfterFilter", after)];
        self.paged(Endpoint::Sessions, &["v1", "sessions"], query, decode::sessions).await
    }

    /// Backup objects whose name is exactly `name` (case-sensitive matches first; if there are
    /// none, case-insensitive ones). `nameFilter` is a pattern that "can match any backup
    /// object parameter", so the server's answer is only a pre-selection.
    pub async fn find_backup_objects(&self, name: &str) -> Result<Vec<BackupObject>> {
        let objects: Vec<BackupObject> = self
            .paged(
                Endpoint::BackupObjects,
                &["v1", "backupObjects"],
                vec![("nameFilter", name.to_owned())],
                decode::backup_objects,
            )
            .await?;
        Ok(exact_name_matches(objects, name, |o| o.name.as_deref()))
    }

    /// The newest restore point of the machine called `vm_name`.
    ///
    /// Robust path: `GET /api/v1/backupObjects?nameFilter=` → exact-name match → for each
    /// match `GET /api/v1/restorePoints?backupObjectIdFilter={id}&orderColumn=CreationTime&
    /// orderAsc=false&limit=10` → newest by `creationTime` (compared here too, in case a server
    /// ignores the ordering). Not `backupObjects/{id}/restorePoints`: in 1.2-rev1 that path takes
    /// no query parameters at all (no ordering, no limit); `restorePoints` has the same filters
    /// in all three specs. When no backup object matches, falls back to
    /// `restorePoints?nameFilter=` with the same exact-name rule (`ObjectRestorePointModel.name`
    /// is the object's name). No point at all is [`Error::NotFound`].
    pub async fn newest_restore_point(&self, vm_name: &str) -> Result<RestorePoint> {
        let objects = self.find_backup_objects(vm_name).await?;
        let mut points = Vec::new();
        for object in objects.iter().take(MAX_OBJECTS) {
            let req = newest_first(Req::get(Endpoint::RestorePoints, &["v1", "restorePoints"]))
                .query("backupObjectIdFilter", &object.id);
            points.extend(decode::restore_points(&self.json(req).await?)?.data);
        }
        if objects.is_empty() {
            let req =
                newest_first(Req::get(Endpoint::RestorePoints, &["v1", "restorePoints"])).query("nameFilter", vm_name);
            let page = decode::restore_points(&self.json(req).await?)?;
            points = exact_name_matches(page.data, vm_name, |p| p.name.as_deref());
        }
        points.into_iter().max_by_key(|p| p.created_at()).ok_or_else(|| Error::NotFound {
            error: ApiError::bare(format!("no restore point of a backup object named {vm_name:?}")),
        })
    }

    /// Follows `skip`/`limit` paging until `pagination.total` items are read, a page comes back
    /// empty, or [`MAX_PAGES`] pages were read.
    pub(crate) async fn paged<T>(
        &self,
        endpoint: Endpoint,
        segments: &[&str],
        query: Vec<(&'static str, String)>,
        decode: fn(&[u8]) -> Result<Page<T>>,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let skip = all.len();
            let mut req = Req::get(endpoint, segments).query("skip", skip).query("limit", PAGE_SIZE);
            req.query.extend(query.iter().cloned());
            let page = decode(&self.json(req).await?)?;
            let got = page.data.len();
            all.extend(page.data);
            if !more_pages(page.pagination, skip, got, all.len()) {
                return Ok(all);
            }
        }
        tracing::warn!(endpoint = endpoint.as_str(), read = all.len(), "stopped following pages at the page limit");
        Ok(all)
    }

    /// Sends a JSON request and returns the body, capped at `max_body_bytes`.
    pub(crate) async fn json(&self, req: Req<'_>) -> Result<Bytes> {
        self.send(req, self.json_cap(), "application/json").await
    }

    pub(crate) fn json_cap(&self) -> usize {
        self.inner.client.config().max_body_bytes
    }

    /// Sends a request with the current access token; after a 401, renews once and retries.
    /// (A 401 means the request was refused before it was acted on, so a POST is safe to
    /// repeat.)
    pub(crate) async fn send(&self, req: Req<'_>, cap: usize, accept: &'static str) -> Result<Bytes> {
        let client = &self.inner.client;
        let url = client.url(req.segments, &req.query.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>())?;
        let body = req.body.map(|v| serde_json::to_vec(&v)).transpose().map_err(|e| Error::Config(e.to_string()))?;
        let call = |token: Secret| Call {
            method: req.method.clone(),
            url: url.clone(),
            endpoint: req.endpoint,
            version: self.inner.version,
            token: Some(token),
            body: body.clone().map(Body::Json),
            cap,
            accept,
        };
        let (token, generation) = self.access_token().await?;
        match client.call(call(token)).await {
            Err(Error::SessionExpired { error }) => {
                tracing::debug!(endpoint = req.endpoint.as_str(), %error, "access token refused; renewing once");
                self.renew_after_401(generation).await?;
                let (token, _) = self.access_token().await?;
                client.call(call(token)).await
            }
            other => other,
        }
    }

    /// The current access token, renewed first when it is about to expire.
    async fn access_token(&self) -> Result<(Secret, u64)> {
        let mut tokens = self.inner.tokens.lock().await;
        if tokens.logged_out {
            return Err(Error::SessionExpired { error: ApiError::bare("logged out") });
        }
        if Instant::now() >= tokens.renew_at {
            self.renew(&mut tokens).await?;
        }
        Ok((tokens.access.clone(), tokens.generation))
    }

    /// Renews after a 401, unless another caller already did since `seen` was handed out.
    async fn renew_after_401(&self, seen: u64) -> Result<()> {
        let mut tokens = self.inner.tokens.lock().await;
        if tokens.logged_out {
            return Err(Error::SessionExpired { error: ApiError::bare("logged out") });
        }
        if tokens.generation == seen { self.renew(&mut tokens).await } else { Ok(()) }
    }

    /// Refresh grant with the single-use refresh token; on any failure, the password grant.
    /// Runs with the token lock held, so no two callers ever spend the same refresh token.
    async fn renew(&self, tokens: &mut Tokens) -> Result<()> {
        let client = &self.inner.client;
        // Taken, not borrowed: once sent it is spent, whatever the answer (or a timeout) says.
        if let Some(refresh) = tokens.refresh.take() {
            match client.refresh_grant(self.inner.version, &refresh).await {
                Ok(grant) => {
                    tokens.install(grant);
                    return Ok(());
                }
                Err(err) => {
                    tracing::info!(reason = err.reason(), %err, "token refresh failed; logging on again with the password")
                }
            }
        }
        let grant = client.password_grant(self.inner.version).await?;
        tokens.install(grant);
        Ok(())
    }
}

/// How many pages [`Session::paged`] follows at most, and how big each is (the spec's default
/// `limit` is 200).
pub(crate) const MAX_PAGES: usize = 50;
pub(crate) const PAGE_SIZE: usize = 200;
/// Backup objects with the same name whose restore points are read (same VM in several jobs).
const MAX_OBJECTS: usize = 16;

/// Whether another page should be read after one that started at `skip`, brought `got` items
/// and made `read` in all: not when it was empty, when `total` is reached or unknown, or when
/// the server says it answered another `skip` than asked (it ignores paging: stop rather than
/// read the same page fifty times).
pub(crate) fn more_pages(pagination: Option<Pagination>, skip: usize, got: usize, read: usize) -> bool {
    let Some(p) = pagination else { return false };
    if got == 0 || p.skip.is_some_and(|s| s != skip as u64) {
        return false;
    }
    p.total.is_some_and(|total| (read as u64) < total)
}

fn newest_first(req: Req<'_>) -> Req<'_> {
    req.query("orderColumn", "CreationTime").query("orderAsc", "false").query("limit", 10)
}

/// Items named exactly `name`; if none, items named `name` ignoring ASCII case.
fn exact_name_matches<T>(items: Vec<T>, name: &str, name_of: impl Fn(&T) -> Option<&str>) -> Vec<T> {
    if items.iter().any(|i| name_of(i) == Some(name)) {
        return items.into_iter().filter(|i| name_of(i) == Some(name)).collect();
    }
    items.into_iter().filter(|i| name_of(i).is_some_and(|n| n.eq_ignore_ascii_case(name))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_stops_when_it_should() {
        let p = |total, skip| Some(Pagination { total: Some(total), count: None, skip: Some(skip), limit: None });
        assert!(more_pages(p(450, 0), 0, 200, 200));
        assert!(!more_pages(p(450, 400), 400, 50, 450));
        assert!(!more_pages(p(450, 0), 200, 200, 400), "server ignored skip");
        assert!(!more_pages(p(450, 200), 200, 0, 200), "empty page");
        assert!(!more_pages(None, 0, 200, 200), "no pagination: one page");
    }

    #[test]
    fn exact_names_win_over_case_insensitive_ones() {
        let names = vec![Some("web01"), Some("WEB01"), Some("web010"), None];
        assert_eq!(exact_name_matches(names.clone(), "web01", |n| *n), vec![Some("web01")]);
        assert_eq!(exact_name_matches(names.clone(), "Web01", |n| *n), vec![Some("web01"), Some("WEB01")]);
        assert!(exact_name_matches(names, "web", |n| *n).is_empty());
    }
}
