//! Decoders against the specs' own `components/examples` (see `tests/fixtures/README.md`),
//! across revisions, plus liberal decoding of what the examples do not show.

use veeam_vbr::decode;
use veeam_vbr::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const REVS: [&str; 3] = ["1.2-rev1", "1.3-rev1", "1.3-rev2"];

#[test]
fn token_model() {
    for rev in ["1.2-rev1", "1.3-rev1"] {
        let grant = decode::token(&fixture(&format!("{rev}__TokenModelExample"))).unwrap();
        assert!(grant.access_token.expose().starts_with("eyJ"));
        assert!(grant.refresh_token.is_some());
        assert_eq!(grant.expires_in, Some(900));
        assert_eq!(grant.lifetime().as_secs(), 900);
        assert_eq!(grant.token_type.as_deref(), Some("bearer"));
    }
    // Without expires_in, `.expires - .issued` gives the lifetime.
    let grant = decode::token(
        br#"{"access_token":"a","refresh_token":"r","token_type":"bearer",".issued":"2025-04-24T15:24:18+02:00",".expires":"2025-04-24T15:34:18+02:00"}"#,
    )
    .unwrap();
    assert_eq!(grant.lifetime().as_secs(), 600);
    // Nothing usable: the documented 15 minutes.
    let grant = decode::token(br#"{"access_token":"a","expires_in":"soon"}"#).unwrap();
    assert_eq!(grant.lifetime().as_secs(), 900);
    assert!(grant.refresh_token.is_none());
    assert!(decode::token(br#"{"access_token":""}"#).is_err());
}

#[test]
fn server_info_and_time() {
    for rev in REVS {
        let info = decode::server_info(&fixture(&format!("{rev}__ServerInfoModelExample"))).unwrap();
        assert!(info.build_version.as_deref().is_some_and(|b| b.starts_with("1")), "{rev}: {info:?}");
        assert!(info.name.is_some());
    }
    let time = decode::server_time(&fixture("1.3-rev1__ServerTimeModelExample")).unwrap();
    assert!(parse_timestamp(&time.server_time).is_some());
    assert!(time.time_zone.is_some());
}

#[test]
fn restore_points_across_revisions() {
    for rev in REVS {
        let page = decode::restore_points(&fixture(&format!("{rev}__ObjectRestorePointsResultExample"))).unwrap();
        assert!(!page.data.is_empty(), "{rev}");
        let linbase01 = page.data.iter().find(|p| p.name.as_deref() == Some("linbase01")).unwrap();
        assert_eq!(linbase01.malware_status, Some(MalwareStatus::Clean));
        assert_eq!(linbase01.allows_file_restore(), Some(true));
        assert!(linbase01.created_at().is_some());
        assert_eq!(linbase01.platform_name.as_deref(), Some("VMware"));
    }
}

#[test]
fn restore_point_liberal_fields() {
    let page = decode::restore_points(
        br#"{"data":[
            {"id":"1","creationTime":"2026-01-01T00:00:00Z","malwareStatus":"Quarantined","allowedOperations":["StartFlrRestore","TeleportVm"]},
            {"id":"2","creationTime":"2026-01-02T00:00:00Z","malwareStatus":null,"allowedOperations":null,"name":null},
            {"id":"3","creationTime":"2026-01-03T00:00:00Z","malwareStatus":"informative"}
        ],"pagination":{"total":"3","count":3}}"#,
    )
    .unwrap();
    assert_eq!(page.data[0].malware_status, Some(MalwareStatus::Other("Quarantined".into())));
    assert_eq!(page.data[0].allows_file_restore(), Some(true));
    assert_eq!(page.data[1].malware_status, None);
    assert_eq!(page.data[1].allows_file_restore(), None);
    assert_eq!(page.data[2].malware_status, Some(MalwareStatus::Informative));
    assert_eq!(page.pagination.unwrap().total, Some(3));
    // A point without its id or time is not a restore point.
    assert!(decode::restore_points(br#"{"data":[{"creationTime":"2026-01-01T00:00:00Z"}]}"#).is_err());
    assert!(decode::restore_points(br#"{"data":[{"id":"x"}]}"#).is_err());
    assert!(decode::restore_points(br#"[]"#).is_err());
}

#[test]
fn backup_objects() {
    for rev in ["1.2-rev1", "1.3-rev2"] {
        let page = decode::backup_objects(&fixture(&format!("{rev}__AllBackupObjectsResultExample"))).unwrap();
        assert!(page.data.iter().any(|o| o.name.as_deref() == Some("winsp01")), "{rev}");
    }
}

#[test]
fn flr_mounts_across_revisions() {
    for rev in REVS {
        let mount = decode::flr_mount(&fixture(&format!("{rev}__WindowsFlrBrowseMountModelExample"))).unwrap();
        assert_eq!(mount.session_id, "f031db1c-8294-4ace-b6f1-bb7e299e9e53");
        assert_eq!(mount.guest_os, Some(GuestOs::Windows));
        assert_eq!(mount.path_separator.as_deref(), Some("\\"));
        assert_eq!(mount.machine_name.as_deref(), Some("winsp01"));
        assert!(mount.mount_errors.is_empty());
        let list = decode::flr_mounts(&fixture(&format!("{rev}__FlrBrowseMountResultExample"))).unwrap();
        assert!(!list.data.is_empty());
    }
    let linux = decode::flr_mount(&fixture("1.3-rev1__LinuxFlrBrowseMountModelExample")).unwrap();
    assert_eq!(linux.guest_os, Some(GuestOs::Linux));
    assert!(linux.restore_point_id.is_some());
    // 1.3 mount errors, an unknown kind and a future OS type.
    let mount = decode::flr_mount(
        br#"{"sessionId":"s","type":"Aix","mountErrors":[{"type":"Failed","message":"disk 2"},{"type":"Partial"}]}"#,
    )
    .unwrap();
    assert_eq!(mount.guest_os, Some(GuestOs::Other("Aix".into())));
    assert_eq!(mount.mount_errors[0].kind, Some(MountErrorKind::Failed));
    assert_eq!(mount.mount_errors[1].kind, Some(MountErrorKind::Other("Partial".into())));
    assert!(decode::flr_mount(br#"{"type":"Windows"}"#).is_err());
}

#[test]
fn browse_results() {
    for rev in REVS {
        let result = decode::browse(&fixture(&format!("{rev}__WindowsFlrBrowseFolderModelExample"))).unwrap();
        assert_eq!(result.path.as_deref(), Some("C:\\Users"));
        let file = result.items.iter().find(|i| i.item_type == Some(ItemType::File)).unwrap();
        assert_eq!(file.name, "desktop.ini");
        assert_eq!(file.path("\\"), "C:\\Users\\desktop.ini");
        assert_eq!(file.size, Some(174));
        assert!(file.modified_at().is_some());
        // `NotAvaliable` (1.2-rev1, 1.3-rev1) and `NotAvailable` (1.3-rev2) are one state.
        assert_eq!(file.item_state, Some(ItemState::NotAvailable), "{rev}");
    }
    let linux = decode::browse(&fixture("1.3-rev2__LinuxFlrBrowseFolderModelExample")).unwrap();
    assert!(linux.items.iter().all(|i| i.item_type == Some(ItemType::Folder)));
}

#[test]
fn tasks_across_revisions() {
    for rev in REVS {
        let download = decode::task(&fixture(&format!("{rev}__FlrDownloadTaskModelExample"))).unwrap();
        assert_eq!(download.task_type.as_deref(), Some("FlrDownload"));
        assert_eq!(download.state, Some(TaskState::Working));
        assert!(!download.is_finished());
        // 1.3-rev2's example carries `logs` in a shape its own schema does not describe.
        let restore = decode::task(&fixture(&format!("{rev}__FlrRestoreTaskModelExample"))).unwrap();
        assert_eq!(restore.state, Some(TaskState::Starting));
        assert_eq!(restore.result, Some(TaskResult::None));
    }
    let done = decode::task(
        br#"{"id":"t","type":"FlrRestore","state":"Stopped","result":"Failed","progressPercent":100.0,
            "additionalInfo":{"message":"Access denied"}}"#,
    )
    .unwrap();
    assert!(done.is_finished() && !done.succeeded());
    assert_eq!(done.message.as_deref(), Some("Access denied"));
    assert_eq!(done.progress_percent, Some(100));
    let odd = decode::task(br#"{"id":"t","state":"Paused","result":"PartiallySucceeded"}"#).unwrap();
    assert_eq!(odd.state, Some(TaskState::Other("Paused".into())));
    assert!(!odd.is_finished());
}

#[test]
fn sessions_across_revisions() {
    for rev in REVS {
        let session = decode::session(&fixture(&format!("{rev}__SessionModelExample"))).unwrap();
        assert!(session.is_stopped());
        let result = session.result.unwrap();
        assert_eq!(result.result, Some(SessionResultKind::Success));
        assert_eq!(result.is_canceled, Some(false));
        assert!(session.initiated_by.is_none());
    }
    let infra = decode::session(&fixture("1.3-rev1__InfrastructureSessionModelExample")).unwrap();
    assert_eq!(infra.initiated_by.as_deref(), Some(".\\veeam-rest-service"));
    assert_eq!(infra.state, Some(SessionState::Working));
    let future = decode::session(br#"{"id":"s","state":"ActionRequired","sessionType":"FileLevelRestore"}"#).unwrap();
    assert_eq!(future.state, Some(SessionState::ActionRequired));
}

#[test]
fn error_bodies() {
    let e = decode::api_error(&fixture("1.3-rev2__ErrorNotImplementedExample")).unwrap();
    assert!(e.code_is("NotImplemented"));
    assert!(veeam_vbr::version::is_version_refusal(400, &e));
    let e = decode::api_error(&fixture("1.3-rev2__ErrorAccessDeniedForbiddenExample")).unwrap();
    assert_eq!(e.to_string(), "AccessDenied: Forbidden");
    let e = decode::api_error(&fixture("1.3-rev2__ErrorNotFoundExample")).unwrap();
    assert!(e.resource_id.is_some());
}

#[test]
fn decoders_never_panic_on_garbage() {
    let inputs: [&[u8]; 8] =
        [b"", b"null", b"[]", b"{", b"\xff\xfe", b"{\"data\":{}}", b"{\"id\":1}", b"{\"sessionId\":[]}"];
    for input in inputs {
        let _ = decode::token(input);
        let _ = decode::api_error(input);
        let _ = decode::restore_points(input);
        let _ = decode::flr_mount(input);
        let _ = decode::flr_mounts(input);
        let _ = decode::browse(input);
        let _ = decode::task(input);
        let _ = decode::session(input);
        assert!(decode::task(input).is_err());
    }
}
