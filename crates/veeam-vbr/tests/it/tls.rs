//! `ca_file` and `insecure_skip_verify` against a loopback HTTPS server with a self-signed
//! certificate (VBR's default), since that is the first thing a real site hits.

use axum::Router;
use axum::routing::post;
use serde_json::json;
use veeam_vbr::*;

async fn https_server() -> (url::Url, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(cert_pem.clone().into_bytes(), key_pem.into_bytes())
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().route(
        "/api/oauth2/token",
        post(|| async { axum::Json(json!({"access_token": "a", "refresh_token": "r", "expires_in": 900})) }),
    );
    let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
    tokio::spawn(async move { server.serve(app.into_make_service()).await.unwrap() });
    (format!("https://localhost:{port}/").parse().unwrap(), cert_pem)
}

#[tokio::test]
async fn self_signed_certificate_needs_ca_file_or_insecure() {
    let (base, pem) = https_server().await;
    let config = || ClientConfig::new(base.clone(), "u", Secret::new("p"));

    let err = Client::new(config(), None).unwrap().logon().await.unwrap_err();
    assert_eq!(err.reason(), "transport", "{err}");

    let dir = std::env::temp_dir().join(format!("veeam-vbr-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("vbr.pem");
    std::fs::write(&ca, pem).unwrap();
    let mut trusted = config();
    trusted.ca_file = Some(ca);
    let session = Client::new(trusted, None).unwrap().logon().await.unwrap();
    assert_eq!(session.api_version(), ApiVersion::NEWEST);
    std::fs::remove_dir_all(&dir).unwrap();

    let mut insecure = config();
    insecure.insecure_skip_verify = true;
    Client::new(insecure, None).unwrap().logon().await.unwrap();
}
