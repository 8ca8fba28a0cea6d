//! The EM API as the simulator serves it: routes, request plumbing (token, format, faults,
//! the request log) and one handler per documented call.

use std::collections::HashMap;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use bytes::Bytes;

// Only plain enums are shared with the client. Paths, type names, header names and media types
// are the simulator's own reading of the documentation, so a typo in the client cannot be
// mirrored here and hidden from the tests.
use super::Sim;
use super::plumbing::{
    TOKEN_HEADER, authed, authed_no_content, error_response, format_of, instrument, render, token_of,
};
use super::render::Body;
use super::vocab::{Call, OsKind, PointKind};
use super::world::{MountKey, SimError};

/// One documented EM route: its path (axum's syntax), method, the call it is for faults and the
/// request log (`None`: not a call anyone injects faults into), and its handler. A route may
/// also demand a query parameter (`action=download`): then it names a call but no handler, as
/// its handler is the one of the same path and method without the demand.
pub(super) struct Route {
    pub(super) path: &'static str,
    pub(super) method: Method,
    pub(super) call: Option<Call>,
    pub(super) query: Option<&'static str>,
    pub(super) handler: Option<MethodRouter<Sim>>,
}

fn route(path: &'static str, method: Method, call: impl Into<Option<Call>>, handler: MethodRouter<Sim>) -> Route {
    Route { path, method, call: call.into(), query: None, handler: Some(handler) }
}

/// Every route the simulator serves, in one table: the router is built from it and requests
/// are classified by it. Static paths come before parameterised ones, as axum matches them.
pub(super) fn table() -> Vec<Route> {
    use Method as M;
    vec![
        route("/api/", M::GET, Call::ApiRoot, get(entry_point)),
        route("/api", M::GET, Call::ApiRoot, get(entry_point)),
        route("/api/sessionMngr/", M::POST, Call::Logon, post(logon)),
        route("/api/sessionMngr", M::POST, Call::Logon, post(logon)),
        route("/api/logonSessions", M::GET, Call::LogonSession, get(list_logon_sessions)),
        route("/api/logonSessions/{id}", M::GET, Call::LogonSession, get(get_logon_session)),
        route("/api/logonSessions/{id}", M::DELETE, Call::Logoff, delete(logoff)),
        route("/api/query", M::GET, Call::Query, get(query)),
        route("/api/tasks", M::GET, Call::TaskList, get(list_tasks)),
        route("/api/tasks/{id}", M::GET, Call::Task, get(get_task)),
        route("/api/tasks/{id}", M::DELETE, Call::TaskDelete, delete(delete_task)),
        route("/api/restoreSessions", M::GET, None, get(list_restore_sessions)),
        route("/api/restoreSessions/{id}", M::GET, Call::RestoreSession, get(get_restore_session)),
        route("/api/catalog/vms", M::GET, None, get(list_catalog_vms)),
        route("/api/catalog/vms/{vm}/vmRestorePoints", M::GET, None, get(list_catalog_points)),
        route("/api/catalog/vms/{vm}/vmRestorePoints/{pid}", M::POST, Call::CatalogBrowse, post(catalog_browse)),
        route(
            "/api/catalog/vms/{vm}/vmRestorePoints/{pid}/guestfs/{*path}",
            M::POST,
            Call::CatalogRestore,
            post(catalog_restore),
        ),
        route("/api/reports/summary/{report}", M::GET, None, get(summary_report)),
        route("/api/backupServers", M::GET, None, get(list_backup_servers)),
        route("/api/jobs", M::GET, None, get(list_jobs)),
        route("/api/backupSessions", M::GET, None, get(list_backup_sessions)),
        route("/api/repositories", M::GET, None, get(list_repositories)),
        route("/api/{coll}", M::GET, None, get(list_points)),
        route("/api/{coll}/{pid}", M::GET, None, get(get_point)),
        route("/api/{coll}/{pid}/mounts", M::GET, Call::MountList, get(list_mounts)),
        route("/api/{coll}/{pid}/mounts", M::POST, Call::MountCreate, post(create_mount)),
        route("/api/{coll}/{pid}/mounts/{mid}", M::GET, Call::MountGet, get(get_mount)),
        route("/api/{coll}/{pid}/mounts/{mid}", M::DELETE, Call::MountDelete, delete(delete_mount)),
        Route {
            path: "/api/{coll}/{pid}/mounts/{mid}/{*path}",
            method: M::GET,
            call: Some(Call::Download),
            query: Some("action=download"),
            handler: None,
        },
        route("/api/{coll}/{pid}/mounts/{mid}/{*path}", M::GET, Call::MountBrowse, get(browse_or_download)),
        route("/api/{coll}/{pid}/mounts/{mid}/{*path}", M::POST, Call::FileRestore, post(file_restore)),
    ]
}

