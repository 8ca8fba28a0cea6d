//! The HTTP(S) server: an accept loop over hyper so that a fault can close one connection
//! without answering (`drop`, `lost_mount`), which a framework-level server cannot do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::faults::ConnKill;

/// Makes a self-signed certificate for `localhost`/`127.0.0.1`, writes it (PEM) to `path` and
/// returns an acceptor. Clients trust it by loading that file.
pub fn tls_acceptor(path: &Path) -> Result<TlsAcceptor, String> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| format!("certificate: {e}"))?;
    std::fs::write(path, ck.cert.pem()).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .map_err(|e| format!("tls: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Default certificate path: a per-process file in the temp directory.
pub fn default_cert_path() -> PathBuf {
    std::env::temp_dir().join(format!("veeam-vbr-sim-{}-{}.pem", std::process::id(), uuid::Uuid::new_v4().simple()))
}

/// Accepts connections until `shutdown` turns true, then closes every open connection.
pub async fn serve(listener: TcpListener, app: Router, tls: Option<TlsAcceptor>, shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let mut sd = shutdown.clone();
    loop {
        tokio::select! {
            _ = sd.changed() => break,
            acc = listener.accept() => {
                let Ok((stream, _)) = acc else { continue };
                let _ = stream.set_nodelay(true);
                let (app, tls, sd2) = (app.clone(), tls.clone(), shutdown.clone());
                conns.spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(stream).await {
                                connection(s, app, sd2).await;
                            }
                        }
                        None => connection(stream, app, sd2).await,
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Serves one connection; ends it (dropping it unanswered) when its `ConnKill` fires.
async fn connection<I>(io: I, app: Router, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (kill_tx, mut kill_rx) = watch::channel(false);
    let kill = ConnKill(kill_tx);
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(kill.clone());
        let mut app = app.clone();
        async move { app.call(req.map(Body::new)).await }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = kill_rx.changed() => {}
        _ = shutdown.changed() => {}
    }
}
