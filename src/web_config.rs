//! `--web.config.file`: TLS and basic authentication for the exporter's own endpoints, in the
//! Prometheus exporter-toolkit format, so the same file works as for node_exporter:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
//!   client_ca_file: clients.pem
//!   min_version: TLS12
//! http_server_config:
//!   headers:
//!     Strict-Transport-Security: max-age=31536000
//! basic_auth_users:
//!   prometheus: $2y$10$…   # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! As in exporter-toolkit, the file is read again for every request (users and headers) and the
//! TLS settings at every reload, so credentials can be rotated without a restart. Unknown keys
//! are errors. Relative paths resolve against the file's directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::Digest;

/// The file as parsed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    pub http_server_config: HttpServerConfig,
    /// User name → bcrypt hash.
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth_type: ClientAuth,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<TlsVersion>,
    #[serde(default)]
    max_version: Option<TlsVersion>,
}

/// exporter-toolkit's names (Go's `tls.ClientAuthType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
enum ClientAuth {
    #[default]
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
enum TlsVersion {
    TLS12,
    TLS13,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for compatibility; HTTP/2 is negotiated as the client offers.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The response headers exporter-toolkit lets a web config set.
const SETTABLE_HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

impl WebConfig {
    /// Reads and checks the file, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read web config {}: {e}", path.display()))?;
        WebConfig::parse(&text, path)
    }

    /// Parses and checks the text of the file at `path` (named in errors; relative paths in it
    /// are resolved against its directory).
    pub fn parse(text: &str, path: &Path) -> Result<WebConfig, String> {
        let at = path.display();
        let mut config: WebConfig = if text.trim().is_empty() {
            WebConfig::default()
        } else {
            serde_norway::from_str(text).map_err(|e| format!("web config {at}: {e}"))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(tls) = &mut config.tls_server_config {
            for file in [&mut tls.cert_file, &mut tls.key_file] {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
            if let Some(ca) = &mut tls.client_ca_file
                && ca.is_relative()
            {
                *ca = base.join(&*ca);
            }
            let verifies = matches!(
                tls.client_auth_type,
                ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
            );
            if verifies != tls.client_ca_file.is_some() {
                return Err(format!(
                    "web config {at}: client_ca_file goes with client_auth_type VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                ));
            }
            if matches!(tls.client_auth_type, ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert) {
                return Err(format!(
                    "web config {at}: client_auth_type {:?} (a client certificate nobody verifies) is not supported; use RequireAndVerifyClientCert",
                    tls.client_auth_type
                ));
            }
            if let (Some(min), Some(max)) = (tls.min_version, tls.max_version)
                && min > max
            {
                return Err(format!("web config {at}: min_version is above max_version"));
            }
        }
        for name in config.http_server_config.headers.keys() {
            if !SETTABLE_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return Err(format!(
                    "web config {at}: header {name:?} cannot be set (allowed: {})",
                    SETTABLE_HEADERS.join(", ")
                ));
            }
        }
        for (user, hash) in &config.basic_auth_users {
            if user.contains(':') || hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(format!(
                    "web config {at}: basic_auth_users.{user}: not a bcrypt hash (or ':' in the name)"
                ));
            }
        }
        Ok(config)
    }

    /// True when the file asks for basic authentication.
    pub fn requires_auth(&self) -> bool {
        !self.basic_auth_users.is_empty()
    }

    /// Builds the rustls server configuration, or `None` when the file asks for no TLS.
    pub fn rustls(&self) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
        let Some(tls) = &self.tls_server_config else { return Ok(None) };
        let certs = CertificateDer::pem_file_iter(&tls.cert_file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cert_file {}: {e}", tls.cert_file.display()))?;
        let key = PrivateKeyDer::from_pem_file(&tls.key_file)
            .map_err(|e| format!("key_file {}: {e}", tls.key_file.display()))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            [(TlsVersion::TLS12, &rustls::version::TLS12), (TlsVersion::TLS13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| {
                    tls.min_version.is_none_or(|min| *v >= min) && tls.max_version.is_none_or(|max| *v <= max)
                })
                .map(|(_, p)| p)
                .collect();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = match &tls.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in
                    CertificateDer::pem_file_iter(ca).map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?
                {
                    let cert = cert.map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
                    roots.add(cert).map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if tls.client_auth_type == ClientAuth::VerifyClientCertIfGiven {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("client_ca_file: {e}"))?)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| format!("cert_file/key_file: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }
}

/// Checks basic-auth credentials against bcrypt hashes. bcrypt is slow on purpose (tens of
/// milliseconds), and Prometheus scrapes with the same credentials every few seconds, so a
/// successful check is remembered by a hash of (user, password, stored hash), as
/// exporter-toolkit does; a changed hash in the file invalidates it.
#[derive(Default)]
pub struct Authenticator {
    verified: Mutex<HashMap<[u8; 32], ()>>,
}

/// A bcrypt hash of a random password, so an unknown user costs as much time as a known one.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash(uuid::Uuid::new_v4().to_string(), bcrypt::DEFAULT_COST).unwrap_or_default())
}

impl Authenticator {
    /// True when `user:password` is allowed by `config`.
    pub fn check(&self, config: &WebConfig, user: &str, password: &str) -> bool {
        let stored = config.basic_auth_users.get(user);
        let hash: &str = match stored {
            Some(h) => h,
            None => dummy_hash(),
        };
        let key: [u8; 32] = {
            let mut h = sha2::Sha256::new();
            for part in [user, "\0", password, "\0", hash] {
                h.update(part.as_bytes());
            }
            h.finalize().into()
        };
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if stored.is_some() && verified.contains_key(&key) {
            return true;
        }
        drop(verified);
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && stored.is_some();
        if ok {
            verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: a few users and rotations at most; forget everything rather than grow.
            if verified.len() >= 64 {
                verified.clear();
            }
            verified.insert(key, ());
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).unwrap();
        WebConfig::load(&path)
    }

    #[test]
    fn basic_auth_with_bcrypt() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let config = load(&format!("basic_auth_users:\n  prom: '{hash}'\n")).unwrap();
        assert!(config.requires_auth());
        let auth = Authenticator::default();
        assert!(auth.check(&config, "prom", "s3cret"));
        assert!(auth.check(&config, "prom", "s3cret"), "remembered");
        assert!(!auth.check(&config, "prom", "wrong"));
        assert!(!auth.check(&config, "nobody", "s3cret"));
    }

    #[test]
    fn bad_files_get_clear_errors() {
        assert!(load("").unwrap().tls_server_config.is_none());
        for (text, needle) in [
            ("bogus: 1\n", "unknown field"),
            ("basic_auth_users:\n  prom: plaintext\n", "not a bcrypt hash"),
            ("http_server_config:\n  headers:\n    Set-Cookie: x\n", "cannot be set"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
                "client_ca_file",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
                "min_version",
            ),
        ] {
            let err = load(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn the_shipped_example_loads_and_its_hash_matches_its_comment() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/web-config.yml");
        let config = WebConfig::load(&path).unwrap();
        assert!(config.tls_server_config.is_some());
        assert!(Authenticator::default().check(&config, "prometheus", "change-me"));
    }

    #[test]
    fn the_dummy_hash_is_a_valid_bcrypt_hash() {
        assert!(dummy_hash().parse::<bcrypt::HashParts>().is_ok());
        assert!(!bcrypt::verify("", dummy_hash()).unwrap());
    }
}