/// The documented EM routes, every request instrumented (faults, request log).
pub(super) fn routes(sim: Sim) -> Router<Sim> {
    let mut router = Router::new();
    for r in table() {
        if let Some(handler) = r.handler {
            router = router.route(r.path, handler);
        }
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(sim, instrument))
}

fn point_kind(collection: &str) -> Result<PointKind, SimError> {
    match collection {
        "vmRestorePoints" => Ok(PointKind::Backup),
        "vmReplicaPoints" => Ok(PointKind::Replica),
        other => Err(SimError { status: 404, message: format!("Resource {other} not found") }),
    }
}

fn mount_key<'a>(
    session: &'a str,
    collection: &str,
    point_id: &'a str,
    mount_id: &'a str,
) -> Result<MountKey<'a>, SimError> {
    Ok(MountKey { session, kind: point_kind(collection)?, point_id, mount_id })
}

// ---- API handlers -----------------------------------------------------------------------------

/// Unknown paths. EM lists 401 for every method and path: an unauthenticated request learns
/// nothing, not even which resources exist, so the token is checked first.
async fn not_found(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    authed(&sim, &headers, StatusCode::OK, |_, _, _| {
        Err(SimError { status: 404, message: "Resource not found".into() })
    })
}

/// A known path with a method it does not serve: an `Error` body like every other error, after
/// the token check.
async fn method_not_allowed(State(sim): State<Sim>, method: Method, headers: HeaderMap) -> Response {
    authed(&sim, &headers, StatusCode::OK, |_, _, _| {
        Err(SimError {
            status: 405,
            message: format!("The requested resource does not support http method '{method}'."),
        })
    })
}

async fn entry_point(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    render(&sim.world().entry_point(), format_of(&headers), StatusCode::OK)
}

async fn logon(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let format = format_of(&headers);
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
    let Some((user, password)) = credentials else {
        return error_response(
            SimError { status: 401, message: "Authorization header has been expected but not found".into() },
            format,
        );
    };
    let mut world = sim.world();
    let now = Instant::now();
    world.tick(now);
    match world.logon(&user, &password, now) {
        Ok((token, body)) => {
            let mut response = render(&body, format, StatusCode::CREATED);
            let location = match &body {
                Body::Entity(_) => world.base.clone(),
                Body::Collection { .. } | Body::References(_) => unreachable!("logon returns an entity"),
            };
            let id = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            let h = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&token) {
                h.insert(TOKEN_HEADER, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("{TOKEN_HEADER}={token}; Path=/api;")) {
                h.insert(header::SET_COOKIE, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("{location}/logonSessions/{id}")) {
                h.insert(header::LOCATION, v);
            }
            response
        }
        Err(e) => error_response(e, format),
    }
}

async fn list_logon_sessions(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, s, _| w.list_logon_sessions(s))
}

async fn get_logon_session(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, s, _| w.get_logon_session(s, &id))
}

async fn logoff(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    authed_no_content(&sim, &headers, |w, s| w.logoff(s, &id))
}

async fn query(State(sim): State<Sim>, headers: HeaderMap, Query(params): Query<HashMap<String, String>>) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, now| w.query(&params, now))
}

async fn list_points(State(sim): State<Sim>, headers: HeaderMap, Path(coll): Path<String>) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, _| w.point_list(point_kind(&coll)?))
}

/// Whether `?format=Entity` asks for entities instead of references.
fn wants_entities(query: &HashMap<String, String>) -> bool {
    query.iter().any(|(k, v)| k.eq_ignore_ascii_case("format") && v.eq_ignore_ascii_case("Entity"))
}

async fn summary_report(State(sim): State<Sim>, headers: HeaderMap, Path(report): Path<String>) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, _| w.summary(&report))
}

async fn list_backup_servers(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, _| w.backup_servers(wants_entities(&q)))
}

async fn list_jobs(State(sim): State<Sim>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, _| w.jobs(wants_entities(&q)))
}

async fn list_backup_sessions(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, _| w.backup_sessions(wants_entities(&q)))
}

async fn list_repositories(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, _| w.repositories(wants_entities(&q)))
}

async fn list_tasks(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, s, now| w.task_list(s, now))
}

async fn list_restore_sessions(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, _| w.restore_session_list())
}

async fn list_catalog_vms(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, _| w.catalog_vm_list())
}

async fn list_catalog_points(State(sim): State<Sim>, headers: HeaderMap, Path(vm): Path<String>) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, _| w.catalog_point_list(&vm))
}

async fn get_point(State(sim): State<Sim>, headers: HeaderMap, Path((coll, pid)): Path<(String, String)>) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, _| w.point(point_kind(&coll)?, &pid))
}

async fn list_mounts(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((coll, pid)): Path<(String, String)>,
) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, s, _| w.mounts(s, point_kind(&coll)?, &pid))
}

