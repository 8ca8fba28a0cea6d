//! The EM client against the simulated EM on loopback: every endpoint in both formats, session
//! scoping, every fault kind mapped to its typed error, and TLS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use veeam_restore_exporter::em::{
    Client, ClientConfig, Endpoint, Error, Format, OsKind, PointKind, RequestObserver, RestoreSessionResult,
    RestoreSessionState, TaskState,
};
use veeam_restore_exporter::secret::Secret;
use veeam_restore_exporter::sim::{self, Call, Fault, FaultKind, Quirk, SimConfig};

use crate::support::{PASSWORD, USER, client, eventually, fast_timings, finish, start_sim, start_sim_with};

const VM: &str = "canary-win01";
const CANARY: &str = "C:/canary/canary.txt";

async fn mount_cycle(format: Format, kind: PointKind, quirks: &[Quirk]) {
    let sim = start_sim_with(quirks).await;
    let session = client(&sim, format).logon().await.unwrap();
    assert!(!session.id().is_empty());

    let point = session.newest_point(kind, VM).await.unwrap().expect("the VM has points");
    assert_eq!(point.kind, kind);
    assert!(point.creation_time.is_some());
    if kind == PointKind::Backup {
        // The default inventory has a 2h and a 26h old point: the newest must win.
        let age = point.creation_time.unwrap().elapsed().unwrap();
        assert!(age < Duration::from_secs(3 * 3600), "newest point is {age:?} old");
    }

    let task = session.start_mount(&point, Some(OsKind::Windows)).await.unwrap();
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.operation, "MountRestorePoint");
    let task = finish(&session, &task).await.into_outcome().unwrap();
    let mount = session.mount_from_task(&task, kind).await.unwrap();
    assert_eq!(mount.fs_roots.len(), 2, "{:?}", mount.fs_roots);

    let root = mount.fs_roots.iter().find(|r| r.path.as_deref() == Some("C:")).unwrap();
    let listing = session.list_dirs(root.href.as_deref().unwrap(), 10).await.unwrap();
    assert_eq!(listing.directories.len(), 1);
    assert_eq!(listing.directories[0].name.as_deref(), Some("canary"));
    assert!(listing.files.is_empty(), "listDirs lists no files");

    let mounts = session.mounts(&point).await.unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(sim.state().mounts.len(), 1);

    session.delete_mount(mount.delete_href()).await.unwrap();
    assert!(session.mounts(&point).await.unwrap().is_empty());
    assert!(sim.state().mounts.is_empty());
    session.delete_task(&task).await.unwrap();
    session.logoff().await.unwrap();
    assert!(matches!(session.keep_alive().await, Err(Error::SessionExpired { .. })));
    sim.shutdown().await;
}

#[tokio::test]
async fn mount_cycle_xml_backup() {
    mount_cycle(Format::Xml, PointKind::Backup, &[]).await;
}

#[tokio::test]
async fn mount_cycle_json_backup() {
    mount_cycle(Format::Json, PointKind::Backup, &[]).await;
}

#[tokio::test]
async fn mount_cycle_xml_replica_follows_the_documented_related_link_quirk() {
    mount_cycle(Format::Xml, PointKind::Replica, &[]).await;
}

#[tokio::test]
async fn mount_cycle_json_replica() {
    mount_cycle(Format::Json, PointKind::Replica, &[]).await;
}

