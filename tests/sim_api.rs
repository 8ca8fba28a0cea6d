//! The simulator as a product for other EM tooling: documented collections, paging links, 401
//! before 404, `Error` bodies on 405, and its independence from the client's code.

use veeam_restore_exporter::sim::{ExternalRestore, SimServer};

use crate::support::{PASSWORD, USER, start_sim};

/// Logs on as any EM client does and returns the session token.
async fn logon(sim: &SimServer) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}sessionMngr/?v=latest", sim.api_url))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.headers()["X-RestSvcSessionId"].to_str().unwrap().to_owned()
}

async fn get(sim: &SimServer, token: Option<&str>, path: &str, json: bool) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", sim.api_url));
    if let Some(token) = token {
        request = request.header("X-RestSvcSessionId", token);
    }
    if json {
        request = request.header("Accept", "application/json");
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_requests_get_401_before_404_and_405_has_an_error_body() {
    let sim = start_sim().await;
    let (status, body) = get(&sim, None, "noSuchThing", false).await;
    assert_eq!(status, 401, "EM answers 401 before telling what exists: {body}");
    assert!(body.contains("<Error"), "{body}");
    let (status, _) = get(&sim, Some("bogus-token"), "noSuchThing", false).await;
    assert_eq!(status, 401);
    let token = logon(&sim).await;
    let (status, body) = get(&sim, Some(&token), "noSuchThing", false).await;
    assert_eq!(status, 404, "{body}");

    let put = reqwest::Client::new()
        .put(format!("{}query?type=VmRestorePoint", sim.api_url))
        .header("X-RestSvcSessionId", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    let body = put.text().await.unwrap();
    assert!(body.contains("<Error") && body.contains("StatusCode=\"405\""), "{body}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_collections_are_served_in_xml_and_json() {
    let sim = start_sim().await;
    let token = logon(&sim).await;
    let (status, body) = get(&sim, Some(&token), "vmRestorePoints", false).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<EntityReferences") && body.matches("Type=\"VmRestorePointReference\"").count() == 3,
        "{body}"
    );
    let (_, body) = get(&sim, Some(&token), "vmReplicaPoints", true).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Refs"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(v["Refs"][0]["Type"], "VmReplicaPointReference");

    let (_, body) = get(&sim, Some(&token), "catalog/vms", false).await;
    assert!(body.contains("CatalogVmReference") && body.contains("canary-win01"), "{body}");
    let (status, body) = get(&sim, Some(&token), "catalog/vms/canary-win01/vmRestorePoints", false).await;
    assert_eq!(status, 200);
    assert_eq!(body.matches("CatalogVmRestorePointReference").count(), 2, "{body}");
    assert_eq!(get(&sim, Some(&token), "catalog/vms/nobody/vmRestorePoints", false).await.0, 404);

    // Restore sessions are EM-wide: another user's appears; tasks are the session's own.
    let id = sim
        .add_restore_session(ExternalRestore {
            vm: "canary-lnx01".into(),
            job_type: "RestoreVm".into(),
            age: std::time::Duration::from_secs(600),
            duration: None,
            result: None,
        })
        .unwrap();
    let (_, body) = get(&sim, Some(&token), "restoreSessions", false).await;
    assert!(body.contains(&format!("restoreSessions/{id}")), "{body}");
    let (status, body) = get(&sim, Some(&token), "tasks", false).await;
    assert_eq!(status, 200);
    assert!(body.contains("<Tasks") && !body.contains("<Task "), "a fresh session has no tasks: {body}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn query_results_carry_paging_links() {
    let sim = start_sim().await;
    let token = logon(&sim).await;
    let path = "query?type=VmRestorePoint&format=Entities&pageSize=1&page=2";
    let (_, body) = get(&sim, Some(&token), path, false).await;
    assert!(body.contains("PageNum=\"2\"") && body.contains("PagesCount=\"3\""), "{body}");
    for rel in ["First", "Previous", "Next", "Last"] {
        assert!(body.contains(&format!("Rel=\"{rel}\"")), "{rel} missing: {body}");
    }
    // Following Next gives page 3, which has no Next.
    let next = body.split("Rel=\"Next\"").nth(1).unwrap();
    let href = next.split("Href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
    let relative = href.split("/api/").nth(1).unwrap().to_owned();
    let (status, body) = get(&sim, Some(&token), &relative, false).await;
    assert_eq!(status, 200);
    assert!(body.contains("PageNum=\"3\"") && !body.contains("Rel=\"Next\""), "{body}");
    let (_, body) = get(&sim, Some(&token), "query?type=VmRestorePoint&pageSize=1", true).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["PagingInfo"]["Links"].to_string().contains("page=2"), "{body}");
    sim.shutdown().await;
}

/// The simulators share nothing with the clients, and the clients nothing with the exporter:
/// each simulator depends on no crate of this workspace, each client only on `veeam-secret`.
/// The compiler enforces it once the manifests say so; this reads the manifests.
#[test]
fn the_simulators_depend_on_no_crate_of_ours_and_the_clients_on_none_of_the_exporter() {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version=1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let ours = |name: &str| -> Vec<String> {
        let package = metadata["packages"].as_array().unwrap().iter().find(|p| p["name"] == name).expect(name);
        let deps = package["dependencies"].as_array().unwrap();
        let mut local: Vec<String> = deps
            .iter()
            .filter(|d| d["path"].is_string() && d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect();
        local.sort();
        local
    };
    assert_eq!(ours("veeam-em-sim"), Vec::<String>::new());
    assert_eq!(ours("veeam-vbr-sim"), Vec::<String>::new());
    assert_eq!(ours("veeam-em"), ["veeam-secret"]);
    assert_eq!(ours("veeam-vbr"), ["veeam-secret"]);
    assert_eq!(ours("veeam-secret"), Vec::<String>::new());
}

/// The monitoring family, computed from the built-in inventory's jobs, sessions, repositories
/// and VMs, with the field names a v12 EM sends (Linuxfabrik's captures).
#[tokio::test(flavor = "multi_thread")]
async fn reporting_endpoints_describe_the_simulated_backup_infrastructure() {
    let sim = start_sim().await;
    let token = logon(&sim).await;
    let json = |body: String| serde_json::from_str::<serde_json::Value>(&body).unwrap();
    let stats = json(get(&sim, Some(&token), "reports/summary/job_statistics", true).await.1);
    assert_eq!(
        (&stats["ScheduledJobs"], &stats["TotalJobRuns"], &stats["FailedJobRuns"], &stats["WarningsJobRuns"]),
        (&3.into(), &4.into(), &1.into(), &1.into()),
        "{stats}"
    );
    assert_eq!(stats["MaxDurationBackupJobName"], "Canary backup");
    let overview = json(get(&sim, Some(&token), "reports/summary/overview", true).await.1);
    assert_eq!(overview["BackupServers"], 1);
    let vms = json(get(&sim, Some(&token), "reports/summary/vms_overview", true).await.1);
    assert_eq!((&vms["ProtectedVms"], &vms["ReplicatedVms"]), (&2.into(), &1.into()), "{vms}");
    let repository = json(get(&sim, Some(&token), "reports/summary/repository", true).await.1);
    assert_eq!(repository["Periods"][0]["Name"], "Backup Volume 01", "{repository}");
    let sessions = json(get(&sim, Some(&token), "backupSessions?format=Entity", true).await.1);
    let sessions = sessions["BackupJobSessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 4);
    assert!(sessions.iter().any(|s| s["JobName"] == "File servers" && s["Result"] == "Failed"));
    let (_, xml) = get(&sim, Some(&token), "query?type=BackupJobSession&filter=Result==Failed", false).await;
    assert_eq!(xml.matches("BackupJobSessionReference").count(), 1, "{xml}");
    for path in ["backupServers", "jobs", "repositories", "backupSessions"] {
        let (status, body) = get(&sim, Some(&token), path, false).await;
        assert!(status == 200 && body.contains("<EntityReferences"), "{path}: {status} {body}");
    }
    assert_eq!(get(&sim, None, "reports/summary/overview", true).await.0, 401);
    sim.shutdown().await;
}

/// Query references carry the documented `Alternate` link to their entity, and following it works.
#[tokio::test(flavor = "multi_thread")]
async fn query_references_link_to_their_entities() {
    let sim = start_sim().await;
    let token = logon(&sim).await;
    let (_, body) = get(&sim, Some(&token), "query?type=VmRestorePoint&pageSize=1", true).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let link = &v["Refs"]["Refs"][0]["Links"][0];
    assert_eq!(link["Rel"], "Alternate", "{body}");
    let href = link["Href"].as_str().unwrap();
    let (status, entity) = get(&sim, Some(&token), href.split("/api/").nth(1).unwrap(), false).await;
    assert_eq!(status, 200);
    assert!(entity.contains("<VmRestorePoint "), "{entity}");
    sim.shutdown().await;
}
