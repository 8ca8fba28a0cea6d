//! Request plumbing of the EM routes: the session token, the response format, error bodies,
//! classifying a request by the route table, and the middleware that applies faults, holds
//! requests and writes the request log.

use std::time::{Duration, Instant};

use axum::body::{Body as HttpBody, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::Sim;
use super::api::{Route, table};
use super::hold::{HeldRequest, HoldPoint};
use super::render::{Body, El};
use super::vocab::{Call, Format};
use super::world::{FaultKind, SimError, World};

/// The session token header (EM REST docs, "Authentication and Security").
pub(super) const TOKEN_HEADER: &str = "X-RestSvcSessionId";

/// The `Content-Type` of each response format.
pub(super) fn media_type(format: Format) -> &'static str {
    match format {
        Format::Xml => "application/xml",
        Format::Json => "application/json",
    }
}

/// Does `path` match the route pattern (`{x}` one segment, `{*x}` one or more)?
fn path_matches(pattern: &str, path: &str) -> bool {
    let mut wanted = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (wanted.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with("{*") => return !g.is_empty(),
            (Some(w), Some(g)) if w.starts_with('{') && !g.is_empty() => {}
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// Which documented call a request is, for faults and the request log: the first route of
/// [`table`] it matches.
pub(super) fn classify(method: &Method, path: &str, query: &str) -> Option<Call> {
    /// The table without its handlers, built once.
    static CLASSES: std::sync::OnceLock<Vec<Route>> = std::sync::OnceLock::new();
    let classes = CLASSES.get_or_init(|| table().into_iter().map(|r| Route { handler: None, ..r }).collect());
    classes
        .iter()
        .find(|r| {
            r.method == method
                && path_matches(r.path, path)
                && r.query.is_none_or(|q| query.split('&').any(|pair| pair.eq_ignore_ascii_case(q)))
        })
        .and_then(|r| r.call)
}

// ---- request plumbing ---------------------------------------------------------------------

/// The response format a request asked for.
pub(super) fn format_of(headers: &HeaderMap) -> Format {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/json") && !accept.contains("application/xml") { Format::Json } else { Format::Xml }
}

/// The session token. Like EM, a cookie wins over the header (docs/em-api-notes.md §1.3).
pub(super) fn token_of(headers: &HeaderMap) -> Option<String> {
    let from_cookie = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|cookies| {
        cookies.split(';').find_map(|c| c.trim().strip_prefix(&format!("{TOKEN_HEADER}=")).map(str::to_owned))
    });
    from_cookie.or_else(|| headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned))
}

pub(super) fn render(body: &Body, format: Format, status: StatusCode) -> Response {
    let mut response = (status, body.render(format)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type(format)));
    response
}

pub(super) fn error_response(e: SimError, format: Format) -> Response {
    let el = El::new("Error").attr("Message", e.message.clone()).attr("StatusCode", e.status as i64);
    let el = match format {
        // The JSON form seen from real EM carries these keys (docs/em-api-notes.md §1.7).
        Format::Json => el.attr("FirstChanceExceptionMessage", e.message).attr("Status", "Error"),
        Format::Xml => el.field("FirstChanceExceptionMessage", e.message),
    };
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = render(&Body::Entity(el), format, status);
    if e.status == 401 {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic Realm=RestSvc"));
    }
    response
}

/// Applies request-level faults and records every API request in the log.
pub(super) async fn instrument(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let full_path = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
    let endpoint = classify(&method, &path, &query);
    let token = token_of(request.headers());
    let format = format_of(request.headers());
    let faults = {
        let mut world = sim.world();
        world.tick(Instant::now());
        world.take_faults(endpoint, true)
    };
    let mut status_fault = None;
    let (mut malformed, mut reset) = (false, false);
    for fault in &faults {
        match fault {
            FaultKind::Latency { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
            FaultKind::Status { status, message } => {
                status_fault = Some(SimError {
                    status: *status,
                    message: message.clone().unwrap_or_else(|| "Injected fault".into()),
                })
            }
            FaultKind::ExpireSession {} => {
                if let Some(t) = &token {
                    sim.world().expire_by_token(t);
                }
            }
            FaultKind::Malformed {} => malformed = true,
            FaultKind::Reset {} => reset = true,
            _ => {}
        }
    }
    // EM 9.5U4 rejected XML/JSON POST bodies when Accept listed several types (docs/em-api-notes.md §1.3).
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let has_body =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|l| l != "0");
    if status_fault.is_none() && method == Method::POST && has_body && accept.contains(',') {
        status_fault = Some(SimError { status: 400, message: "Node [root] does not exist.".into() });
    }
    let hold_at = sim.hold.count();
    let held = || HeldRequest { method: method.to_string(), path: full_path.clone(), endpoint };
    if hold_at == Some(HoldPoint::Before) {
        sim.hold.wait(held()).await;
    }
    let response = match status_fault {
        Some(e) => error_response(e, format),
        None => next.run(request).await,
    };
    let status = response.status();
    sim.world().record(method.as_str(), &full_path, endpoint, status.as_u16(), token.as_deref());
    if hold_at == Some(HoldPoint::After) {
        sim.hold.wait(held()).await;
    }
    let is_json = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == media_type(Format::Json));
    let quirky = is_json && !sim.quirks.is_empty();
    if !(malformed || reset || quirky) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let mut bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    if quirky {
        bytes = super::quirks::apply(&sim.quirks, bytes);
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    if !(malformed || reset) {
        return Response::from_parts(parts, HttpBody::from(bytes));
    }
    let half = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(header::CONTENT_LENGTH);
    if reset {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(half), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected connection reset"))];
        return Response::from_parts(parts, HttpBody::from_stream(futures_util::stream::iter(chunks)));
    }
    Response::from_parts(parts, HttpBody::from(half))
}

