//! The listeners: one accept loop, shared by the main listener (the router) and storage's S3
//! listener, that accepts TCP connections (TLS when configured, via rustls), serves HTTP/1.1 with
//! upgrades (WebSocket), and shuts down gracefully — stop accepting, let in-flight requests finish
//! within the bound, then return. Rejects TLS handshakes that fail, quietly.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    service::{Service, service_fn},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    server::graceful::{GracefulShutdown, Watcher},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::watch,
};
use tokio_rustls::TlsAcceptor;

use super::router::{Router, handle};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("no private key found in {0}")]
    NoKey(String),
    #[error("TLS certificate and key do not work together: {0}")]
    Config(String),
}

/// Loads a PEM certificate chain and key into an acceptor (HTTP/1.1 only, via ALPN).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| TlsError::Read {
            path: p.display().to_string(),
            reason: e.to_string(),
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Read {
            path: cert.display().to_string(),
            reason: "no certificate in it".into(),
        });
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| TlsError::Read {
            path: key.display().to_string(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::NoKey(key.display().to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds a listener on `addr` (before anything heavier starts, so a taken port fails fast).
/// Connections the kernel queues before doska accepts them. std's 128 overflowed when 1,000
/// clients reconnected at once (bench/soak); the kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 1024;

pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's TcpListener::bind does on Unix: a restart may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve_io<I, S, B>(io: I, service: S, watcher: Watcher, what: &'static str)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    let builder = builder.http1_only();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, listener = what, "connection ended with an error");
    }
}

/// Serves the router until `shutdown` turns true, then drains for at most `drain`.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Arc<Router>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let service = move |remote: SocketAddr| {
        let router = router.clone();
        service_fn(move |req| {
            let router = router.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(router, req, remote).await) }
        })
    };
    accept(listener, tls, service, shutdown, drain, "http").await;
}

/// The accept loop every listener shares: takes connections (TLS when given, each handshake in its
/// own task so a slow client cannot stall accepting), serves HTTP/1.1 with upgrades through the
/// service `make` builds for each peer, and on `shutdown` stops accepting and lets in-flight
/// requests finish within `drain`.
pub async fn accept<M, S, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    make: M,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
    what: &'static str,
) where
    M: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, listener = what, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let watcher = graceful.watcher();
                let service = make(remote);
                match &tls {
                    None => {
                        tokio::spawn(serve_io(stream, service, watcher, what));
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                                Ok(Ok(tls_stream)) => serve_io(tls_stream, service, watcher, what).await,
                                Ok(Err(e)) => tracing::debug!(error = %e, %remote, listener = what, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%remote, listener = what, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!(listener = what, "all connections closed"),
        _ = tokio::time::sleep(drain) => tracing::warn!(listener = what, "shutdown timeout: closing remaining connections"),
    }
}
