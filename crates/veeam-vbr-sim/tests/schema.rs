//! Drives every route the simulator serves, on every revision whose bodies differ, and validates
//! every JSON body against the spec's schema for that operation and status code
//! (`tests/schemas/*.json`, extracted by `tests/schemas/extract.py`).

mod common;

use std::sync::atomic::Ordering;

use common::*;
use serde_json::{Value, json};

const REVISIONS: &[&str] = &["1.1-rev1", "1.2-rev0", "1.2-rev1", "1.3-rev0", "1.3-rev1", "1.3-rev2"];

fn mount_body(rev: &str, point: &str, ty: &str) -> Value {
    let mut b = json!({ "restorePointId": point, "type": ty, "autoUnmount": { "isEnabled": true, "noActivityPeriodInMinutes": 30 }, "reason": "schema test" });
    if rev.starts_with("1.3") {
        b["mountMode"] = json!("Automatic");
    }
    if rev == "1.3-rev2" && ty == "Linux" {
        b["mountServer"] = json!({ "mountServerType": "OriginalHost", "originalHost": {} });
    }
    b
}

async fn auth_routes(base: &str, rev: &str, s: &std::sync::Arc<Schemas>) {
    let mut api = Api::new(base, rev, Some(s.clone()));
    assert_eq!(api.login("svc-canary", "wrong").await.status, 401);
    assert_eq!(api.login("nobody", "x").await.status, 401);
    assert_eq!(api.login("disabled", "disabled").await.status, 401);
    let wrong_case = if rev.starts_with("1.3") { "password" } else { "Password" };
    let r = api.form(&[("grant_type", wrong_case), ("username", "admin"), ("password", "admin")]).await;
    assert_eq!(r.status, 400, "grant_type case of the other revision");
    assert_eq!(api.form(&[("username", "admin")]).await.status, 400);
    assert_eq!(api.login("svc-canary", "canary").await.status, 200);
    let gt = if rev.starts_with("1.3") { "Refresh_token" } else { "refresh_token" };
    let rt = api.refresh.clone().unwrap();
    let r = api.form(&[("grant_type", gt), ("refresh_token", &rt)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        api.form(&[("grant_type", gt), ("refresh_token", &rt)]).await.status,
        401,
        "refresh token is single use"
    );
    api.token = r.json["access_token"].as_str().map(str::to_string);
    assert_eq!(api.call("POST /api/oauth2/logout", "/api/oauth2/logout", None).await.status, 200);
    assert_eq!(api.call("GET /api/v1/restorePoints", "/api/v1/restorePoints", None).await.status, 401);
    let mut anon = Api::new(base, rev, Some(s.clone()));
    assert_eq!(anon.call("GET /api/v1/serverTime", "/api/v1/serverTime", None).await.status, 200);
    assert_eq!(anon.call("GET /api/v1/restorePoints", "/api/v1/restorePoints", None).await.status, 401);
    anon.no_version = true;
    assert_eq!(anon.call("GET /api/v1/serverTime", "/api/v1/serverTime", None).await.status, 400);
    let mut bad = Api::new(base, "9.9-rev9", Some(s.clone()));
    bad.no_version = false;
    assert_eq!(bad.call("GET /api/v1/serverTime", "/api/v1/serverTime", None).await.status, 400);
}

async fn inventory_routes(api: &Api, viewer: &Api) {
    let r = api.call("GET /api/v1/serverInfo", "/api/v1/serverInfo", None).await;
    assert_eq!(r.status, 403, "serverInfo is Backup Administrator only");
    let r =
        api.call("GET /api/v1/backupObjects", "/api/v1/backupObjects?nameFilter=canary-*&skip=0&limit=10", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["data"].as_array().unwrap().len(), 3);
    let vm = r.json["data"][0]["id"].as_str().unwrap().to_string();
    let p = format!("/api/v1/backupObjects/{vm}/restorePoints?orderColumn=CreationTime&orderAsc=false");
    let r = api.call("GET /api/v1/backupObjects/{id}/restorePoints", &p, None).await;
    assert_eq!(r.status, 200);
    let p = "/api/v1/backupObjects/5a1e0000-0000-4000-8000-00000000ffff/restorePoints";
    assert_eq!(api.call("GET /api/v1/backupObjects/{id}/restorePoints", p, None).await.status, 404);
    let q = format!(
        "/api/v1/restorePoints?backupObjectIdFilter={vm}&orderColumn=CreationTime&orderAsc=false&limit=1&createdAfterFilter=2000-01-01T00:00:00Z"
    );
    let r = api.call("GET /api/v1/restorePoints", &q, None).await;
    assert_eq!(r.json["data"].as_array().unwrap().len(), 1);
    for q in ["?malwareStatusFilter=Infected", "?nameFilter=canary-lnx01", "?skip=1&limit=2"] {
        let r = api.call("GET /api/v1/restorePoints", &format!("/api/v1/restorePoints{q}"), None).await;
        assert_eq!(r.status, 200, "{q}");
    }
    for q in ["?malwareStatusFilter=Bogus", "?limit=x", "?createdAfterFilter=yesterday", "?orderColumn=Name"] {
        let r = api.call("GET /api/v1/restorePoints", &format!("/api/v1/restorePoints{q}"), None).await;
        assert_eq!(r.status, 400, "{q}");
    }
    let r = api.call("GET /api/v1/restorePoints/{id}", &format!("/api/v1/restorePoints/{WIN_NEWEST}"), None).await;
    assert_eq!(r.status, 200);
    let r = api
        .call("GET /api/v1/restorePoints/{id}", "/api/v1/restorePoints/5a1e0000-0000-4000-8000-00000000ffff", None)
        .await;
    assert_eq!(r.status, 404);
    let r = viewer.call("GET /api/v1/restorePoints", "/api/v1/restorePoints", None).await;
    assert_eq!(r.status, 200, "a Backup Viewer may list points");
}

async fn wait_task(api: &Api, id: &str) -> Value {
    wait_for(10, "task to stop", || async {
        let r = api.call("GET /api/v1/tasks/{id}", &format!("/api/v1/tasks/{id}"), None).await;
        assert_eq!(r.status, 200);
        (r.json["state"] == "Stopped").then_some(r.json)
    })
    .await
}

async fn flr_routes(api: &Api, viewer: &Api, admin: &Api, rev: &str) {
    let m = "POST /api/v1/restore/flr";
    assert_eq!(viewer.call(m, "/api/v1/restore/flr", Some(mount_body(rev, WIN_NEWEST, "Windows"))).await.status, 403);
    assert_eq!(api.call(m, "/api/v1/restore/flr", Some(json!({"type": "Windows"}))).await.status, 400);
    assert_eq!(api.call(m, "/api/v1/restore/flr", Some(mount_body(rev, WIN_NEWEST, "Linux"))).await.status, 400);
    let r = api.call(m, "/api/v1/restore/flr", Some(mount_body(rev, WIN_NEWEST, "Windows"))).await;
    assert_eq!(r.status, 201);
    let win = r.json["sessionId"].as_str().unwrap().to_string();
    let r = api.call(m, "/api/v1/restore/flr", Some(mount_body(rev, LNX_NEWEST, "Linux"))).await;
    assert_eq!(r.status, 201);
    let lnx = r.json["sessionId"].as_str().unwrap().to_string();
    let r = api
        .call(
            "GET /api/v1/backupBrowser/flr",
            "/api/v1/backupBrowser/flr?orderColumn=CreationTime&orderAsc=false&limit=50",
            None,
        )
        .await;
    assert!(r.json["data"].as_array().unwrap().len() >= 3, "own two mounts and the foreign one");
    let g = "GET /api/v1/backupBrowser/flr/{sessionId}";
    assert_eq!(api.call(g, &format!("/api/v1/backupBrowser/flr/{win}"), None).await.status, 200);
    assert_eq!(viewer.call(g, &format!("/api/v1/backupBrowser/flr/{win}"), None).await.status, 403);
    let br = "POST /api/v1/backupBrowser/flr/{sessionId}/browse";
    for (sid, path) in [(&win, ""), (&win, "C:\\"), (&win, "C:\\canary"), (&lnx, "/"), (&lnx, "/canary")] {
        let r = api.call(br, &format!("/api/v1/backupBrowser/flr/{sid}/browse"), Some(json!({ "path": path }))).await;
        assert_eq!(r.status, 200, "browse {path:?}");
    }
    let r = api.call(br, &format!("/api/v1/backupBrowser/flr/{win}/browse"), Some(json!({ "path": "C:\\nope" }))).await;
    assert_eq!(r.status, 400);
    download_and_restore(api, admin, &win, &lnx).await;
    sessions_routes(api, admin, &win, &lnx).await;
}

async fn download_and_restore(api: &Api, admin: &Api, win: &str, lnx: &str) {
    let pd = "POST /api/v1/backupBrowser/flr/{sessionId}/prepareDownload";
    let body = json!({ "sourcePath": ["C:\\canary\\canary.txt"] });
    let r = api.call(pd, &format!("/api/v1/backupBrowser/flr/{win}/prepareDownload"), Some(body)).await;
    assert_eq!(r.status, 201);
    let task = r.json["id"].as_str().unwrap().to_string();
    let dl = "POST /api/v1/backupBrowser/flr/{sessionId}/prepareDownload/{taskId}/download";
    let dl_path = format!("/api/v1/backupBrowser/flr/{win}/prepareDownload/{task}/download");
    let early = api.call(dl, &dl_path, None).await;
    assert!(early.status == 400 || early.status == 200);
    wait_task(api, &task).await;
    let r = api.call(dl, &dl_path, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/octet-stream");
    assert_eq!(&r.bytes[..4], b"PK\x03\x04");
    let bad = json!({ "sourcePath": ["/nope"] });
    assert_eq!(api.call(pd, &format!("/api/v1/backupBrowser/flr/{lnx}/prepareDownload"), Some(bad)).await.status, 400);
    let rs = "POST /api/v1/backupBrowser/flr/{sessionId}/restore";
    let body = json!({ "sourcePath": ["/canary/canary.txt"], "restoreType": "Overwrite" });
    let r = api.call(rs, &format!("/api/v1/backupBrowser/flr/{lnx}/restore"), Some(body)).await;
    assert_eq!(r.status, 201);
    let rtask = r.json["id"].as_str().unwrap().to_string();
    let done = wait_task(api, &rtask).await;
    assert_eq!(done["result"], "Success");
    let bad = json!({ "sourcePath": ["/canary/canary.txt"], "restoreType": "Sideways" });
    assert_eq!(api.call(rs, &format!("/api/v1/backupBrowser/flr/{lnx}/restore"), Some(bad)).await.status, 400);
    let r = api.call("GET /api/v1/tasks", "/api/v1/tasks?typeFilter=FlrRestore&stateFilter=Stopped", None).await;
    assert_eq!(r.status, 200);
    let stop = "POST /api/v1/tasks/{id}/stop";
    assert_eq!(
        api.call(stop, &format!("/api/v1/tasks/{task}/stop"), None).await.status,
        403,
        "tasks/stop is admin only"
    );
    assert_eq!(admin.call(stop, &format!("/api/v1/tasks/{task}/stop"), None).await.status, 200);
    let missing = "/api/v1/tasks/5a1e0000-0000-4000-8000-00000000ffff";
    assert_eq!(api.call("GET /api/v1/tasks/{id}", missing, None).await.status, 404);
}

async fn sessions_routes(api: &Api, admin: &Api, win: &str, lnx: &str) {
    let q = "/api/v1/sessions?typeFilter=FileLevelRestore&stateFilter=Working&createdAfterFilter=2000-01-01T00:00:00Z&limit=100";
    let r = api.call("GET /api/v1/sessions", q, None).await;
    assert_eq!(r.status, 200);
    assert!(r.json["data"].as_array().unwrap().iter().any(|s| s["id"] == win));
    assert_eq!(api.call("GET /api/v1/sessions", "/api/v1/sessions?stateFilter=Nope", None).await.status, 400);
    let r = api.call("GET /api/v1/sessions/{id}", &format!("/api/v1/sessions/{lnx}"), None).await;
    assert_eq!(r.json["sessionType"], "LinuxFileLevelRestore");
    let r = api.call("POST /api/v1/sessions/{id}/stop", &format!("/api/v1/sessions/{lnx}/stop"), None).await;
    assert_eq!(r.status, 200);
    let r = api.call("GET /api/v1/sessions/{id}", &format!("/api/v1/sessions/{lnx}"), None).await;
    assert_eq!(r.json["state"], "Stopped");
    let un = "POST /api/v1/restore/flr/{sessionId}/unmount";
    let r = api.call(un, &format!("/api/v1/restore/flr/{win}/unmount"), None).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json["state"], "Stopped");
    assert_eq!(api.call(un, &format!("/api/v1/restore/flr/{win}/unmount"), None).await.status, 404);
    let g = "GET /api/v1/backupBrowser/flr/{sessionId}";
    assert_eq!(api.call(g, &format!("/api/v1/backupBrowser/flr/{win}"), None).await.status, 404);
    let r = admin.call("GET /api/v1/serverInfo", "/api/v1/serverInfo", None).await;
    assert_eq!(r.status, 200);
    let missing = "/api/v1/sessions/5a1e0000-0000-4000-8000-00000000ffff";
    assert_eq!(api.call("GET /api/v1/sessions/{id}", missing, None).await.status, 404);
}

async fn fault_bodies(base: &str, api: &Api, rev: &str) {
    admin(base, "POST", "/sim/faults", Some(json!({"spec": "kind=status,status=503,endpoint=restore_points,times=1"})))
        .await;
    assert_eq!(api.call("GET /api/v1/restorePoints", "/api/v1/restorePoints", None).await.status, 503);
    admin(
        base,
        "POST",
        "/sim/faults",
        Some(json!({"kind": "mount_errors", "endpoint": "flr_mount", "times": 1, "error_type": "Warning"})),
    )
    .await;
    let r =
        api.call("POST /api/v1/restore/flr", "/api/v1/restore/flr", Some(mount_body(rev, WIN_NEWEST, "Windows"))).await;
    assert_eq!(r.status, 201);
    if rev.starts_with("1.3") {
        assert_eq!(r.json["mountErrors"][0]["type"], "Warning");
    }
    let sid = r.json["sessionId"].as_str().unwrap().to_string();
    admin(base, "POST", "/sim/faults", Some(json!({"spec": "kind=task_fail,endpoint=flr_restore,times=1"}))).await;
    let body = json!({ "sourcePath": ["C:\\canary"], "restoreType": "Keep" });
    let r = api
        .call(
            "POST /api/v1/backupBrowser/flr/{sessionId}/restore",
            &format!("/api/v1/backupBrowser/flr/{sid}/restore"),
            Some(body),
        )
        .await;
    let t = wait_task(api, r.json["id"].as_str().unwrap()).await;
    assert_eq!(t["result"], "Failed");
    api.call("POST /api/v1/restore/flr/{sessionId}/unmount", &format!("/api/v1/restore/flr/{sid}/unmount"), None).await;
}

#[tokio::test]
async fn every_body_matches_the_spec_schema() {
    let server = veeam_vbr_sim::start(fast_config()).await.unwrap();
    let base = server.url.clone();
    let mut total = 0;
    for rev in REVISIONS {
        let s = Schemas::load(bundle_for(rev));
        auth_routes(&base, rev, &s).await;
        let mut api = Api::new(&base, rev, Some(s.clone()));
        api.login("svc-canary", "canary").await;
        let mut viewer = Api::new(&base, rev, Some(s.clone()));
        viewer.login("viewer", "viewer").await;
        let mut adm = Api::new(&base, rev, Some(s.clone()));
        adm.login("admin", "admin").await;
        inventory_routes(&api, &viewer).await;
        flr_routes(&api, &viewer, &adm, rev).await;
        fault_bodies(&base, &api, rev).await;
        let r = api.call("GET /api/v1/restorePoints", "/api/v1/restorePoints/x/y/z", None).await;
        assert_eq!(r.status, 404);
        let n = s.validated.load(Ordering::Relaxed);
        eprintln!(
            "{rev}: {n} bodies validated against {}; undeclared error statuses: {:?}",
            bundle_for(rev),
            s.undeclared.lock().unwrap()
        );
        total += n;
    }
    assert!(total > 300, "validated {total} bodies");
    server.shutdown().await;
}

/// The checker itself must catch a wrong body, or the test above proves nothing.
#[test]
fn checker_rejects_bodies_that_break_the_schema() {
    let rejects = |file: &str, op: &str, status: u16, body: Value| {
        let s = Schemas::load(file);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.check(op, status, &body)));
        assert!(r.is_err(), "{file} {op} {status} accepted {body}");
    };
    let session = json!({ "id": FOREIGN_SESSION, "name": "x", "jobId": FOREIGN_SESSION, "sessionType": "FileLevelRestore",
        "creationTime": "2026-01-01T00:00:00Z", "state": "Working", "usn": 1, "initiatedBy": "someone" });
    rejects("vbr_1.2-rev1.json", "GET /api/v1/sessions/{id}", 200, session.clone());
    let mut no_usn = session.clone();
    no_usn.as_object_mut().unwrap().remove("usn");
    rejects("vbr_1.3-rev1.json", "GET /api/v1/sessions/{id}", 200, no_usn);
    rejects("vbr_1.3-rev1.json", "GET /api/v1/sessions/{id}", 201, session);
    rejects(
        "vbr_1.3-rev1.json",
        "GET /api/v1/tasks/{id}",
        200,
        json!({ "id": FOREIGN_SESSION, "type": "FlrRestore", "name": "x",
        "state": "Stopped", "progressPercent": 100, "creationTime": "2026-01-01T00:00:00Z", "result": "Success" }),
    );
    rejects("vbr_1.3-rev1.json", "POST /api/v1/restore/flr", 400, json!({ "errorCode": "BadRequest", "message": "x" }));
    rejects("vbr_1.3-rev1.json", "GET /api/v1/restorePoints/{id}", 200, json!({ "id": "not-a-uuid" }));
}
