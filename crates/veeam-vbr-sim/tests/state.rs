//! State machines and time: tokens, refresh, autoUnmount, foreign mounts, tasks, revisions and
//! lenient switches.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use veeam_vbr_sim::{ApiRevision, SimConfig};

async fn started(cfg: SimConfig) -> (veeam_vbr_sim::SimServer, String) {
    let s = veeam_vbr_sim::start(cfg).await.unwrap();
    let u = s.url.clone();
    (s, u)
}

fn win_mount() -> serde_json::Value {
    json!({ "restorePointId": WIN_NEWEST, "type": "Windows", "mountMode": "Automatic",
            "autoUnmount": { "isEnabled": true, "noActivityPeriodInMinutes": 2 } })
}

#[tokio::test]
async fn tokens_expire_and_refresh_tokens_are_single_use() {
    let mut cfg = fast_config();
    cfg.timings.token_lifetime = Duration::from_millis(300);
    let (server, base) = started(cfg).await;
    let mut api = Api::new(&base, "1.3-rev1", None);
    let r = api.login("svc-canary", "canary").await;
    assert_eq!(r.json["expires_in"], 0, "300 ms rounds down to 0 s");
    let ok = api.call("GET /api/v1/restorePoints", "/api/v1/restorePoints", None).await;
    assert_eq!(ok.status, 200);
    let expired = wait_for(5, "token expiry", || async {
        let r = api.call("GET /api/v1/restorePoints", "/api/v1/restorePoints", None).await;
        (r.status == 401).then_some(r)
    })
    .await;
    assert_eq!(expired.json["errorCode"], "ExpiredToken");
    let rt = api.refresh.clone().unwrap();
    let r = api.form(&[("grant_type", "Refresh_token"), ("refresh_token", &rt)]).await;
    assert_eq!(r.status, 200);
    let again = api.form(&[("grant_type", "Refresh_token"), ("refresh_token", &rt)]).await;
    assert_eq!((again.status, again.json["errorCode"].as_str()), (401, Some("InvalidToken")));
    assert_eq!(server.state().tokens_issued, 2);
    server.shutdown().await;
}

#[tokio::test]
async fn admin_expiry_logout_and_lockout() {
    let (server, base) = started(fast_config()).await;
    let mut api = Api::new(&base, "1.2-rev1", None);
    api.login("svc-canary", "canary").await;
    let r = admin(&base, "POST", "/sim/tokens/expire", None).await;
    assert_eq!(r["expired"], 1);
    let r = api.call("GET /api/v1/sessions", "/api/v1/sessions", None).await;
    assert_eq!(r.json["errorCode"], "ExpiredToken");
    api.login("svc-canary", "canary").await;
    let rt = api.refresh.clone().unwrap();
    api.call("POST /api/oauth2/logout", "/api/oauth2/logout", None).await;
    let r = api.form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await;
    assert_eq!(r.status, 401, "logout invalidates the refresh token too");
    for _ in 0..3 {
        assert_eq!(api.login("lockme", "bad").await.status, 401);
    }
    let r = api.login("lockme", "lockme").await;
    assert_eq!(r.status, 401);
    assert!(r.json["message"].as_str().unwrap().contains("locked"));
    assert_eq!(server.state().tokens_live, 0);
    server.shutdown().await;
}

#[tokio::test]
async fn auto_unmount_fires_after_idle_minutes_and_activity_resets_it() {
    let mut cfg = fast_config();
    cfg.timings.auto_unmount_minute = Duration::from_millis(500);
    let (server, base) = started(cfg).await;
    let mut api = Api::new(&base, "1.3-rev1", None);
    api.login("svc-canary", "canary").await;
    let r = api.call("POST /api/v1/restore/flr", "/api/v1/restore/flr", Some(win_mount())).await;
    let sid = r.json["sessionId"].as_str().unwrap().to_string();
    // Browse keeps it alive past one idle period (2 "minutes" = 1 s).
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let body = json!({ "path": "C:\\" });
        let r = api.call("POST x", &format!("/api/v1/backupBrowser/flr/{sid}/browse"), Some(body)).await;
        assert_eq!(r.status, 200, "still mounted while active");
    }
    let m = wait_for(10, "auto-unmount", || async {
        let st = server.state();
        st.mounts.iter().find(|m| m.session_id.to_string() == sid && m.state == "Unmounted").cloned()
    })
    .await;
    assert_eq!(m.stopped_by.as_deref(), Some("autoUnmount"));
    let r = api.call("GET x", &format!("/api/v1/sessions/{sid}"), None).await;
    assert_eq!((r.json["state"].as_str(), r.json["result"]["result"].as_str()), (Some("Stopped"), Some("Success")));
    server.shutdown().await;
}

