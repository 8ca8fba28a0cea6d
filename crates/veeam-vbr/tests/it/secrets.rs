//! Secrets never appear in `Debug` or `Display` of the client, session, config or errors.

use veeam_vbr::*;

#[test]
fn config_client_and_errors_hide_the_password() {
    let config = ClientConfig::new("https://vbr:9419/".parse().unwrap(), "svc-restore", Secret::new("Pa55w0rd!"));
    let client = Client::new(config.clone(), None).unwrap();
    let printed = format!("{config:?} {client:?}");
    assert!(!printed.contains("Pa55w0rd!"), "{printed}");
    assert!(printed.contains("svc-restore"));
}

#[test]
fn token_grants_hide_both_tokens() {
    let grant =
        decode::token(br#"{"access_token":"ACCESS-XYZ","refresh_token":"REFRESH-XYZ","expires_in":900}"#).unwrap();
    let printed = format!("{grant:?}");
    assert!(!printed.contains("ACCESS-XYZ") && !printed.contains("REFRESH-XYZ"), "{printed}");
}

#[test]
fn bad_ca_files_are_config_errors() {
    let dir = std::env::temp_dir().join(format!("veeam-vbr-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    for path in [garbage.clone(), dir.join("missing.pem")] {
        let mut config = ClientConfig::new("https://vbr:9419/".parse().unwrap(), "u", Secret::new("p"));
        config.ca_file = Some(path.clone());
        let err = Client::new(config, None).unwrap_err();
        assert_eq!(err.reason(), "config", "{path:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
