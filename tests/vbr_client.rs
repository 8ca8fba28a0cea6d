//! The VBR client (`crates/veeam-vbr`) against the simulated VBR server (`crates/veeam-vbr-sim`):
//! two readings of Veeam's OpenAPI specs, written apart, meeting for the first time here. Every
//! revision the client speaks, TLS with the simulator's certificate, and the calls a restore
//! test makes.

use std::time::Duration;

use veeam_vbr::{Client, ClientConfig, GuestOs, MountRequest, Secret, ZipLimits};
use veeam_vbr_sim::{ApiRevision, SimConfig};

const POLL: Duration = Duration::from_millis(100);

async fn sim(max: ApiRevision, tls: bool) -> veeam_vbr_sim::SimServer {
    veeam_vbr_sim::start(SimConfig { max_api_revision: max, tls, ..SimConfig::default() })
        .await
        .expect("simulator starts")
}

fn client(sim: &veeam_vbr_sim::SimServer, user: &str, password: &str) -> Client {
    let mut config = ClientConfig::new(sim.url.parse().unwrap(), user, Secret::new(password));
    config.ca_file = sim.cert_file.clone();
    config.request_timeout = Duration::from_secs(10);
    Client::new(config, None).expect("client builds")
}

/// Logon, the newest point, an FLR mount with auto-unmount, browse, download and check the
/// canary file, unmount and see the session stopped, logout: on each server generation.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_test_runs_on_every_server_generation() {
    for (max, expected) in
        [(ApiRevision::V1_2Rev1, "1.2-rev1"), (ApiRevision::V1_3Rev1, "1.3-rev1"), (ApiRevision::V1_3Rev2, "1.3-rev2")]
    {
        let sim = sim(max, true).await;
        let session = client(&sim, "svc-canary", "canary").logon().await.expect("logon");
        assert_eq!(session.api_version().as_str(), expected, "the newest revision the server accepts");
        let point = session.newest_restore_point("canary-win01").await.expect("newest point");
        let mut request = MountRequest::new(&point.id, GuestOs::Windows, 60);
        request.reason = "veeam-restore-exporter test".into();
        let mount = session.mount(&request).await.unwrap_or_else(|e| panic!("{expected}: mount: {e}"));
        assert!(mount.mount_errors.is_empty(), "{expected}: {:?}", mount.mount_errors);
        assert_eq!(sim.state().live_mounts().len(), 2, "ours and the other user's");
        let root =
            session.browse(&mount.session_id, r"C:\canary").await.unwrap_or_else(|e| panic!("{expected}: browse: {e}"));
        assert!(root.items.iter().any(|i| i.name == "canary.txt"), "{expected}: {:?}", root.items);
        let file = session
            .download_file(
                &mount.session_id,
                r"C:\canary\canary.txt",
                POLL,
                Duration::from_secs(30),
                &ZipLimits::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{expected}: download: {e}"));
        assert_eq!(file.data, b"veeam-restore-exporter canary file on canary-win01\n");
        session.unmount(&mount.session_id).await.unwrap_or_else(|e| panic!("{expected}: unmount: {e}"));
        let info = session.session_info(&mount.session_id).await.expect("session");
        assert!(info.is_stopped(), "{expected}: {info:?}");
        assert_eq!(sim.state().live_mounts().len(), 1, "only the other user's mount is left");
        session.logout().await.expect("logout");
        sim.shutdown().await;
    }
}
