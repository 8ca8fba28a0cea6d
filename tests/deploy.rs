//! Deployment files: the Kubernetes manifests parse and hold the invariants the exporter relies
//! on, the PrometheusRule is the alerts file, and the compose stack is wired consistently.

use std::path::Path;
use std::time::Duration;

use serde_norway::Value;

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Every document of every manifest in deploy/kubernetes, with its file name.
fn manifests() -> Vec<(String, Value)> {
    let dir = format!("{}/deploy/kubernetes", env!("CARGO_MANIFEST_DIR"));
    let mut docs = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs.push((path.file_name().unwrap().to_string_lossy().into_owned(), value));
        }
    }
    docs
}

use serde::Deserialize;

fn kind<'a>(docs: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<_> = docs.iter().filter(|(_, d)| d["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    &found[0].1
}

fn flag<'a>(args: &'a [Value], name: &str) -> Option<&'a str> {
    args.iter().filter_map(Value::as_str).find_map(|a| a.strip_prefix(&format!("{name}=")))
}

#[test]
fn kubernetes_manifests_hold_the_invariants() {
    let docs = manifests();
    let kustomization = kind(&docs, "Kustomization");
    let listed: Vec<&str> =
        kustomization["resources"].as_sequence().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    for (file, doc) in &docs {
        if doc["kind"] != "Kustomization" {
            assert!(listed.contains(&file.as_str()), "{file} is not in the kustomization");
        }
    }

    let sts = kind(&docs, "StatefulSet");
    assert_eq!(sts["spec"]["replicas"].as_u64(), Some(1), "never two replicas probing the same EM");
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let containers = pod["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let args = c["args"].as_sequence().unwrap();
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready");

    let mounts = c["volumeMounts"].as_sequence().unwrap();
    let mount_of = |volume: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == volume)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("no mount of {volume}"))
    };
    // State on a PersistentVolumeClaim, where --storage.path points.
    let claims = sts["spec"]["volumeClaimTemplates"].as_sequence().unwrap();
    let claim = claims[0]["metadata"]["name"].as_str().unwrap();
    // A subdirectory of it: with fsGroup the volume root is group-writable, which the exporter
    // refuses for a directory holding session tokens; the subdirectory it creates itself is 0700.
    let storage = flag(args, "--storage.path").expect("--storage.path is set");
    let parent = std::path::Path::new(storage).parent().and_then(|p| p.to_str());
    assert_eq!(parent, Some(mount_of(claim)), "--storage.path is a directory on the persistent volume");

    // The password comes from the Secret, mounted as a file, and the config reads that file.
    let volumes = pod["volumes"].as_sequence().unwrap();
    let secret_volume = volumes.iter().find(|v| v.get("secret").is_some()).expect("a Secret volume");
    let secret_name = secret_volume["secret"]["secretName"].as_str().unwrap();
    let secret = kind(&docs, "Secret");
    assert_eq!(secret["metadata"]["name"], secret_name);
    let secret_dir = mount_of(secret_volume["name"].as_str().unwrap());
    let configmap = kind(&docs, "ConfigMap");
    let config_text = configmap["data"]["config.yml"].as_str().unwrap();
    let config = veeam_restore_exporter::config::parse(config_text, Path::new("/etc/veeam-restore-exporter"))
        .unwrap_or_else(|e| panic!("the ConfigMap's config is invalid: {e}"));
    // Mounted as a directory (no subPath), so edits reach the running pod, and picked up by
    // --config.auto-reload-interval.
    let config_mount = mounts.iter().find(|m| m["name"] == "config").expect("the ConfigMap is mounted");
    assert!(config_mount.get("subPath").is_none(), "a subPath mount never sees ConfigMap edits");
    assert_eq!(
        flag(args, "--config.file"),
        Some(format!("{}/config.yml", mount_of("config")).as_str()),
        "--config.file is the ConfigMap's config.yml"
    );
    assert!(flag(args, "--config.auto-reload-interval").is_some(), "edits are reloaded");
    for target in &config.targets {
        match &target.password {
            veeam_restore_exporter::config::PasswordSource::File(path) => {
                assert!(
                    path.starts_with(secret_dir),
                    "{}: password_file {} is not in the Secret mount",
                    target.name,
                    path.display()
                )
            }
            other => panic!("{}: password must come from the Secret file, not {other:?}", target.name),
        }
    }

    // The kubelet must wait longer than the exporter's own shutdown, which must cover unmounts.
    let grace = humantime::parse_duration(flag(args, "--shutdown.grace-period").expect("grace period set")).unwrap();
    let termination = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    assert!(
        termination > grace,
        "terminationGracePeriodSeconds {termination:?} must exceed --shutdown.grace-period {grace:?}"
    );
    for target in &config.targets {
        for probe in &target.probes {
            assert!(
                probe.steps.get(veeam_restore_exporter::probe::Phase::Unmount) <= grace,
                "{}: unmount timeout exceeds the grace period",
                probe.name
            );
        }
    }

    // Service, ServiceMonitor and pod agree on labels and port names.
    let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
    let service = kind(&docs, "Service");
    for (k, v) in service["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&pod_labels[k.as_str().unwrap()], v, "Service selects the pod");
    }
    let port = service["spec"]["ports"][0]["name"].as_str().unwrap();
    assert!(c["ports"].as_sequence().unwrap().iter().any(|p| p["name"] == port));
    let monitor = kind(&docs, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], port);
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&service["metadata"]["labels"][k.as_str().unwrap()], v, "ServiceMonitor selects the Service");
    }
}

