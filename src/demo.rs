//! `--demo`: the simulated EM and the simulated VBR server in-process, and a configuration that
//! probes both.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest;

/// The demo configuration; `${URL}`, `${VBR_URL}`, `${SHA256}` and `${VBR_SHA256}` are filled
/// in at start.
const TEMPLATE: &str = include_str!("demo-config.yml");

/// The simulators the demo probes; they stop when dropped with the process.
pub struct Demo {
    pub em: crate::sim::SimServer,
    pub vbr: veeam_vbr_sim::SimServer,
}

/// Starts the simulated EM and VBR server in-process and writes the demo configuration, the
/// password and VBR's certificate under `<storage>/demo/`. Returns the simulators and the
/// configuration's path.
pub async fn start(storage: &Path) -> Result<(Demo, PathBuf), String> {
    let timings = crate::sim::Timings {
        task_running: Duration::from_secs(1),
        task_collect_lag: Duration::from_millis(500),
        restore_duration: Duration::from_secs(6),
        ..crate::sim::Timings::default()
    };
    let sim = crate::sim::start(crate::sim::SimConfig { timings, ..crate::sim::SimConfig::default() }).await?;
    tracing::info!(url = %sim.api_url, "demo: simulated Enterprise Manager started");
    stage(&sim)?;
    // The state directory holds session tokens: when the demo creates it, it is private, as
    // the ledger would make it (an existing one is left as it is and checked by the ledger).
    if !storage.exists() {
        crate::platform::create_private_dir(storage, true)
            .map_err(|e| format!("cannot create {}: {e}", storage.display()))?;
    }
    let dir = storage.join("demo");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let vbr = veeam_vbr_sim::start(veeam_vbr_sim::SimConfig {
        tls: true,
        tls_cert_file: Some(dir.join("vbr-ca.pem")),
        timings: veeam_vbr_sim::Timings {
            mount_duration: Duration::from_secs(1),
            task_duration: Duration::from_secs(3),
            ..veeam_vbr_sim::Timings::default()
        },
        ..veeam_vbr_sim::SimConfig::default()
    })
    .await?;
    tracing::info!(url = %vbr.url, "demo: simulated Backup & Replication server started");
    // Both simulators' built-in account (see sim::DEFAULT_INVENTORY and veeam-vbr-sim's README).
    write(&dir.join("password"), "canary\n", true)?;
    let sha = hex::encode(sha2::Sha256::digest(b"veeam-restore-exporter canary file\n"));
    let vbr_sha = hex::encode(sha2::Sha256::digest(b"veeam-restore-exporter canary file on canary-win01\n"));
    let config = TEMPLATE
        .replace("${URL}", &sim.api_url)
        .replace("${SHA256}", &sha)
        .replace("${VBR_URL}", &vbr.url)
        .replace("${VBR_SHA256}", &vbr_sha);
    write(&dir.join("config.yml"), &config, false)?;
    Ok((Demo { em: sim, vbr }, dir.join("config.yml")))
}

/// Writes a file, `0600` when `private` (else `0644`; on Windows both inherit the directory's ACL).
/// What the demo's probes and restore watch find on the simulated EM: a canary file written an
/// hour ago (content freshness), and restores other users ran of a VM the demo does not probe
/// (the watch leaves the canaries' own out): one failed, one still running.
fn stage(sim: &crate::sim::SimServer) -> Result<(), String> {
    let written = std::time::SystemTime::now() - Duration::from_secs(3600);
    let stamp = humantime::format_rfc3339_seconds(written).to_string();
    if !sim.set_guest_file("canary-win01", "C:/canary/stamp.txt", &stamp) {
        return Err("demo: the simulator has no canary-win01".into());
    }
    let restores = [
        ("canary-lnx01", "RestoreVm", 7200, Some(1800), "Success"),
        ("canary-lnx01", "FileLevelRestore", 5400, Some(600), "Failed"),
        ("canary-lnx01", "FileLevelRestore", 900, None, "Success"),
    ];
    for (vm, job_type, age, duration, result) in restores {
        sim.add_restore_session(crate::sim::ExternalRestore {
            vm: vm.into(),
            job_type: job_type.into(),
            age: Duration::from_secs(age),
            duration: duration.map(Duration::from_secs),
            result: Some(result.into()),
        })?;
    }
    Ok(())
}

fn write(path: &Path, body: &str, private: bool) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if private { 0o600 } else { 0o644 });
    #[cfg(windows)]
    let _ = private;
    let mut file = options.open(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, body.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_demo_creates_a_private_state_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("data");
        let (demo, config) = start(&storage).await.unwrap();
        assert_eq!(std::fs::metadata(&storage).unwrap().permissions().mode() & 0o777, 0o700);
        let loaded = crate::config::load(&config).unwrap();
        assert_eq!(loaded.targets.len(), 2, "EM and VBR");
        demo.em.shutdown().await;
        demo.vbr.shutdown().await;
    }

    #[test]
    fn the_filled_in_template_is_a_valid_configuration() {
        let config = TEMPLATE
            .replace("${URL}", "http://127.0.0.1:1/api/")
            .replace("${SHA256}", &"a".repeat(64))
            .replace("${VBR_URL}", "https://127.0.0.1:2/")
            .replace("${VBR_SHA256}", &"b".repeat(64));
        // The CA file is written at start; here it only has to be a readable file.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vbr-ca.pem"), "").unwrap();
        let parsed = crate::config::parse(&config, dir.path()).unwrap();
        assert_eq!(parsed.targets[0].probes.len(), 5);
        assert_eq!(parsed.targets[1].probes.len(), 4);
    }
}