/// Authenticates, runs `f` on the world with the caller's session id, renders the result.
pub(super) fn authed(
    sim: &Sim,
    headers: &HeaderMap,
    ok: StatusCode,
    f: impl FnOnce(&mut World, &str, Instant) -> Result<Body, SimError>,
) -> Response {
    let format = format_of(headers);
    let now = Instant::now();
    let mut world = sim.world();
    world.tick(now);
    let result = world.authenticate(token_of(headers).as_deref(), now).and_then(|session| f(&mut world, &session, now));
    match result {
        Ok(body) => render(&body, format, ok),
        Err(e) => error_response(e, format),
    }
}

pub(super) fn authed_no_content(
    sim: &Sim,
    headers: &HeaderMap,
    f: impl FnOnce(&mut World, &str) -> Result<(), SimError>,
) -> Response {
    let format = format_of(headers);
    let now = Instant::now();
    let mut world = sim.world();
    world.tick(now);
    match world.authenticate(token_of(headers).as_deref(), now).and_then(|session| f(&mut world, &session)) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(e, format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified() {
        let c = |m: Method, p: &str, q: &str| classify(&m, p, q);
        assert_eq!(c(Method::POST, "/api/vmRestorePoints/x/mounts", ""), Some(Call::MountCreate));
        assert_eq!(c(Method::GET, "/api/vmReplicaPoints/x/mounts/1/C:/a", "action=listDirs"), Some(Call::MountBrowse));
        assert_eq!(c(Method::GET, "/api/vmRestorePoints/x/mounts/1/C:/a", "action=download"), Some(Call::Download));
        assert_eq!(c(Method::DELETE, "/api/vmRestorePoints/x/mounts/1", ""), Some(Call::MountDelete));
        assert_eq!(
            c(Method::POST, "/api/catalog/vms/v/vmRestorePoints/p/guestfs/C:/a", ""),
            Some(Call::CatalogRestore)
        );
        assert_eq!(c(Method::POST, "/api/catalog/vms/v/vmRestorePoints/p", "action=browse"), Some(Call::CatalogBrowse));
        assert_eq!(c(Method::DELETE, "/api/logonSessions/x", ""), Some(Call::Logoff));
        assert_eq!(c(Method::GET, "/api/", ""), Some(Call::ApiRoot));
    }

    #[test]
    fn requests_are_classified_by_the_route_table() {
        let call = |m: Method, path: &str, query: &str| classify(&m, path, query);
        assert_eq!(call(Method::GET, "/api/", ""), Some(Call::ApiRoot));
        assert_eq!(call(Method::POST, "/api/sessionMngr/", "v=latest"), Some(Call::Logon));
        assert_eq!(call(Method::DELETE, "/api/logonSessions/abc", ""), Some(Call::Logoff));
        assert_eq!(call(Method::GET, "/api/tasks", ""), Some(Call::TaskList));
        assert_eq!(call(Method::GET, "/api/tasks/task-1", ""), Some(Call::Task));
        assert_eq!(call(Method::POST, "/api/vmRestorePoints/p1/mounts", ""), Some(Call::MountCreate));
        assert_eq!(call(Method::GET, "/api/vmRestorePoints/p1/mounts/7/C:/x", "action=download"), Some(Call::Download));
        assert_eq!(
            call(Method::GET, "/api/vmRestorePoints/p1/mounts/7/C:/x", "action=listDirs"),
            Some(Call::MountBrowse)
        );
        assert_eq!(
            call(Method::POST, "/api/catalog/vms/v/vmRestorePoints/p1", "action=browse"),
            Some(Call::CatalogBrowse)
        );
        assert_eq!(call(Method::GET, "/api/vmRestorePoints/p1", ""), None, "a point read is no fault point");
        assert_eq!(call(Method::GET, "/api/vmRestorePoints/p1/mounts/7/", ""), None, "a tail needs a segment");
        assert_eq!(call(Method::PUT, "/api/query", ""), None);
    }
}