async fn catalog_restore(format: Format, quirks: &[Quirk]) {
    let sim = start_sim_with(quirks).await;
    let session = client(&sim, format).logon().await.unwrap();
    let point = session.newest_point(PointKind::Backup, VM).await.unwrap().unwrap();
    let browse = session.browse_catalog_point(VM, &point.id).await.unwrap();
    assert_eq!(browse.operation, "BrowseVM");
    let browse = finish(&session, &browse).await.into_outcome().unwrap();
    assert!(browse.links.iter().any(|l| l.rel == "Down" && l.href.contains("/guestfs")), "{:?}", browse.links);
    let task = session.start_catalog_restore(VM, &point.id, r"C:\canary\sub dir\report 2026.txt").await.unwrap();
    assert_eq!(task.operation, "RestoreFile");
    let task = finish(&session, &task).await.into_outcome().unwrap();
    let related = task.related().expect("RestoreFile links its restore session").href.clone();
    let seen_progress = Mutex::new(Vec::new());
    let done = eventually(Duration::from_secs(10), "restore session to stop", || async {
        let s = session.restore_session(&related).await.unwrap();
        seen_progress.lock().unwrap().push(s.progress);
        (s.state == RestoreSessionState::Stopped).then_some(s)
    })
    .await;
    let seen_progress = seen_progress.into_inner().unwrap();
    assert_eq!(done.result, Some(RestoreSessionResult::Success));
    assert_eq!(done.progress, 100);
    assert!(done.end_time.is_some());
    assert!(seen_progress.windows(2).all(|w| w[0] <= w[1]), "progress never falls: {seen_progress:?}");
    let state = sim.state();
    assert_eq!(state.restored_files.len(), 1);
    assert_eq!(state.restored_files[0].path, "c:/canary/sub dir/report 2026.txt");
    sim.shutdown().await;
}

#[tokio::test]
async fn catalog_restore_xml() {
    catalog_restore(Format::Xml, &[]).await;
}

#[tokio::test]
async fn catalog_restore_json() {
    catalog_restore(Format::Json, &[]).await;
}

/// Documented: `guestfs` exists only after a browse, and (like everything) per logon session.
/// EM 9.5's byte-order mark and v13's camelCase JSON keys: the client reads both.
#[tokio::test]
async fn json_quirks_of_older_and_newer_ems() {
    for quirks in [&[Quirk::JsonBom][..], &[Quirk::CamelCaseJson], &[Quirk::JsonBom, Quirk::CamelCaseJson]] {
        mount_cycle(Format::Json, PointKind::Backup, quirks).await;
        mount_cycle(Format::Json, PointKind::Replica, quirks).await;
        catalog_restore(Format::Json, quirks).await;
        download(Format::Json, quirks).await;
    }
}

