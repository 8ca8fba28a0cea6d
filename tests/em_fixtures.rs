//! Veeam's documented example bodies (tests/fixtures/em) decode into the right values.

use std::time::{Duration, SystemTime};

use veeam_restore_exporter::em::{PointKind, RestoreSessionResult, RestoreSessionState, TaskState, decode};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/em/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn utc(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).unwrap()
}

#[test]
fn entry_point_lists_versions() {
    let entry = decode::entry_point(&fixture("entry_point.xml")).unwrap();
    assert_eq!(entry.versions, vec!["v1_5", "v1_6", "v1_7"]);
}

#[test]
fn logon_session() {
    let logon = decode::logon(&fixture("logon_session.xml")).unwrap();
    assert_eq!(logon.session_id, "15a3fc97-0325-4119-b789-5c0367c6c565");
    assert_eq!(logon.user_name.as_deref(), Some(r"SRV12\Administrator"));
    assert_eq!(
        logon.delete_href(),
        Some("https://srv12.tech.local:9398/api/logonSessions/15a3fc97-0325-4119-b789-5c0367c6c565")
    );
    let printed = format!("{logon:?}");
    assert!(!printed.contains("15a3fc97"), "the session id is a secret: {printed}");
}

#[test]
fn query_entities_restore_point() {
    let points = decode::restore_points(&fixture("query_entities_vmrestorepoint.xml"), PointKind::Backup).unwrap();
    assert_eq!(points.len(), 1);
    let p = &points[0];
    assert_eq!(p.id, "9235a1c0-0000-0000-0000-000000000001");
    assert_eq!(p.name.as_deref(), Some("dc01@2015-12-07 11:48:39"));
    assert_eq!(p.creation_time, Some(utc("2015-12-07T11:48:39Z")));
    assert_eq!(
        p.mounts_href(),
        "https://localhost:9398/api/vmRestorePoints/9235a1c0-0000-0000-0000-000000000001/mounts"
    );
    assert_eq!(p.links.len(), 6);
}

#[test]
fn restore_point_entity_with_fractional_seconds() {
    let p = decode::restore_point(&fixture("vm_restore_point.xml"), PointKind::Backup).unwrap();
    assert_eq!(p.id, "5acac742-ee17-4080-8e89-a6ea67adfcf3");
    assert_eq!(p.creation_time, Some(utc("2016-10-06T13:59:50Z") + Duration::from_millis(783)));
}

#[test]
fn replica_point_entity() {
    let p = decode::restore_point(&fixture("vm_replica_point.xml"), PointKind::Replica).unwrap();
    assert_eq!(p.vm_display_name.as_deref(), Some("sql02"));
    assert_eq!(
        p.mounts_href(),
        "https://localhost:9398/api/vmReplicaPoints/9b414afe-0000-0000-0000-000000000001/mounts"
    );
    assert_eq!(p.creation_time, Some(utc("2014-10-19T05:44:54Z")));
}

#[test]
fn mount_task_running_then_finished() {
    let running = decode::task(&fixture("task_mount_running.xml")).unwrap();
    assert_eq!(running.state, TaskState::Running);
    assert_eq!(running.operation, "MountRestorePoint");
    assert!(running.result.is_none() && running.related().is_none() && !running.is_finished());

    let finished = decode::task(&fixture("task_mount_finished.xml")).unwrap();
    assert!(finished.is_finished());
    let related = finished.related().unwrap();
    assert_eq!(related.kind.as_deref(), Some("VmRestorePointMount"));
    assert_eq!(related.name.as_deref(), Some("710c0a5f-2783-4222-b669-0da996b09b97@1"));
    let ok = finished.into_outcome().unwrap();
    assert_eq!(ok.result.unwrap().message.as_deref(), Some("Ok"));
}

#[test]
fn mount_collection() {
    let mounts = decode::mounts(&fixture("vm_restore_point_mounts.xml"), PointKind::Backup).unwrap();
    assert_eq!(mounts.len(), 1);
    let m = &mounts[0];
    assert_eq!(
        m.delete_href(),
        "https://localhost:9398/api/vmRestorePoints/fb87163e-687d-4006-96c9-0451b5423b85/mounts/1"
    );
    assert_eq!(m.fs_roots.len(), 1);
    assert_eq!(m.fs_roots[0].path.as_deref(), Some("Volume$0:"));
}

#[test]
fn download_task_has_download_link() {
    let t = decode::task(&fixture("task_download_finished.xml")).unwrap();
    assert_eq!(t.operation, "FileRestoreFromMountPoint");
    let download = t.download().unwrap();
    assert!(download.kind.is_none(), "the documented Download link has no Type");
    assert!(download.href.ends_with("offers.docx?action=download"));
}

#[test]
fn result_without_message() {
    let t = decode::task(&fixture("task_browse_finished.xml")).unwrap();
    let result = t.result.clone().unwrap();
    assert!(result.success && result.message.is_none());
    assert!(t.into_outcome().is_ok());
}

