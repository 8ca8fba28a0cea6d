//! Version negotiation, token renewal and the calls end to end, against the in-test server
//! (`server.rs`, loopback only).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use veeam_vbr::*;

use super::server::{self, Fake, PASSWORD, USER};

const ALL: [&str; 7] = ["1.3-rev2", "1.3-rev1", "1.3-rev0", "1.2-rev1", "1.2-rev0", "1.1-rev2", "1.1-rev1"];

#[derive(Default)]
struct Recorder(Mutex<Vec<(Endpoint, Option<u16>)>>);

impl RequestObserver for Recorder {
    fn observe(&self, endpoint: Endpoint, status: Option<u16>, _elapsed: Duration) {
        self.0.lock().unwrap().push((endpoint, status));
    }
}

fn client(base: url::Url, password: &str, observer: Option<Arc<dyn RequestObserver>>) -> Client {
    let mut config = ClientConfig::new(base, USER, Secret::new(password));
    config.request_timeout = Duration::from_secs(10);
    Client::new(config, observer).unwrap()
}

#[tokio::test]
async fn newest_revision_first() {
    let (base, fake) = server::start(Fake::new(&ALL)).await;
    let session = client(base, PASSWORD, None).logon().await.unwrap();
    assert_eq!(session.api_version(), ApiVersion::V1_3Rev2);
    assert_eq!(fake.counters().token_versions, ["1.3-rev2"]);
}

#[tokio::test]
async fn falls_back_to_what_an_older_server_speaks() {
    let (base, fake) = server::start(Fake::new(&["1.2-rev1", "1.2-rev0", "1.1-rev2", "1.1-rev1"])).await;
    let c = client(base, PASSWORD, None);
    let session = c.logon().await.unwrap();
    assert_eq!(session.api_version(), ApiVersion::V1_2Rev1);
    assert_eq!(fake.counters().token_versions, ["1.3-rev2", "1.3-rev1", "1.3-rev0", "1.2-rev1"]);
    session.server_time().await.unwrap();
    assert_eq!(fake.counters().api_versions, ["1.2-rev1"]);
    // The next logon starts from the agreed revision.
    c.logon().await.unwrap();
    assert_eq!(fake.counters().token_versions.len(), 5);
    assert_eq!(c.agreed_version(), Some(ApiVersion::V1_2Rev1));
}

#[tokio::test]
async fn no_common_revision_is_a_typed_error() {
    let (base, fake) = server::start(Fake::new(&["1.0-rev2"])).await;
    let err = client(base, PASSWORD, None).logon().await.unwrap_err();
    assert_eq!(err.reason(), "unsupported_version", "{err}");
    assert!(err.to_string().contains("The specified API version is not supported."), "{err}");
    assert_eq!(fake.counters().token_versions.len(), ApiVersion::ALL.len());
}

#[tokio::test]
async fn wrong_password_is_logon_failed_without_walking_the_versions() {
    let (base, fake) = server::start(Fake::new(&ALL)).await;
    let err = client(base, "wrong", None).logon().await.unwrap_err();
    assert_eq!(err.reason(), "logon_failed", "{err}");
    assert_eq!(err.status(), Some(401));
    assert_eq!(fake.counters().token_versions.len(), 1);
    assert!(!err.to_string().contains("wrong") && !format!("{err:?}").contains("wrong"), "{err:?}");
}

#[tokio::test]
async fn renews_before_expiry_with_the_refresh_token() {
    let mut fake = Fake::new(&ALL);
    fake.expires_in = 1; // renewed after 0.8 s
    let (base, fake) = server::start(fake).await;
    let session = client(base, PASSWORD, None).logon().await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    session.server_time().await.unwrap();
    let c = fake.counters();
    assert_eq!((c.password_grants, c.refresh_grants, c.refresh_reuse), (1, 1, 0));
}

#[tokio::test]
async fn a_401_renews_once_and_retries() {
    let (base, fake) = server::start(Fake::new(&ALL)).await;
    let session = client(base, PASSWORD, None).logon().await.unwrap();
    fake.revoke_access();
    session.server_time().await.unwrap();
    let c = fake.counters();
    assert_eq!((c.password_grants, c.refresh_grants), (1, 1));
    assert_eq!(c.api_versions.len(), 2, "one refused call, one retry");
}

#[tokio::test]
async fn failed_refresh_falls_back_to_the_password() {
    let (base, fake) = server::start(Fake::new(&ALL)).await;
    let session = client(base, PASSWORD, None).logon().await.unwrap();
    fake.revoke_access();
    fake.revoke_refresh();
    session.server_time().await.unwrap();
    let c = fake.counters();
    assert_eq!((c.password_grants, c.refresh_grants, c.refresh_reuse), (2, 0, 0));
}

