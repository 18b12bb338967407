//! The main listener: accept, TLS handshake (unless h2c), HTTP/2, the
//! request path of [`crate::http::service`], graceful drain. One span per
//! connection (peer, SNI, ALPN, TLS version and, under mutual TLS, the
//! client certificate's CN and fingerprint); a failed handshake or a broken
//! connection is logged at debug, counted by reason in
//! [`crate::tls::HandshakeStats`] and dropped, never unwrapped. The verified
//! client identity ([`ClientIdentity`]) is put into every request's
//! extensions. A connection that negotiated ALPN `acme-tls/1` (an ACME
//! TLS-ALPN-01 validation, [`crate::tls::acme`]) is closed right after its
//! handshake: HTTP/2 is never served on it.

use crate::{
    Edge, EdgeError, Transport,
    http::{EdgeService, auth::PeerAddr, service},
    shutdown,
    tls::{ClientIdentity, HandshakeFailure, HandshakeStats, acme::ACME_TLS_ALPN},
};
use hyper::server::conn::http2;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;
use tracing::{Instrument, Span, field::Empty};

/// HTTP/2 PING interval towards clients: a peer that vanished without a
/// FIN or RST (a dropped laptop, a NAT that forgot us) is noticed, and its
/// streams to the core are dropped, instead of waiting on TCP.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a PING may go unanswered before the connection is closed.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for the close_notify of an ACME validation connection.
const ACME_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `edge` on `listener` (already bound) until `shutdown` fires, then
/// stops accepting, sends GOAWAY and drains in-flight streams for at most
/// `edge.shutdown_grace`. Returns once every connection task has ended.
pub async fn serve(
    listener: TcpListener,
    edge: Edge,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let local = listener.local_addr().map_err(EdgeError::Listener)?;
    let service = service(&edge);
    let tls = match edge.transport() {
        Transport::Tls(config) => Some(TlsAcceptor::from(config.clone())),
        Transport::Insecure => None,
    };
    let handshake_timeout = edge.config().tls.handshake_timeout;
    let tracker = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    edge.readiness().set_serving(true);
    tracing::info!(%local, tls = tls.is_some(), core = edge.core().address(), "edge listening");

    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Per-connection failures (reset before accept, EMFILE): log,
                // back off a moment so a persistent one cannot spin, go on.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let span = tracing::info_span!(
            "conn",
            %peer,
            sni = Empty,
            alpn = Empty,
            tls = Empty,
            client_cn = Empty,
            client_sha256 = Empty
        );
        let conn = Conn {
            peer,
            service: service.clone(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
            stats: edge.handshake_stats().clone(),
        };
        let tls = tls.clone();
        tracker.spawn(conn.run(tcp, tls, handshake_timeout).instrument(span));
    }

    edge.readiness().set_serving(false);
    drop(listener);
    tracing::info!(%local, "edge stopped accepting");
    shutdown::drain(&tracker, edge.config().edge.shutdown_grace, &hard_stop).await;
    Ok(())
}

/// What one connection task needs.
struct Conn {
    /// The client's address, for the auth layer's audit log and failure budget.
    peer: std::net::SocketAddr,
    service: EdgeService,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    stats: Arc<HandshakeStats>,
}

impl Conn {
    async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>, handshake_timeout: Duration) {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let Some(acceptor) = tls else {
            return self.serve_h2(tcp, None).await;
        };
        let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp));
        let stream = tokio::select! {
            result = handshake => match result {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    let reason = HandshakeFailure::of_io_error(&error);
                    self.stats.record(reason);
                    return tracing::debug!(%error, %reason, "TLS handshake failed");
                }
                Err(_) => {
                    self.stats.record(HandshakeFailure::Timeout);
                    return tracing::debug!(?handshake_timeout, "TLS handshake timed out");
                }
            },
            _ = self.shutdown.cancelled() => return,
        };
        let (_, session) = stream.get_ref();
        let span = Span::current();
        span.record("sni", session.server_name().unwrap_or("-"));
        let alpn = session.alpn_protocol().map(String::from_utf8_lossy);
        span.record("alpn", alpn.as_deref().unwrap_or("-"));
        if let Some(version) = session.protocol_version() {
            span.record("tls", version.as_str().unwrap_or("?"));
        }
        if session.alpn_protocol() == Some(ACME_TLS_ALPN) {
            // A TLS-ALPN-01 validation: the handshake was the answer. Never
            // serve HTTP on it.
            tracing::debug!("ACME TLS-ALPN-01 validation handshake done; closing");
            let mut stream = stream;
            let _ = tokio::time::timeout(ACME_CLOSE_TIMEOUT, stream.shutdown()).await;
            return;
        }
        let identity = ClientIdentity::of_connection(session);
        if let Some(identity) = &identity {
            span.record("client_cn", identity.common_name.as_deref().unwrap_or("-"));
            span.record("client_sha256", identity.sha256.as_str());
        }
        self.serve_h2(stream, identity).await;
    }

    /// Serves HTTP/2 on `io`; every request carries `identity` (the
    /// verified client certificate's) in its extensions.
    async fn serve_h2<I>(self, io: I, identity: Option<ClientIdentity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let executor = SpanExecutor {
            span: Span::current(),
            tracker: self.tracker.clone(),
        };
        let mut builder = http2::Builder::new(executor);
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
        let used = Arc::new(AtomicBool::new(false));
        let peer = PeerAddr(self.peer);
        let service = self.service.map_request({
            let used = used.clone();
            move |mut request: http::Request<hyper::body::Incoming>| {
                used.store(true, Ordering::Release);
                request.extensions_mut().insert(peer);
                if let Some(identity) = &identity {
                    request.extensions_mut().insert(identity.clone());
                }
                request
            }
        });
        let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        shutdown::drive(conn, &self.shutdown, &self.hard_stop, Some(&used)).await;
    }
}

/// Runs hyper's per-stream tasks inside the connection's span and under the
/// listener's tracker, so request logs nest under their connection and the
/// drain waits for them.
#[derive(Clone)]
struct SpanExecutor {
    span: Span,
    tracker: TaskTracker,
}

impl<F> hyper::rt::Executor<F> for SpanExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.tracker.spawn(future.instrument(self.span.clone()));
    }
}