#[test]
fn prometheus_rule_is_the_alerts_file() {
    let docs = manifests();
    let rule = kind(&docs, "PrometheusRule");
    let alerts: Value = serde_norway::from_str(&read("alerts/veeam-restore-exporter.rules.yml")).unwrap();
    assert_eq!(rule["spec"]["groups"], alerts["groups"], "deploy/kubernetes/prometheusrule.yaml differs from alerts/");
}

#[test]
fn compose_stack_is_wired_consistently() {
    let compose: Value = serde_norway::from_str(&read("deploy/compose/compose.yaml")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    for name in ["em-sim", "exporter", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "compose lacks {name}");
    }
    let config: veeam_restore_exporter::config::Config = veeam_restore_exporter::config::parse(
        &read("deploy/compose/config.yml"),
        Path::new("/etc/veeam-restore-exporter"),
    )
    .unwrap();
    assert!(config.targets[0].url.as_str().starts_with("http://em-sim:"), "the exporter probes the simulator service");
    let prometheus = read("deploy/compose/prometheus.yml");
    assert!(prometheus.contains("exporter:9731"), "Prometheus scrapes the exporter service");
    assert!(prometheus.contains("job_name: veeam-restore-exporter"), "the job name the up-rules expect");
}

/// The systemd unit: stop timeout above the grace period it passes, reload by SIGHUP, state
/// directory private, and the packaged configuration valid.
#[test]
fn systemd_unit_and_packaged_configuration_hold_the_invariants() {
    let unit = read("deploy/systemd/veeam-restore-exporter.service");
    let value = |key: &str| {
        unit.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("no {key}="))
    };
    let grace = unit
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--shutdown.grace-period="))
        .map(|g| veeam_restore_exporter::duration::parse(g).unwrap())
        .expect("ExecStart sets --shutdown.grace-period");
    let stop = Duration::from_secs(value("TimeoutStopSec").parse().unwrap());
    assert!(stop > grace, "TimeoutStopSec {stop:?} must exceed the grace period {grace:?}");
    assert_eq!(value("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(value("StateDirectoryMode"), "0700");
    assert_eq!(value("NoNewPrivileges"), "yes");
    assert_eq!(value("ProtectSystem"), "strict");
    let config = veeam_restore_exporter::config::parse(&read("deploy/systemd/config.yml"), Path::new("/etc/x"))
        .unwrap_or_else(|e| panic!("the packaged configuration is invalid: {e}"));
    let credential = value("LoadCredential").split_once(':').unwrap().0.to_owned();
    for target in &config.targets {
        let expected = format!("/run/credentials/veeam-restore-exporter.service/{credential}");
        assert_eq!(
            target.password,
            veeam_restore_exporter::config::PasswordSource::File(expected.into()),
            "the password comes from the unit's credential"
        );
    }
}
