//! The configuration's parsing and checks.

use super::*;
use crate::probe::Phase;

const GOOD: &str = r#"
targets:
  - name: em-prod
    url: https://em.example.com:9398/api/
    username: svc-canary
    password_file: secrets/password
    probes:
      - { name: win-mount, kind: mount, vm: canary-win01, interval: 15m }
      - name: canary-file
        kind: file_restore
        vm: canary-win01
        path: C:/canary/canary.txt
        mode: download
        expected_size: 35
        interval: 1h
        step_timeouts: { mount: 2m }
"#;

#[test]
fn good_config_with_defaults_and_relative_paths() {
    let c = parse(GOOD, Path::new("/etc/vre")).unwrap();
    let t = &c.targets[0];
    assert_eq!(t.password, PasswordSource::File(PathBuf::from("/etc/vre/secrets/password")));
    assert_eq!(t.format, Format::Xml);
    assert_eq!(t.max_concurrent_probes, 1);
    assert_eq!(t.probes.len(), 2);
    assert_eq!(t.probes[0].kind.label(), "mount");
    assert_eq!(t.probes[1].kind.mode(), Some("download"));
    assert_eq!(t.probes[1].steps.get(Phase::Mount), Duration::from_secs(120));
    assert_eq!(t.probes[1].steps.get(Phase::Unmount), Duration::from_secs(300));
}