/// A current EM sends JSON without a byte-order mark; the quirk brings it back.
#[tokio::test]
async fn json_bodies_carry_a_bom_only_with_the_quirk() {
    for (quirks, bom) in [(&[][..], false), (&[Quirk::JsonBom][..], true)] {
        let sim = start_sim_with(quirks).await;
        let body = reqwest::Client::new()
            .get(&sim.api_url)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.starts_with(b"\xef\xbb\xbf"), bom, "{quirks:?}");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn catalog_restore_needs_a_browse_in_the_same_session() {
    let sim = start_sim().await;
    let first = client(&sim, Format::Xml).logon().await.unwrap();
    let point = first.newest_point(PointKind::Backup, VM).await.unwrap().unwrap();
    let path = "C:/canary/canary.txt";
    let refused = first.start_catalog_restore(VM, &point.id, path).await.unwrap_err();
    assert_eq!(refused.reason(), "not_found", "{refused}");
    let browse = first.browse_catalog_point(VM, &point.id).await.unwrap();
    finish(&first, &browse).await.into_outcome().unwrap();
    let second = client(&sim, Format::Xml).logon().await.unwrap();
    let other = second.start_catalog_restore(VM, &point.id, path).await.unwrap_err();
    assert_eq!(other.reason(), "not_found", "another session's browse does not count: {other}");
    first.start_catalog_restore(VM, &point.id, path).await.expect("the browsing session may restore");
    sim.shutdown().await;
}

async fn download(format: Format, quirks: &[Quirk]) {
    let sim = start_sim_with(quirks).await;
    let session = client(&sim, format).logon().await.unwrap();
    let point = session.newest_point(PointKind::Backup, VM).await.unwrap().unwrap();
    let task = finish(&session, &session.start_mount(&point, None).await.unwrap()).await.into_outcome().unwrap();
    let mount = session.mount_from_task(&task, PointKind::Backup).await.unwrap();
    let restore = session.start_download_restore(&mount, CANARY).await.unwrap();
    assert_eq!(restore.operation, "FileRestoreFromMountPoint");
    let restore = finish(&session, &restore).await.into_outcome().unwrap();
    let href = restore.download().expect("download link").href.clone();
    let bytes = session.download(&href, 1024).await.unwrap();
    assert_eq!(&bytes[..], b"veeam-restore-exporter canary file\n");
    assert!(matches!(session.download(&href, 10).await, Err(Error::TooLarge { limit: 10 })));
    session.delete_mount(mount.delete_href()).await.unwrap();
    assert!(sim.state().restored_files.is_empty(), "a download restore never writes to the VM");
    sim.shutdown().await;
}

#[tokio::test]
async fn download_xml() {
    download(Format::Xml, &[]).await;
}

#[tokio::test]
async fn download_json() {
    download(Format::Json, &[]).await;
}

#[tokio::test]
async fn another_session_cannot_see_or_delete_a_mount() {
    let sim = start_sim().await;
    let first = client(&sim, Format::Xml).logon().await.unwrap();
    let second = client(&sim, Format::Xml).logon().await.unwrap();
    let point = first.newest_point(PointKind::Backup, VM).await.unwrap().unwrap();
    let task = finish(&first, &first.start_mount(&point, None).await.unwrap()).await;
    let mount = first.mount_from_task(&task, PointKind::Backup).await.unwrap();

    assert!(second.mounts(&point).await.unwrap().is_empty());
    assert_eq!(second.mount(&mount.href).await.unwrap_err().reason(), "not_found");
    assert_eq!(second.delete_mount(mount.delete_href()).await.unwrap_err().reason(), "not_found");
    assert_eq!(second.task(&task.href).await.unwrap_err().reason(), "not_found");
    assert_eq!(sim.state().mounts.len(), 1);

    // The creating session's token still works from a fresh client (what orphan cleanup does).
    let resumed = client(&sim, Format::Json).resume(first.id(), first.token().clone());
    resumed.delete_mount(mount.delete_href()).await.unwrap();
    assert!(sim.state().mounts.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn mounts_of_an_expired_session_stay_mounted_and_show_as_working_flr_sessions() {
    let sim = start_sim().await;
    let first = client(&sim, Format::Xml).logon().await.unwrap();
    let point = first.newest_point(PointKind::Backup, VM).await.unwrap().unwrap();
    let task = finish(&first, &first.start_mount(&point, None).await.unwrap()).await;
    let mount = first.mount_from_task(&task, PointKind::Backup).await.unwrap();
    sim.add_fault(Fault { endpoint: Some(Call::MountDelete), kind: FaultKind::ExpireSession {}, times: Some(1) });

    let err = first.delete_mount(mount.delete_href()).await.unwrap_err();
    assert_eq!(err.reason(), "session_expired", "{err}");
    let state = sim.state();
    assert_eq!(state.mounts.len(), 1);
    assert!(!state.mounts[0].session_alive);

    let second = client(&sim, Format::Json).logon().await.unwrap();
    let working = second.working_flr_sessions(VM).await.unwrap();
    assert_eq!(working.len(), 1, "{working:?}");
    assert!(second.working_flr_sessions("canary-lnx01").await.unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn linux_guest_needs_os_kind() {
    let sim = start_sim().await;
    let session = client(&sim, Format::Xml).logon().await.unwrap();
    let point = session.newest_point(PointKind::Backup, "canary-lnx01").await.unwrap().unwrap();
    let failed = finish(&session, &session.start_mount(&point, None).await.unwrap()).await.into_outcome().unwrap_err();
    assert_eq!(failed.reason(), "task_failed");
    let ok = finish(&session, &session.start_mount(&point, Some(OsKind::Linux)).await.unwrap()).await;
    assert!(ok.into_outcome().is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_vm_has_no_point() {
    let sim = start_sim().await;
    let session = client(&sim, Format::Json).logon().await.unwrap();
    assert!(session.newest_point(PointKind::Backup, "no-such-vm").await.unwrap().is_none());
    assert!(session.newest_point(PointKind::Replica, "canary-lnx01").await.unwrap().is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_password_is_a_logon_failure() {
    let sim = start_sim().await;
    let config = ClientConfig::new(sim.api_url.parse().unwrap(), USER, Secret::new("wrong"));
    let err = Client::new(config, None).unwrap().logon().await.unwrap_err();
    assert_eq!(err.reason(), "logon_failed");
    assert!(err.to_string().contains("Authentication failed"), "EM's message is kept: {err}");
    sim.shutdown().await;
}

/// Each request-level fault maps to its typed error, in both formats.
#[tokio::test]
async fn request_faults_map_to_typed_errors() {
    let cases: Vec<(FaultKind, &str)> = vec![
        (FaultKind::Status { status: 503, message: Some("Service busy".into()) }, "server_error"),
        (FaultKind::Status { status: 500, message: None }, "server_error"),
        (FaultKind::Status { status: 403, message: Some("Access denied".into()) }, "forbidden"),
        (FaultKind::Status { status: 404, message: None }, "not_found"),
        (FaultKind::Status { status: 400, message: None }, "rejected"),
        (FaultKind::Status { status: 401, message: None }, "session_expired"),
        (FaultKind::ExpireSession {}, "session_expired"),
        (FaultKind::Malformed {}, "decode"),
        (FaultKind::Reset {}, "transport"),
    ];
    let sim = start_sim().await;
    for format in [Format::Xml, Format::Json] {
        let session = client(&sim, format).logon().await.unwrap();
        let point = session.newest_point(PointKind::Backup, VM).await.unwrap().unwrap();
        for (kind, reason) in &cases {
            if *kind == (FaultKind::ExpireSession {}) {
                // Needs a live session of its own.
                let session = client(&sim, format).logon().await.unwrap();
                sim.add_fault(Fault { endpoint: Some(Call::MountCreate), kind: kind.clone(), times: Some(1) });
                let err = session.start_mount(&point, None).await.unwrap_err();
                assert_eq!(err.reason(), *reason, "{format:?} {kind:?}: {err}");
                continue;
            }
            sim.add_fault(Fault { endpoint: Some(Call::MountCreate), kind: kind.clone(), times: Some(1) });
            let err = session.start_mount(&point, None).await.unwrap_err();
            assert_eq!(err.reason(), *reason, "{format:?} {kind:?}: {err}");
            if let FaultKind::Status { message: Some(m), .. } = kind {
                assert!(err.to_string().contains(m.as_str()), "EM's message is kept: {err}");
            }
        }
    }
    // A refused request created nothing, but a garbled or cut answer does not mean nothing
    // happened: EM handled those POSTs (the reason probes keep the mount record on such errors).
    // Two formats × (malformed, reset) = four mounts, once their tasks have run.
    eventually(Duration::from_secs(10), "the mounts of the damaged answers", || async {
        (sim.state().mounts.len() == 4).then_some(())
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_beyond_the_request_timeout_is_a_timeout() {
    let sim = start_sim().await;
    let mut config = ClientConfig::new(sim.api_url.parse().unwrap(), USER, Secret::new(PASSWORD));
    config.request_timeout = Duration::from_millis(200);
    let session = Client::new(config, None).unwrap().logon().await.unwrap();
    sim.add_fault(Fault { endpoint: Some(Call::Query), kind: FaultKind::Latency { ms: 1_000 }, times: Some(1) });
    let err = session.newest_point(PointKind::Backup, VM).await.unwrap_err();
    assert_eq!(err.reason(), "timeout", "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn task_faults() {
    let sim = start_sim().await;
    let session = client(&sim, Format::Json).logon().await.unwrap();
    let point = session.newest_point(PointKind::Backup, VM).await.unwrap().unwrap();

    sim.add_fault(Fault {
        endpoint: Some(Call::MountCreate),
        kind: FaultKind::TaskFail { message: Some("Repository is offline".into()) },
        times: Some(1),
    });
    let failed = finish(&session, &session.start_mount(&point, None).await.unwrap()).await;
    let err = failed.into_outcome().unwrap_err();
    assert_eq!(err.reason(), "task_failed");
    assert!(err.to_string().contains("Repository is offline"), "{err}");

    sim.add_fault(Fault { endpoint: Some(Call::MountCreate), kind: FaultKind::TaskStuck {}, times: Some(1) });
    let stuck = session.start_mount(&point, None).await.unwrap();
    // Well past the simulated task duration the task still runs.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(session.task(&stuck.href).await.unwrap().state, TaskState::Running);
    }
    session.delete_task(&stuck).await.unwrap();
    assert!(sim.state().mounts.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn restore_session_results_failed_and_warning() {
    let sim = start_sim().await;
    let session = client(&sim, Format::Xml).logon().await.unwrap();
    let point = session.newest_point(PointKind::Backup, VM).await.unwrap().unwrap();
    finish(&session, &session.browse_catalog_point(VM, &point.id).await.unwrap()).await;
    for (result, expected) in [("Failed", RestoreSessionResult::Failed), ("Warning", RestoreSessionResult::Warning)] {
        sim.add_fault(Fault {
            endpoint: Some(Call::CatalogRestore),
            kind: FaultKind::RestoreResult { result: result.into() },
            times: Some(1),
        });
        let task = finish(&session, &session.start_catalog_restore(VM, &point.id, CANARY).await.unwrap()).await;
        let href = task.into_outcome().unwrap().related().unwrap().href.clone();
        let done = eventually(Duration::from_secs(10), "restore session to stop", || async {
            let s = session.restore_session(&href).await.unwrap();
            (s.state == RestoreSessionState::Stopped).then_some(s)
        })
        .await;
        assert_eq!(done.result, Some(expected));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn body_size_cap() {
    let sim = start_sim().await;
    let mut config = ClientConfig::new(sim.api_url.parse().unwrap(), USER, Secret::new(PASSWORD));
    config.max_body_bytes = 64;
    let err = Client::new(config, None).unwrap().logon().await.unwrap_err();
    assert_eq!(err.reason(), "too_large");
    sim.shutdown().await;
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(Endpoint, Option<u16>)>>);

impl RequestObserver for Recorder {
    fn observe(&self, endpoint: Endpoint, status: Option<u16>, _elapsed: Duration) {
        self.0.lock().unwrap().push((endpoint, status));
    }
}

#[tokio::test]
async fn observer_sees_every_request_and_the_simulator_logs_them() {
    let sim = start_sim().await;
    let recorder = Arc::new(Recorder::default());
    let config = ClientConfig::new(sim.api_url.parse().unwrap(), USER, Secret::new(PASSWORD));
    let client = Client::new(config, Some(recorder.clone())).unwrap();
    client.api_root().await.unwrap();
    let session = client.logon().await.unwrap();
    session.keep_alive().await.unwrap();
    let _ = session.task("tasks/task-404").await;
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (Endpoint::ApiRoot, Some(200)),
            (Endpoint::Logon, Some(201)),
            (Endpoint::LogonSession, Some(200)),
            (Endpoint::Task, Some(404))
        ]
    );
    let body = reqwest::get(format!("http://{}/sim/requests", sim.addr)).await.unwrap().text().await.unwrap();
    let log: Vec<sim::LoggedRequest> = serde_json::from_str(&body).unwrap();
    // Two independent readings of which call is which: the client's and the simulator's.
    let name = |c: Option<Call>| serde_json::to_value(c).unwrap().as_str().unwrap_or("").to_owned();
    let endpoints: Vec<_> = log.iter().map(|r| (name(r.endpoint), r.status)).collect();
    assert_eq!(endpoints, seen.iter().map(|(e, s)| (e.as_str().to_owned(), s.unwrap())).collect::<Vec<_>>());
    assert_eq!(log[2].session.as_deref(), Some(session.id()));
    sim.shutdown().await;
}

#[tokio::test]
async fn tls_is_verified_by_default_and_a_ca_file_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("em.pem");
    let config =
        SimConfig { tls: true, tls_cert_file: Some(cert.clone()), timings: fast_timings(), ..SimConfig::default() };
    let sim = sim::start(config).await.unwrap();
    assert!(sim.api_url.starts_with("https://"));
    let base = ClientConfig::new(sim.api_url.parse().unwrap(), USER, Secret::new(PASSWORD));

    let err = Client::new(base.clone(), None).unwrap().logon().await.unwrap_err();
    assert_eq!(err.reason(), "transport");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");

    let trusted = ClientConfig { ca_file: Some(cert), ..base.clone() };
    Client::new(trusted, None).unwrap().logon().await.unwrap();

    let insecure = ClientConfig { insecure_skip_verify: true, ..base.clone() };
    Client::new(insecure, None).unwrap().logon().await.unwrap();

    let missing = ClientConfig { ca_file: Some(dir.path().join("missing.pem")), ..base.clone() };
    assert_eq!(Client::new(missing, None).unwrap_err().reason(), "config");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    assert_eq!(Client::new(ClientConfig { ca_file: Some(garbage), ..base }, None).unwrap_err().reason(), "config");
    sim.shutdown().await;
}
