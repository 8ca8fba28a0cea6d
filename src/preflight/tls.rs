//! The TLS check of `--preflight`: whether the server's certificate is trusted the way the
//! probes will trust it, and when it is not, what the certificate says, so that the operator
//! knows which file to put in `ca_file:`.
//!
//! The verdict comes from an HTTPS request with the API clients' own TLS settings (the system's
//! trust store, plus `ca_file:`), so preflight and probes never disagree. The description comes
//! from a second handshake that accepts any certificate and only records it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::Target;

/// The verdict on the server's certificate.
pub enum Verdict {
    Trusted,
    /// Not trusted: why (the TLS library's words), and what the certificate says.
    Untrusted {
        why: String,
        certificate: Result<Certificate, String>,
    },
    /// No TLS answer at all (e.g. plain HTTP on an HTTPS port).
    Failed(String),
}

/// What a server certificate says, as far as deciding what to trust goes.
pub struct Certificate {
    pub subject: String,
    pub issuer: String,
    pub self_signed: bool,
    pub names: Vec<String>,
    pub not_after: Option<SystemTime>,
    pub expired: bool,
    /// SHA-256 of the DER, colon-separated hex (as browsers and `openssl x509 -fingerprint` show it).
    pub sha256: String,
}

/// Checks the certificate of `target` (an `https:` URL) reached at `addr`.
pub async fn check(target: &Target, host: &str, addr: SocketAddr) -> Verdict {
    let why = match verify(target).await {
        Ok(()) => return Verdict::Trusted,
        // What TLS said, without reqwest's and hyper's framing around it.
        Err(e) => e.find("invalid peer certificate").map(|at| e[at..].to_owned()).unwrap_or(e),
    };
    if !why.contains("certificate") {
        return Verdict::Failed(why);
    }
    let (host, timeout) = (host.to_owned(), target.request_timeout);
    let certificate = tokio::task::spawn_blocking(move || capture(&host, addr, timeout))
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
        .and_then(|der| describe(&der));
    Verdict::Untrusted { why, certificate }
}

/// An unauthenticated GET of the API URL with the clients' TLS settings: any HTTP answer means
/// the TLS handshake, certificate check included, went through.
async fn verify(target: &Target) -> Result<(), String> {
    let mut builder = reqwest::Client::builder().timeout(target.request_timeout);
    if let Some(file) = &target.ca_file {
        let pem = std::fs::read(file).map_err(|e| format!("cannot read ca_file {}: {e}", file.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {} holds no usable PEM certificate: {e}", file.display()))?;
        builder = builder.tls_certs_merge(certs);
    }
    if target.insecure_skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    client.get(target.url.clone()).send().await.map(drop).map_err(|e| error_chain(&e))
}

/// An error and its sources on one line: reqwest's own message rarely says what TLS objected to.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Records the server's certificate and accepts it: used only to describe a certificate that
/// the real check refused, never to talk to the server.
#[derive(Debug)]
struct Recorder {
    provider: Arc<CryptoProvider>,
    seen: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_entity.clone().into_owned());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The end-entity certificate the server at `addr` presents for `host` (blocking).
fn capture(host: &str, addr: SocketAddr, timeout: Duration) -> Result<Vec<u8>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let recorder = Arc::new(Recorder { provider: provider.clone(), seen: Mutex::new(None) });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let mut socket = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    socket.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).map_err(|e| e.to_string())?;
    }
    let seen = recorder.seen.lock().unwrap_or_else(|p| p.into_inner()).take();
    seen.map(|der| der.to_vec()).ok_or_else(|| "the server sent no certificate".to_owned())
}

fn describe(der: &[u8]) -> Result<Certificate, String> {
    use sha2::Digest;
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(ip) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    let not_after = u64::try_from(validity.not_after.timestamp())
        .ok()
        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    let digest = sha2::Sha256::digest(der);
    Ok(Certificate {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        names,
        not_after,
        expired: !validity.is_valid(),
        sha256: digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"),
    })
}

impl Certificate {
    /// What to do about it, most specific first.
    pub fn advice(&self, host: &str, api: &str) -> String {
        let until = self.not_after.map(|t| humantime::format_rfc3339_seconds(t).to_string()).unwrap_or_default();
        if self.expired {
            return format!("the certificate is not valid now (valid until {until}): renew it on the {api} server");
        }
        if !self.names.is_empty() && !self.names.iter().any(|n| n.eq_ignore_ascii_case(host)) {
            return format!(
                "the certificate is for {}, not {host}: put one of those names in url:",
                self.names.join(", ")
            );
        }
        if self.self_signed {
            return format!(
                "the {api} server uses a self-signed certificate: save it as a PEM file (check its fingerprint \
                 on the server first) and set ca_file: to that file"
            );
        }
        format!(
            "this machine does not trust the issuer {:?}: set ca_file: to a PEM file holding that CA's certificate",
            self.issuer
        )
    }
}