#[tokio::test]
async fn concurrent_callers_spend_the_refresh_token_once() {
    let mut fake = Fake::new(&ALL);
    fake.token_delay = Duration::from_millis(100);
    let (base, fake) = server::start(fake).await;
    let session = client(base, PASSWORD, None).logon().await.unwrap();
    fake.revoke_access();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let s = session.clone();
            tokio::spawn(async move { s.server_time().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let c = fake.counters();
    assert_eq!((c.password_grants, c.refresh_grants, c.refresh_reuse), (1, 1, 0));
}

#[tokio::test]
async fn logout_ends_the_session() {
    let (base, fake) = server::start(Fake::new(&ALL)).await;
    let session = client(base, PASSWORD, None).logon().await.unwrap();
    session.logout().await.unwrap();
    assert_eq!(fake.counters().logouts, 1);
    let err = session.server_time().await.unwrap_err();
    assert_eq!(err.reason(), "session_expired");
}

#[tokio::test]
async fn server_info_403_is_forbidden_and_not_retried() {
    let (base, fake) = server::start(Fake::new(&ALL)).await;
    let session = client(base, PASSWORD, None).logon().await.unwrap();
    let err = session.server_info().await.unwrap_err();
    assert_eq!(err.reason(), "forbidden");
    assert_eq!(err.to_string(), "forbidden (HTTP 403): AccessDenied: Forbidden");
    assert_eq!(fake.counters().refresh_grants, 0);
}

fn canary_zip() -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("canary.txt", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(b"alive\n").unwrap();
    zip.finish().unwrap().into_inner()
}

#[tokio::test]
async fn restore_test_end_to_end() {
    let mut fake = Fake::new(&ALL);
    fake.zip = canary_zip();
    fake.mount_count = 450;
    let (base, _fake) = server::start(fake).await;
    let recorder = Arc::new(Recorder::default());
    let session = client(base, PASSWORD, Some(recorder.clone())).logon().await.unwrap();

    let point = session.newest_restore_point("web01").await.unwrap();
    assert_eq!(point.id, "rp-new");
    assert_eq!(point.malware_status, Some(MalwareStatus::Clean));

    // No backup object of that name: the restorePoints?nameFilter= fallback, exact name only.
    assert_eq!(session.newest_restore_point("db01").await.unwrap().id, "rp-db01");
    assert_eq!(session.newest_restore_point("nosuchvm").await.unwrap_err().reason(), "not_found");

    let mount = session.mount(&MountRequest::new(&point.id, GuestOs::Windows, 7)).await.unwrap();
    assert_eq!(mount.session_id, "flr-1");
    assert_eq!(session.mount_info("flr-1").await.unwrap().machine_name.as_deref(), Some("web01"));
    assert_eq!(session.mount_info("nope").await.unwrap_err().reason(), "not_found");
    assert_eq!(session.mounts().await.unwrap().len(), 450);

    let folder = session.browse("flr-1", "C:\\canary").await.unwrap();
    let names: Vec<_> = folder.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["canary.txt", "other.txt"], "both pages");

    let poll = Duration::from_millis(10);
    let entry = session
        .download_file("flr-1", "C:\\canary\\canary.txt", poll, Duration::from_secs(5), &ZipLimits::default())
        .await
        .unwrap();
    assert_eq!(entry.data, b"alive\n");

    let request = FileRestoreRequest {
        source_paths: vec!["C:\\canary\\canary.txt".into()],
        restore_type: RestoreType::Overwrite,
        credentials_id: None,
    };
    let task = session.restore_files("flr-1", &request).await.unwrap();
    let err = session.wait_for_task(&task.id, poll, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(err.reason(), "task_failed");
    assert!(err.to_string().contains("Access is denied"), "{err}");

    let stopped = session.unmount("flr-1").await.unwrap().unwrap();
    assert!(stopped.is_stopped());
    let info = session.session_info("flr-1").await.unwrap();
    assert_eq!(info.initiated_by.as_deref(), Some(USER));
    session.logout().await.unwrap();

    let seen = recorder.0.lock().unwrap();
    assert!(seen.contains(&(Endpoint::MountCreate, Some(201))));
    assert!(seen.contains(&(Endpoint::MountGet, Some(404))));
    assert!(seen.contains(&(Endpoint::Download, Some(200))));
    assert_eq!(seen.iter().filter(|(e, _)| *e == Endpoint::MountList).count(), 3, "450 mounts in pages of 200");
}

#[tokio::test]
async fn download_past_the_cap_is_too_large() {
    let mut fake = Fake::new(&ALL);
    fake.zip = vec![7; 64 * 1024];
    let (base, _fake) = server::start(fake).await;
    let mut config = ClientConfig::new(base, USER, Secret::new(PASSWORD));
    config.max_download_bytes = 1024;
    let session = Client::new(config, None).unwrap().logon().await.unwrap();
    let err = session.download("flr-1", "task-dl").await.unwrap_err();
    assert_eq!(err.reason(), "too_large", "{err}");
}

#[tokio::test]
async fn session_debug_hides_tokens() {
    let (base, _fake) = server::start(Fake::new(&ALL)).await;
    let session = client(base, PASSWORD, None).logon().await.unwrap();
    let printed = format!("{session:?}");
    assert!(!printed.contains("ACCESS-") && !printed.contains("REFRESH-") && !printed.contains(PASSWORD), "{printed}");
}

#[tokio::test]
async fn slow_calls_get_the_slow_timeout_and_others_do_not() {
    let mut fake = Fake::new(&ALL);
    fake.mount_delay = Duration::from_millis(600);
    let (base, _fake) = server::start(fake).await;
    let mut config = ClientConfig::new(base.clone(), USER, Secret::new(PASSWORD));
    config.request_timeout = Duration::from_millis(300);
    config.slow_request_timeout = Duration::from_secs(5);
    let session = Client::new(config, None).unwrap().logon().await.unwrap();
    session.mount(&MountRequest::new("rp-new", GuestOs::Windows, 7)).await.unwrap();

    let mut fake = Fake::new(&ALL);
    fake.token_delay = Duration::from_millis(600);
    let (base, _fake) = server::start(fake).await;
    let mut config = ClientConfig::new(base, USER, Secret::new(PASSWORD));
    config.request_timeout = Duration::from_millis(300);
    let err = Client::new(config, None).unwrap().logon().await.unwrap_err();
    assert_eq!(err.reason(), "timeout", "{err}");
}