/// Reads the optional `StartMountSpec`/`{"OsKind":…}` body.
fn os_kind(body: &[u8]) -> Result<Option<OsKind>, SimError> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value = if text.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| SimError { status: 400, message: format!("Invalid JSON: {e}") })?;
        v.get("OsKind").and_then(|k| k.as_str()).map(str::to_owned)
    } else if text.contains("StartMountSpec") {
        text.split_once("<OsKind>").and_then(|(_, rest)| rest.split_once("</OsKind>")).map(|(k, _)| k.trim().to_owned())
    } else {
        return Err(SimError { status: 400, message: "Node [root] does not exist.".into() });
    };
    match value.as_deref() {
        None => Ok(None),
        Some("Windows") => Ok(Some(OsKind::Windows)),
        Some("Linux") => Ok(Some(OsKind::Linux)),
        Some(other) => Err(SimError { status: 400, message: format!("Unknown OsKind {other}") }),
    }
}

async fn create_mount(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((coll, pid)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let faults = sim.world().take_faults(Some(Call::MountCreate), false);
    authed(&sim, &headers, StatusCode::ACCEPTED, |w, s, now| {
        let os = os_kind(&body)?;
        w.start_mount(s, point_kind(&coll)?, &pid, os, &faults, now)
    })
}

async fn get_mount(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((coll, pid, mid)): Path<(String, String, String)>,
) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, s, _| w.mount(&mount_key(s, &coll, &pid, &mid)?))
}

async fn delete_mount(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((coll, pid, mid)): Path<(String, String, String)>,
) -> Response {
    authed_no_content(&sim, &headers, |w, s| w.delete_mount(&mount_key(s, &coll, &pid, &mid)?))
}

async fn browse_or_download(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((coll, pid, mid, path)): Path<(String, String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let action = params.get("action").cloned().unwrap_or_else(|| "listAll".into());
    if action.eq_ignore_ascii_case("download") {
        let format = format_of(&headers);
        let now = Instant::now();
        let mut world = sim.world();
        world.tick(now);
        let result = world
            .authenticate(token_of(&headers).as_deref(), now)
            .and_then(|s| world.download(&mount_key(&s, &coll, &pid, &mid)?, &path));
        return match result {
            Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
            Err(e) => error_response(e, format),
        };
    }
    authed(&sim, &headers, StatusCode::OK, |w, s, _| w.browse(&mount_key(s, &coll, &pid, &mid)?, &path, &action))
}

async fn file_restore(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((coll, pid, mid, path)): Path<(String, String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let faults = sim.world().take_faults(Some(Call::FileRestore), false);
    authed(&sim, &headers, StatusCode::ACCEPTED, |w, s, now| {
        if !params.get("action").is_some_and(|a| a.eq_ignore_ascii_case("restore")) {
            return Err(SimError { status: 400, message: "Unsupported action".into() });
        }
        let text = String::from_utf8_lossy(&body);
        if !text.contains("ToOriginalLocation") && !text.contains("ForDirectDownload") {
            return Err(SimError {
                status: 400,
                message: "FileRestoreSpec needs ToOriginalLocation or ForDirectDownload".into(),
            });
        }
        let key = mount_key(s, &coll, &pid, &mid)?;
        w.start_file_restore(&key, &path, text.contains("ForDirectDownload"), &faults, now)
    })
}

/// `POST …/vmRestorePoints/{id}?action=browse`: the reference page documents `200 OK` with a
/// `BrowseVM` task (the scenario page shows `202`). The task runs like any other; `guestfs`
/// opens for this logon session when it stops running.
async fn catalog_browse(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((vm, pid)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let faults = sim.world().take_faults(Some(Call::CatalogBrowse), false);
    authed(&sim, &headers, StatusCode::OK, |w, s, now| {
        if !params.get("action").is_some_and(|a| a.eq_ignore_ascii_case("browse")) {
            return Err(SimError { status: 405, message: "Method not allowed without action=browse".into() });
        }
        w.start_catalog_browse(s, &vm, &pid, &faults, now)
    })
}

async fn catalog_restore(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((vm, pid, path)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let faults = sim.world().take_faults(Some(Call::CatalogRestore), false);
    authed(&sim, &headers, StatusCode::ACCEPTED, |w, s, now| {
        if !params.get("action").is_some_and(|a| a.eq_ignore_ascii_case("restore")) {
            return Err(SimError { status: 400, message: "Unsupported action".into() });
        }
        w.start_catalog_restore(s, &vm, &pid, &path, &faults, now)
    })
}

async fn get_task(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, s, now| w.task(s, &id, now))
}

async fn delete_task(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    authed_no_content(&sim, &headers, |w, s| w.delete_task(s, &id))
}

async fn get_restore_session(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    authed(&sim, &headers, StatusCode::OK, |w, _, now| w.restore_session(&id, now))
}