#[test]
fn restore_file_task_links_to_restore_session() {
    let t = decode::task(&fixture("task_restore_file_finished.xml")).unwrap();
    assert_eq!(t.delete_href(), "https://localhost:9398/api/tasks/task-1");
    let related = t.related().unwrap();
    assert_eq!(related.kind.as_deref(), Some("RestoreSession"));
    assert!(related.href.ends_with("?format=Entity"));
}

#[test]
fn restore_session_entity() {
    let s = decode::restore_session(&fixture("restore_session.xml")).unwrap();
    assert_eq!(s.state, RestoreSessionState::Stopped);
    assert_eq!(s.result, Some(RestoreSessionResult::Success));
    assert_eq!(s.progress, 100);
    assert_eq!(s.job_type.as_deref(), Some("FileLevelRestore"));
    assert_eq!(s.vm_display_name.as_deref(), Some("fileserver01"));
    assert_eq!(s.end_time, Some(utc("2017-01-12T16:56:28Z") + Duration::from_millis(700)));
}

#[test]
fn error_bodies_in_both_formats() {
    assert_eq!(
        decode::error_message(&fixture("error.xml")).unwrap().as_deref(),
        Some("Object reference not set to an instance of an object.")
    );
    assert_eq!(decode::error_message(&fixture("error.json")).unwrap().as_deref(), Some("Node [root] does not exist."));
}

#[test]
fn json_task_with_bom() {
    let body = fixture("task_running.json");
    assert!(body.starts_with(b"\xef\xbb\xbf"));
    let t = decode::task(&body).unwrap();
    assert_eq!(t.id, "task-9");
    assert_eq!(t.state, TaskState::Running);
    assert_eq!(t.delete_href(), "http://em.example:9399/api/tasks/task-9");
}

/// JSON forms of the documented XML examples, written by the documented mapping (attributes
/// become properties, `Links` an array, `/query` nests its plural twice; docs/em-api-notes.md §1).
#[test]
fn json_forms_by_the_documented_mapping() {
    let query = br#"{"Entities":{"VmRestorePoints":{"VmRestorePoints":[{"Type":"VmRestorePoint",
        "Href":"https://localhost:9398/api/vmRestorePoints/5acac742?format=Entity","Name":"oracle03@2016-10-06 13:59:50",
        "UID":"urn:veeam:VmRestorePoint:5acac742","Links":[{"Rel":"Create","Type":"VmRestorePointMount",
        "Href":"https://localhost:9398/api/vmRestorePoints/5acac742/mounts"}],"CreationTimeUTC":"2016-10-06T13:59:50.783Z",
        "Algorithm":"Incremental","PointType":"Increment"}]}},"PagingInfo":null}"#;
    let points = decode::restore_points(query, PointKind::Backup).unwrap();
    assert_eq!(points[0].id, "5acac742");
    assert_eq!(points[0].creation_time, Some(utc("2016-10-06T13:59:50Z") + Duration::from_millis(783)));

    let task =
        br#"{"TaskId":"task-1","State":"Finished","Operation":"MountRestorePoint","Href":"https://l/api/tasks/task-1",
        "Links":[{"Rel":"Related","Type":"VmRestorePointMount","Href":"https://l/api/vmRestorePoints/7/mounts/1"}],
        "Result":{"Success":false,"Message":"No helper appliance"}}"#;
    let err = decode::task(task).unwrap().into_outcome().unwrap_err();
    assert_eq!(err.reason(), "task_failed");
    assert!(err.to_string().contains("No helper appliance"));

    let session = "\u{feff}{\"Href\":\"https://l/api/restoreSessions/8f?format=Entity\",\"JobType\":\"FileLevelRestore\",\"State\":\"Working\",\"Result\":\"None\",\"Progress\":42}";
    let s = decode::restore_session(session.as_bytes()).unwrap();
    assert_eq!(
        (s.state, s.result, s.progress),
        (RestoreSessionState::Working, Some(RestoreSessionResult::Other("None".into())), 42)
    );

    let logon = decode::logon(br#"{"SessionId":"44cfbdbe","UserName":"EM\\svc","Links":null}"#).unwrap();
    assert_eq!(logon.session_id, "44cfbdbe");
}

#[test]
fn unknown_fields_are_ignored_and_required_fields_enforced() {
    let extra = br#"<Task xmlns="http://www.veeam.com/ent/v1.0" Href="h/api/tasks/task-1" Future="1"><State>Finished</State><NewThing><X/></NewThing></Task>"#;
    assert!(decode::task(extra).unwrap().is_finished());
    let no_state = br#"<Task Href="h/api/tasks/task-1"/>"#;
    assert_eq!(decode::task(no_state).unwrap_err().reason(), "decode");
}