#[tokio::test]
async fn foreign_mounts_are_listed_with_their_initiator() {
    let (server, base) = started(fast_config()).await;
    let mut api = Api::new(&base, "1.3-rev1", None);
    api.login("svc-canary", "canary").await;
    let r = api.call("GET x", "/api/v1/backupBrowser/flr", None).await;
    assert_eq!(r.json["data"][0]["sessionId"], FOREIGN_SESSION);
    let r = api.call("GET x", &format!("/api/v1/sessions/{FOREIGN_SESSION}"), None).await;
    assert_eq!(r.json["initiatedBy"], "CORP\\backup-admin2");
    let old = Api { rev: "1.2-rev1".into(), ..api.clone() };
    let r = old.call("GET x", &format!("/api/v1/sessions/{FOREIGN_SESSION}"), None).await;
    assert!(r.json.get("initiatedBy").is_none(), "initiatedBy is 1.3 only");
    let r = admin(&base, "POST", "/sim/flr", Some(json!({ "vm": "canary-lnx01", "initiator": "CORP\\someone" }))).await;
    let other = r["sessionId"].as_str().unwrap().to_string();
    let st = server.state();
    assert_eq!(st.live_mounts().len(), 2);
    assert!(st.mounts.iter().any(|m| m.session_id.to_string() == other && m.initiator == "CORP\\someone"));
    server.shutdown().await;
}

#[tokio::test]
async fn restore_writes_into_the_production_vm_and_files_can_be_changed() {
    let (server, base) = started(fast_config()).await;
    let body = json!({ "vm": "canary-lnx01", "path": "/canary/canary.txt", "content": "changed\n" });
    assert_eq!(admin(&base, "PUT", "/sim/files", Some(body)).await["pointsUpdated"], 3);
    let mut api = Api::new(&base, "1.3-rev2", None);
    api.login("admin", "admin").await;
    let m = json!({ "restorePointId": LNX_NEWEST, "type": "Linux", "mountMode": "Automatic",
                    "mountServer": { "mountServerType": "OriginalHost", "originalHost": {} },
                    "autoUnmount": { "isEnabled": false } });
    let r = api.call("POST x", "/api/v1/restore/flr", Some(m)).await;
    let sid = r.json["sessionId"].as_str().unwrap().to_string();
    let body = json!({ "sourcePath": ["/canary"], "restoreType": "Overwrite" });
    let r = api.call("POST x", &format!("/api/v1/backupBrowser/flr/{sid}/restore"), Some(body)).await;
    assert_eq!(r.json["state"], "Starting");
    let tid = r.json["id"].as_str().unwrap().to_string();
    let seen = std::sync::Mutex::new(Vec::new());
    wait_for(10, "restore task", || async {
        let r = api.call("GET x", &format!("/api/v1/tasks/{tid}"), None).await;
        seen.lock().unwrap().push(r.json["progressPercent"].as_u64().unwrap());
        (r.json["state"] == "Stopped").then_some(())
    })
    .await;
    let seen = seen.into_inner().unwrap();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress never falls: {seen:?}");
    assert_eq!(seen.last(), Some(&100));
    let st = server.state();
    assert_eq!(st.restored.len(), 1);
    assert_eq!((st.restored[0].path.as_str(), st.restored[0].content.as_str()), ("/canary/canary.txt", "changed\n"));
    server.shutdown().await;
}

#[tokio::test]
async fn revision_limits_and_lenient_switches() {
    let mut cfg = fast_config();
    cfg.max_api_revision = ApiRevision::V1_2Rev1;
    let (server, base) = started(cfg).await;
    let mut api = Api::new(&base, "1.3-rev1", None);
    assert_eq!(api.login("admin", "admin").await.status, 400, "a 12.3.1 server refuses 1.3-rev1");
    api.rev = "1.2-rev1".into();
    api.login("admin", "admin").await;
    let r = api.call("GET x", "/api/v1/serverInfo", None).await;
    assert_eq!(r.json["buildVersion"], "12.3.1.1139");
    server.shutdown().await;

    let mut cfg = fast_config();
    cfg.lenient = veeam_vbr_sim::Lenient {
        grant_type_any_case: true,
        missing_api_version: true,
        mount_mode_optional: true,
        ..Default::default()
    };
    let (server, base) = started(cfg).await;
    let mut api = Api::new(&base, "1.3-rev1", None);
    let r = api.form(&[("grant_type", "password"), ("username", "admin"), ("password", "admin")]).await;
    assert_eq!(r.status, 200, "lower-case grant type accepted on 1.3 when lenient");
    api.token = r.json["access_token"].as_str().map(str::to_string);
    let m = json!({ "restorePointId": WIN_NEWEST, "type": "Windows", "autoUnmount": { "isEnabled": true } });
    assert_eq!(api.call("POST x", "/api/v1/restore/flr", Some(m.clone())).await.status, 201);
    api.no_version = true;
    assert_eq!(api.call("GET x", "/api/v1/serverTime", None).await.status, 200);
    server.shutdown().await;

    let (server, base) = started(fast_config()).await;
    let mut api = Api::new(&base, "1.3-rev1", None);
    api.login("admin", "admin").await;
    let r = api.call("POST x", "/api/v1/restore/flr", Some(m)).await;
    assert_eq!(r.status, 400, "mountMode is required on 1.3 when strict");
    server.shutdown().await;
}