#[test]
fn every_problem_is_reported_with_its_location() {
    let bad = r#"
targets:
  - name: em-prod
    url: not a url
    username: svc
    password_file: a
    password_env: B
    probes:
      - { name: m, kind: mount, vm: v, interval: 5x }
      - { name: m2, kind: mount, vm: v, interval: 1m, path: C:/x }
      - { name: f, kind: file_restore, vm: v, interval: 1m }
  - name: em-prod
    url: https://em:9398/api/
    username: svc
    password_env: P
    probes:
      - { name: "bad name", kind: mount, vm: v, interval: 1m, intervall: 2m }
  - name: em-leaky
    url: https://svc:hunter2@em:9398/api/
    username: svc
    password_env: P
    probes:
      - { name: m, kind: mount, vm: v, interval: 1m }
"#;
    let errors = parse(bad, Path::new("/")).unwrap_err().0;
    let expected = [
        "targets[0] (em-prod).url: \"not a url\"",
        "targets[0] (em-prod): set only one of password_file and password_env",
        "targets[0] (em-prod).probes[0] (m).interval: invalid duration \"5x\"",
        "targets[0] (em-prod).probes[1] (m2).path: not a setting of a mount probe",
        "targets[0] (em-prod).probes[2] (f).mode: required for file_restore",
        "targets[1] (em-prod).name: duplicate target name",
        "targets[1] (em-prod).probes[0] (bad name).name: \"bad name\" must be",
        "targets[1] (em-prod).probes[0] (bad name).intervall: not a setting of a mount probe",
        "targets[2] (em-leaky).url: must not contain credentials",
    ];
    assert!(!errors.iter().any(|e| e.contains("hunter2")), "errors never echo a password: {errors:#?}");
    for e in expected {
        assert!(errors.iter().any(|x| x.starts_with(e)), "missing {e:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn one_bad_value_hides_no_other_and_each_names_its_key() {
    let bad = r#"
targets:
  - name: em
    url: https://em:9398/api/
    username: svc
    password_env: P
    keepalive_interval: 15min
    request_timeout: 1.5h
    max_concurrent_probes: many
    tls_config: { ca_file: /nonexistent/ca.pem, verify: no }
    probes:
      - { name: m, kind: mount, vm: v, interval: -5m, timeout: 1x, browse: maybe, step_timeouts: { mount: 0s, download: 1m } }
      - { name: d, kind: file_restore, mode: download, vm: v, interval: 1m, path: C:/x, expected_sha256: abc }
"#;
    let errors = parse(bad, Path::new("/")).unwrap_err().0;
    let expected = [
        "targets[0] (em).keepalive_interval: invalid duration \"15min\"",
        "targets[0] (em).request_timeout: invalid duration \"1.5h\"",
        "targets[0] (em).max_concurrent_probes: ",
        "targets[0] (em).tls_config.ca_file: /nonexistent/ca.pem is not a readable file",
        "targets[0] (em).tls_config.verify: unknown key",
        "targets[0] (em).probes[0] (m).interval: invalid duration \"-5m\"",
        "targets[0] (em).probes[0] (m).timeout: invalid duration \"1x\"",
        "targets[0] (em).probes[0] (m).browse: ",
        "targets[0] (em).probes[0] (m).step_timeouts.mount: must be greater than 0",
        "targets[0] (em).probes[0] (m).step_timeouts.download: not a setting of a mount probe",
        "targets[0] (em).probes[1] (d).expected_sha256: must be 64 hex digits",
    ];
    for e in expected {
        assert!(errors.iter().any(|x| x.starts_with(e)), "missing {e:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn user_labels_merge_and_are_checked() {
    let text = r#"
targets:
  - name: em
    url: https://em:9398/api/
    username: svc
    password_env: P
    labels: { site: ams, tier: gold }
    probes:
      - { name: m, kind: mount, vm: v, interval: 1m, labels: { tier: silver, team: backup } }
"#;
    let c = parse(text, Path::new("/")).unwrap();
    let labels: Vec<(&str, &str)> =
        c.targets[0].probes[0].labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(labels, [("site", "ams"), ("team", "backup"), ("tier", "silver")]);
    let bad = text.replace("team: backup", "probe: x, 1st: y, __x: z, ok: \"\"");
    let errors = parse(&bad, Path::new("/")).unwrap_err().0;
    for needle in ["\"probe\" is a label the exporter sets", "\"1st\" is not", "\"__x\" is not", "\"ok\" must be"] {
        assert!(errors.iter().any(|e| e.contains(needle) && e.contains(".labels:")), "{needle}: {errors:#?}");
    }
}

#[test]
fn syntax_errors_have_line_numbers() {
    let errors = parse("targets:\n  - name: [\n", Path::new("/")).unwrap_err().0;
    assert!(errors[0].contains("line"), "{errors:?}");
    let errors = parse("targets: []\nextra: 1\n", Path::new("/")).unwrap_err().0;
    assert!(errors[0].contains("config.extra: unknown key"), "{errors:?}");
}

#[test]
fn password_file_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\n").unwrap();
    assert_eq!(PasswordSource::File(file).read().unwrap().expose(), "s3cret");
    assert!(PasswordSource::Env("VRE_TEST_SURELY_UNSET".into()).read().is_err());
}

#[test]
fn vbr_targets_take_their_own_keys_and_check_auto_unmount() {
    let text = |extra: &str, probe: &str| {
        format!(
            "targets:\n  - name: vbr\n    api: vbr\n    url: https://vbr:9419\n    username: u\n    password_env: P\n\
                 {extra}    probes:\n      - {probe}\n"
        )
    };
    let restore = "{ name: r, kind: file_restore, mode: original_location, vm: v, path: C:/x, interval: 1h, step_timeouts: { mount: 3m } }";
    let c = parse(&text("", restore), Path::new("/")).unwrap();
    let t = &c.targets[0];
    assert_eq!((t.api, t.auto_unmount), (Api::Vbr, Duration::from_secs(3600)));
    assert_eq!(t.probes[0].kind.phases_on(Api::Vbr), &[Phase::Lookup, Phase::Mount, Phase::Restore, Phase::Unmount]);
    assert_eq!(t.probes[0].steps.get(Phase::Mount), Duration::from_secs(180), "a VBR phase takes a timeout");
    let errors = |extra: &str, probe: &str| parse(&text(extra, probe), Path::new("/")).unwrap_err().0;
    let mount = "{ name: m, kind: mount, vm: v, interval: 1h }";
    assert_eq!(errors("    format: json\n", mount), ["targets[0] (vbr).format: not a setting of a vbr target"]);
    assert_eq!(
        errors("    restore_watch: { interval: 5m }\n", mount),
        ["targets[0] (vbr).restore_watch: not a setting of a vbr target"]
    );
    assert!(errors("    auto_unmount: 90s\n", mount)[0].contains("whole minutes"));
    let short = errors("    auto_unmount: 10m\n", mount);
    assert!(short[0].contains("must exceed the longest step timeout of probe \"m\" (10m)"), "{short:?}");
    let replica = errors("", "{ name: m, kind: mount, vm: v, interval: 1h, point: replica }");
    assert!(replica[0].contains("replica points are EM only"), "{replica:?}");
    let em = "targets:\n  - name: em\n    url: https://em:9398/api/\n    username: u\n    password_env: P\n    \
                  auto_unmount: 1h\n    probes:\n      - { name: m, kind: mount, vm: v, interval: 1h }\n";
    assert_eq!(
        parse(em, Path::new("/")).unwrap_err().0,
        ["targets[0] (em).auto_unmount: not a setting of an em target"]
    );
    let tape = text("", mount).replace("api: vbr", "api: tape");
    assert!(parse(&tape, Path::new("/")).unwrap_err().0[0].contains("api"), "an unknown API is named");
}

#[test]
fn retry_after_failure_defaults_to_5m_but_not_for_restores_into_the_vm() {
    let text = |target: &str, probe: &str| {
        format!(
            "targets:\n  - name: t\n    url: https://em:9398/api/\n    username: u\n    password_env: P\n{target}    \
                 probes:\n      - {{ name: m, kind: mount, vm: v, interval: 1h{probe} }}\n      \
                 - {{ name: r, kind: file_restore, mode: catalog, vm: v, path: C:/x, interval: 1d }}\n"
        )
    };
    let retry = |target: &str, probe: &str| {
        let c = parse(&text(target, probe), Path::new("/")).unwrap();
        (c.targets[0].probes[0].retry_after_failure, c.targets[0].probes[1].retry_after_failure)
    };
    let five = Some(Duration::from_secs(300));
    assert_eq!(retry("", ""), (five, None), "restores into the VM are not re-run by default");
    assert_eq!(retry("", ", retry_after_failure: 0s"), (None, None), "0s turns it off");
    let two = Some(Duration::from_secs(120));
    assert_eq!(retry("    retry_after_failure: 2m\n", ""), (two, two), "a target's value is the probes' default");
    assert_eq!(
        retry("    retry_after_failure: 2m\n", ", retry_after_failure: 1m"),
        (Some(Duration::from_secs(60)), two)
    );
}
