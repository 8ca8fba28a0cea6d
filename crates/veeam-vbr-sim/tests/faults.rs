//! Faults, hold-at-request-N, TLS and the binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

async fn logged_in(base: &str) -> Api {
    let mut api = Api::new(base, "1.3-rev1", None);
    assert_eq!(api.login("svc-canary", "canary").await.status, 200);
    api
}

fn mount() -> serde_json::Value {
    json!({ "restorePointId": WIN_NEWEST, "type": "Windows", "mountMode": "Automatic", "autoUnmount": { "isEnabled": true } })
}

#[tokio::test]
async fn hold_blocks_the_nth_request_until_release() {
    let server = veeam_vbr_sim::start(fast_config()).await.unwrap();
    let base = server.url.clone();
    let api = logged_in(&base).await;
    admin(&base, "POST", "/sim/hold", Some(json!({ "after": 2 }))).await;
    assert_eq!(api.call("GET x", "/api/v1/restorePoints", None).await.status, 200, "request 1 passes");
    let api2 = api.clone();
    let held = tokio::spawn(async move { api2.call("POST x", "/api/v1/restore/flr", Some(mount())).await.status });
    let h = wait_for(5, "request 2 held", || async {
        let h = admin(&base, "GET", "/sim/held", None).await;
        (h["held"] == true).then_some(h)
    })
    .await;
    assert_eq!(h["request"]["endpoint"], "flr_mount");
    assert!(!held.is_finished());
    admin(&base, "POST", "/sim/release", None).await;
    assert_eq!(held.await.unwrap(), 201);
    // Signal mode answers at once but records the request.
    admin(&base, "POST", "/sim/hold", Some(json!({ "after": 1, "mode": "signal" }))).await;
    assert_eq!(api.call("GET x", "/api/v1/sessions", None).await.status, 200);
    let h = admin(&base, "GET", "/sim/held", None).await;
    assert_eq!((h["held"].as_bool(), h["request"]["endpoint"].as_str()), (Some(false), Some("sessions")));
    server.shutdown().await;
}

#[tokio::test]
async fn transport_faults_delay_drop_garbage() {
    let server = veeam_vbr_sim::start(fast_config()).await.unwrap();
    let base = server.url.clone();
    let api = logged_in(&base).await;
    admin(&base, "POST", "/sim/faults", Some(json!({ "spec": "kind=delay,ms=2000,endpoint=restore_points,times=1" })))
        .await;
    let http = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let r = http
        .get(format!("{base}api/v1/restorePoints"))
        .header("x-api-version", "1.3-rev1")
        .bearer_auth(api.token.clone().unwrap())
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    admin(&base, "POST", "/sim/faults", Some(json!({ "kind": "drop", "endpoint": "sessions", "times": 1 }))).await;
    let r = http
        .get(format!("{base}api/v1/sessions"))
        .header("x-api-version", "1.3-rev1")
        .bearer_auth(api.token.clone().unwrap())
        .send()
        .await;
    assert!(r.is_err(), "dropped connection");
    admin(&base, "POST", "/sim/faults", Some(json!({ "kind": "garbage", "endpoint": "flr_list", "times": 1 }))).await;
    let Api { http, .. } = api.clone();
    let r = http
        .get(format!("{base}api/v1/backupBrowser/flr"))
        .header("x-api-version", "1.3-rev1")
        .bearer_auth(api.token.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).is_err());
    let log = admin(&base, "GET", "/sim/requests", None).await;
    let outcomes: Vec<&str> = log.as_array().unwrap().iter().filter_map(|e| e["outcome"].as_str()).collect();
    assert!(outcomes.contains(&"fault:drop") && outcomes.contains(&"fault:garbage"), "{outcomes:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn lost_mount_answer_leaves_a_live_mount() {
    let server = veeam_vbr_sim::start(fast_config()).await.unwrap();
    let base = server.url.clone();
    let api = logged_in(&base).await;
    admin(&base, "POST", "/sim/faults", Some(json!({ "spec": "kind=lost_mount,endpoint=flr_mount,times=1" }))).await;
    let r = api
        .http
        .post(format!("{base}api/v1/restore/flr"))
        .header("x-api-version", "1.3-rev1")
        .bearer_auth(api.token.clone().unwrap())
        .json(&mount())
        .send()
        .await;
    assert!(r.is_err(), "the answer is lost");
    let st = server.state();
    let mine: Vec<_> = st.live_mounts().into_iter().filter(|m| m.initiator == "svc-canary").cloned().collect();
    assert_eq!(mine.len(), 1, "the mount exists although the client never saw its id");
    let r = api.call("GET x", "/api/v1/backupBrowser/flr", None).await;
    assert!(r.json["data"].as_array().unwrap().iter().any(|m| m["sessionId"] == mine[0].session_id.to_string()));
    server.shutdown().await;
}

