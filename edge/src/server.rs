//! The main listener: through the one accept loop ([`crate::conn::accept`],
//! caps and fd exhaustion), an optional PROXY protocol header, the TLS
//! handshake (unless h2c) within `tls.handshake_timeout` (a deadline for the
//! whole handshake, so a client dribbling bytes gains nothing), HTTP/2 with
//! keepalive PINGs, the request path of [`crate::http::service`], and the
//! connection's lifecycle ([`crate::conn::lifecycle`]: first-request and
//! idle timeouts, eviction, premature resets, graceful drain).
//!
//! One span per connection (peer, SNI, ALPN, TLS version and, under mutual
//! TLS, the client certificate's CN and fingerprint); a failed handshake or
//! a broken connection is logged at debug, counted by reason in
//! [`crate::tls::HandshakeStats`] and dropped, never unwrapped. The verified
//! client identity ([`ClientIdentity`]) is put into every request's
//! extensions. A connection that negotiated ALPN `acme-tls/1` (an ACME
//! TLS-ALPN-01 validation, [`crate::tls::acme`]) is closed right after its
//! handshake: HTTP/2 is never served on it.

use crate::{
    Edge, EdgeError, Transport,
    conn::{
        ConnGuard,
        accept::{self, Accepted, ConnCtx},
        h2_body::RecvBody,
        h2_serve::{H2Connection, KeepAliveConfig, Streams},
        lifecycle, proxy,
    },
    http::{EdgeService, RequestContext, service},
    tls::{ClientIdentity, HandshakeFailure, HandshakeStats, acme::ACME_TLS_ALPN},
};
use http::Request;
use std::{net::SocketAddr, pin::pin, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, Span, field::Empty};
use vibectl_config::ConnectionsConfig;

/// Longest wait for the close_notify of an ACME validation connection.
const ACME_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `edge` on `listener` (already bound) until `shutdown` fires, then
/// stops accepting, sends GOAWAY and drains in-flight streams for at most
/// `edge.shutdown_grace`. Returns once every connection task has ended.
pub async fn serve(
    listener: TcpListener,
    edge: Edge,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), EdgeError> {
    let local = listener.local_addr().map_err(EdgeError::Listener)?;
    let tls = match edge.transport() {
        Transport::Tls(config) => Some(TlsAcceptor::from(config.clone())),
        Transport::Insecure => None,
    };
    let config = edge.config();
    let service = service(&edge);
    let shared = Arc::new(Shared {
        tls,
        handshake_timeout: config.tls.handshake_timeout,
        connections: config.connections.clone(),
        stats: edge.handshake_stats().clone(),
    });
    let table = edge.connections().clone();
    edge.readiness().set_serving(true);
    tracing::info!(
        %local, tls = shared.tls.is_some(), core = edge.core().address(),
        max_connections = table.max_total(), "edge listening"
    );
    let grace = config.edge.shutdown_grace;
    accept::serve(
        listener,
        "main",
        table,
        shutdown,
        grace,
        move |a: Accepted| {
            let span = tracing::info_span!(
                "conn",
                peer = %a.peer,
                client = Empty,
                sni = Empty,
                alpn = Empty,
                tls = Empty,
                client_cn = Empty,
                client_sha256 = Empty
            );
            let conn = Conn {
                peer: a.peer,
                guard: a.guard,
                ctx: a.ctx,
                shared: shared.clone(),
                service: service.clone(),
            };
            conn.run(a.tcp).instrument(span)
        },
    )
    .await;
    edge.readiness().set_serving(false);
    tracing::info!(%local, "edge stopped");
    Ok(())
}

/// What every connection of the listener shares.
struct Shared {
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    connections: ConnectionsConfig,
    stats: Arc<HandshakeStats>,
}

/// One connection task.
struct Conn {
    /// The client's address (from the PROXY header when one was read), for
    /// the auth layer's audit log and failure budget.
    peer: SocketAddr,
    guard: ConnGuard,
    ctx: ConnCtx,
    shared: Arc<Shared>,
    service: EdgeService,
}