async fn download_with(base: &str, api: &Api, fault: &str) -> Vec<u8> {
    admin(base, "POST", "/sim/faults", Some(json!({ "kind": fault, "endpoint": "download", "times": 1 }))).await;
    let r = api.call("POST x", "/api/v1/restore/flr", Some(mount())).await;
    let sid = r.json["sessionId"].as_str().unwrap().to_string();
    let body = json!({ "sourcePath": ["C:\\canary"] });
    let r = api.call("POST x", &format!("/api/v1/backupBrowser/flr/{sid}/prepareDownload"), Some(body)).await;
    let tid = r.json["id"].as_str().unwrap().to_string();
    wait_for(10, "download task", || async {
        let r = api.call("GET x", &format!("/api/v1/tasks/{tid}"), None).await;
        (r.json["result"] == "Success").then_some(())
    })
    .await;
    let r = api.call("POST x", &format!("/api/v1/backupBrowser/flr/{sid}/prepareDownload/{tid}/download"), None).await;
    assert_eq!(r.status, 200);
    r.bytes
}

#[tokio::test]
async fn broken_zip_faults() {
    let server = veeam_vbr_sim::start(fast_config()).await.unwrap();
    let base = server.url.clone();
    let api = logged_in(&base).await;
    let z = download_with(&base, &api, "zip_traversal").await;
    assert!(z.windows(6).any(|w| w == b"../../"), "has a ../ entry");
    let z = download_with(&base, &api, "zip_truncated").await;
    assert!(!z.windows(4).any(|w| w == b"PK\x05\x06"), "no end of central directory");
    let z = download_with(&base, &api, "zip_bomb").await;
    assert!(z.len() < 8 << 20, "small on the wire: {}", z.len());
    let declared: u64 = z
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"PK\x03\x04")
        .map(|(i, _)| u64::from(u32::from_le_bytes(z[i + 22..i + 26].try_into().unwrap())))
        .sum();
    assert!(declared >= 1 << 30, "inflates to {declared} bytes");
    server.shutdown().await;
}

#[tokio::test]
async fn tls_serves_with_the_written_certificate() {
    let mut cfg = fast_config();
    cfg.tls = true;
    let server = veeam_vbr_sim::start(cfg).await.unwrap();
    assert!(server.url.starts_with("https://127.0.0.1:"));
    let pem = std::fs::read(server.cert_file.as_ref().unwrap()).unwrap();
    let cert = reqwest::Certificate::from_pem(&pem).unwrap();
    let http = reqwest::Client::builder().add_root_certificate(cert).build().unwrap();
    let r =
        http.get(format!("{}api/v1/serverTime", server.url)).header("x-api-version", "1.2-rev1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    server.shutdown().await;
}

#[test]
fn binary_prints_its_url_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veeam-vbr-sim"))
        .args(["--listen", "127.0.0.1:0", "--tls", "--fault", "kind=status,status=503,endpoint=token,times=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("veeam-vbr-sim listening on https://127.0.0.1:"), "{first}");
    let second = lines.next().unwrap().unwrap();
    assert!(second.starts_with("veeam-vbr-sim certificate "), "{second}");
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fault_specs_parse_and_misspelt_endpoints_are_refused() {
    let f: veeam_vbr_sim::FaultSpec = "kind=status,status=503,endpoint=flr_mount,times=1".parse().unwrap();
    assert_eq!((f.kind, f.status, f.times), (veeam_vbr_sim::FaultKind::Status, Some(503), Some(1)));
    assert!("kind=drop,endpoint=flr_mnt".parse::<veeam_vbr_sim::FaultSpec>().is_err());
    assert!("kind=explode".parse::<veeam_vbr_sim::FaultSpec>().is_err());
    assert!("kind=delay,ms=abc".parse::<veeam_vbr_sim::FaultSpec>().is_err());
}

#[tokio::test]
async fn request_log_timings_and_unknown_routes() {
    let server = veeam_vbr_sim::start(fast_config()).await.unwrap();
    let base = server.url.clone();
    let api = logged_in(&base).await;
    let r = api.call("GET x", "/api/v1/restore/flr/unknownThing", None).await;
    assert_eq!((r.status, r.json["errorCode"].as_str()), (404, Some("InvalidURI")));
    let r = api.call("DELETE x", "/api/v1/restorePoints", None).await;
    assert_eq!((r.status, r.json["errorCode"].as_str()), (405, Some("MethodNotAllowed")));
    let log = admin(&base, "GET", "/sim/requests", None).await;
    let rows: Vec<(String, u64)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["endpoint"].as_str().unwrap().to_string(), e["status"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(rows, vec![("token".into(), 200), ("unknown".into(), 404), ("unknown".into(), 405)]);
    let t = admin(&base, "PUT", "/sim/timings", Some(json!({ "taskDuration": 5 }))).await;
    assert_eq!((t["taskDuration"].as_u64(), t["tokenLifetime"].as_u64()), (Some(5), Some(900_000)));
    let bad = admin(&base, "PUT", "/sim/timings", Some(json!({ "taskDurationMs": 5 }))).await;
    assert!(bad["error"].is_string());
    let bad = admin(&base, "POST", "/sim/faults", Some(json!({ "kind": "drop", "endpoint": "nope" }))).await;
    assert!(bad["error"].as_str().unwrap().contains("unknown endpoint"));
    server.shutdown().await;
}