impl Conn {
    async fn run(mut self, tcp: TcpStream) {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let state = self.guard.state().clone();
        let deadline = tokio::time::Instant::now() + self.shared.handshake_timeout;
        let shutdown = self.ctx.shutdown.clone();
        // Before HTTP: PROXY header and TLS handshake, within one deadline,
        // abandoned at eviction or shutdown. Boxed: inline, its state (the
        // TLS handshake's, 2.7 KB) would be reserved in the task for the
        // connection's whole life.
        let setup = Box::pin(async {
            let tcp = self.proxy_header(tcp).await?;
            handshake(&self.shared, tcp).await
        });
        let stream = tokio::select! {
            result = tokio::time::timeout_at(deadline, setup) => match result {
                Ok(Some(stream)) => stream,
                Ok(None) => return,
                Err(_) => {
                    self.shared.stats.record(HandshakeFailure::Timeout);
                    let timeout = self.shared.handshake_timeout;
                    return tracing::debug!(?timeout, "TLS handshake timed out");
                }
            },
            _ = state.closing().cancelled() => return,
            _ = shutdown.cancelled() => return,
        };
        state.mark_ready();
        // The TLS stream stays in its box: moved out, it would sit in the
        // task beside the box, which is only freed when the task ends.
        match stream {
            Io::Plain(tcp) => self.serve_h2(tcp, None).await,
            Io::Tls(tls, identity) => self.serve_h2(tls, identity).await,
        }
    }

    /// With the PROXY protocol on: the client address from the header.
    /// `None` when the connection is refused.
    async fn proxy_header(&mut self, mut tcp: TcpStream) -> Option<TcpStream> {
        let connections = &self.shared.connections;
        if !connections.proxy_protocol {
            return Some(tcp);
        }
        let trusted = &connections.proxy_protocol_trusted;
        match proxy::read_client(&mut tcp, self.peer, trusted).await {
            Ok(client) => {
                if client != self.peer {
                    Span::current().record("client", tracing::field::display(client));
                    self.peer = client;
                    if !self.guard.rekey(client.ip()) {
                        return None;
                    }
                }
                Some(tcp)
            }
            Err(error) => {
                self.guard.stats().proxy_refused();
                tracing::debug!(%error, "connection refused");
                None
            }
        }
    }

    /// Serves HTTP/2 on `io` ([`h2_serve`]); every request carries the peer
    /// and `identity` (the verified client certificate's) in its
    /// extensions, and counts as in flight on the connection until its
    /// response ends. `io` is small (a socket, or a boxed TLS stream): an
    /// `async fn` keeps its arguments for its whole life.
    async fn serve_h2<I>(self, io: I, identity: Option<ClientIdentity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connections = &self.shared.connections;
        let keepalive = (!connections.keepalive_interval.is_zero()).then_some(KeepAliveConfig {
            interval: connections.keepalive_interval,
            timeout: connections.keepalive_timeout,
        });
        let peer = self.peer;
        let streams = Streams {
            state: self.guard.state().clone(),
            max_premature_percent: self.guard.limits().max_premature_reset_percent,
            prepare: move |request: &mut Request<RecvBody>| {
                request
                    .extensions_mut()
                    .insert(RequestContext::new(peer, identity.clone()));
            },
        };
        let conn = pin!(H2Connection::new(io, self.service, keepalive, streams));
        let limits = self.guard.limits().clone();
        lifecycle::drive(conn, self.guard.state(), &limits, &self.ctx).await;
    }
}

/// The TLS handshake (none on h2c); `None` when it failed or the
/// connection was an ACME validation.
async fn handshake(shared: &Shared, tcp: TcpStream) -> Option<Io> {
    let Some(acceptor) = &shared.tls else {
        return Some(Io::Plain(tcp));
    };
    let stream = match acceptor.accept(tcp).await {
        Ok(stream) => stream,
        Err(error) => {
            let reason = HandshakeFailure::of_io_error(&error);
            shared.stats.record(reason);
            tracing::debug!(%error, %reason, "TLS handshake failed");
            return None;
        }
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
        return None;
    }
    let identity = ClientIdentity::of_connection(session);
    if let Some(identity) = &identity {
        span.record("client_cn", identity.common_name.as_deref().unwrap_or("-"));
        span.record("client_sha256", identity.sha256.as_str());
    }
    Some(Io::Tls(Box::new(stream), identity))
}

/// A connection after its handshake.
enum Io {
    Plain(TcpStream),
    Tls(
        Box<tokio_rustls::server::TlsStream<TcpStream>>,
        Option<ClientIdentity>,
    ),
}
