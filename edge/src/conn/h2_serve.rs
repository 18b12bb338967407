//! The server side of a client's HTTP/2 connection, driven with the `h2`
//! crate directly: every stream is polled inside the connection's own task
//! ([`super::h2_stream`]), beside the connection itself, so a call costs no
//! spawned task, no wake-up between a stream task and the connection task,
//! and its response frames are written with the connection's next flush.
//! What hyper's server gave is kept: its SETTINGS (windows, frame size,
//! header list size, concurrent streams, reset-stream caps), keepalive
//! PINGs (one every `interval`, the connection closed when its PONG does
//! not come within `timeout`), the `date` header, and
//! graceful shutdown (GOAWAY, in-flight streams finish) through
//! [`super::lifecycle::Drain`].

use crate::conn::{
    ConnState, h2_body::RecvBody, h2_stream::StreamTask, headers_seen::HeadersSeen,
    lifecycle::Drain, side_wake::SideWake, stream_set::StreamSet, streams::StreamGuard,
    wake_gate::WakeGate,
};
use bytes::Bytes;
use h2::{
    Ping, PingPong,
    server::{Builder, Connection, Handshake},
};
use http::{Request, Response, header::CONTENT_LENGTH};
use http_body::Body;
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{Instant, Sleep},
};
use tower::{Service, ServiceExt, util::Oneshot};

/// hyper's server defaults, kept as they were.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONN_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const MAX_CONCURRENT_STREAMS: u32 = 200;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// New streams taken in one poll before the task yields.
const ACCEPT_BUDGET: usize = 32;

/// Why a connection ended with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H2Error {
    #[error("HTTP/2: {0}")]
    H2(#[from] h2::Error),
    #[error("keepalive PING not answered in time")]
    KeepAliveTimedOut,
}

/// Keepalive PINGs: interval and timeout (`connections.keepalive_*`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepAliveConfig {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

/// What each stream needs from its connection: the premature-reset guard's
/// state and threshold, and a hook that fills the request's extensions.
pub(crate) struct Streams<P> {
    pub(crate) state: Arc<ConnState>,
    pub(crate) max_premature_percent: u8,
    pub(crate) prepare: P,
}

/// One client connection (see the module doc); a future that ends with it.
pub(crate) struct H2Connection<I, S, B, P>
where
    S: Service<Request<RecvBody>>,
{
    phase: Phase<HeadersSeen<I>>,
    /// HEADERS frames read (see [`HeadersSeen`]), and streams accepted.
    headers_seen: Arc<AtomicU64>,
    accepted: u64,
    keepalive: Option<KeepAliveConfig>,
    close_pending: bool,
    service: S,
    streams: Streams<P>,
    in_flight: StreamSet<StreamTask<Oneshot<S, Request<RecvBody>>, B>>,
    /// The waker the `h2` connection gets (see [`WakeGate`]).
    gate: (Arc<WakeGate>, Waker),
}

enum Phase<I> {
    Handshaking(Handshake<I, Bytes>),
    Serving {
        conn: Connection<I, Bytes>,
        ping: Option<KeepAlive>,
        /// Polls `ping` only when its timer or PONG woke the task.
        ping_wake: SideWake,
    },
    Closed,
}

impl<I, S, B, P> H2Connection<I, S, B, P>
where
    I: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<RecvBody>, Response = Response<B>, Error = Infallible> + Clone,
{
    /// Starts the server handshake on `io` (hyper's SETTINGS).
    pub(crate) fn new(
        io: I,
        service: S,
        keepalive: Option<KeepAliveConfig>,
        streams: Streams<P>,
    ) -> Self {
        let mut builder = Builder::new();
        builder
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_header_list_size(MAX_HEADER_LIST)
            .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
        let (io, headers_seen) = HeadersSeen::new(io);
        Self {
            phase: Phase::Handshaking(builder.handshake(io)),
            headers_seen,
            accepted: 0,
            keepalive,
            close_pending: false,
            service,
            streams,
            in_flight: StreamSet::new(),
            gate: WakeGate::new(),
        }
    }
}

impl<I, S, B, P> Drain for H2Connection<I, S, B, P>
where
    Self: Future<Output = Result<(), H2Error>>,
    I: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<RecvBody>> + Unpin,
    P: Unpin,
{
    type Error = H2Error;

    fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.get_mut();
        match &mut this.phase {
            Phase::Serving { conn, .. } if !this.close_pending => conn.graceful_shutdown(),
            _ => {}
        }
        this.close_pending = true;
    }
}

impl<I, S, B, P> Future for H2Connection<I, S, B, P>
where
    I: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<RecvBody>, Response = Response<B>, Error = Infallible> + Clone + Unpin,
    S::Future: Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
    P: Fn(&mut Request<RecvBody>) + Unpin,
{
    type Output = Result<(), H2Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Phase::Handshaking(handshake) = &mut this.phase {
            let mut conn = match Pin::new(handshake).poll(cx) {
                Poll::Ready(Ok(conn)) => conn,
                Poll::Ready(Err(error)) => {
                    this.phase = Phase::Closed;
                    return Poll::Ready(Err(error.into()));
                }
                Poll::Pending => return Poll::Pending,
            };
            if this.close_pending {
                conn.graceful_shutdown();
            }
            let ping = this
                .keepalive
                .and_then(|config| Some(KeepAlive::new(conn.ping_pong()?, config)));
            this.phase = Phase::Serving {
                conn,
                ping,
                ping_wake: SideWake::new(),
            };
        }
        let Phase::Serving {
            conn,
            ping,
            ping_wake,
        } = &mut this.phase
        else {
            return Poll::Ready(Ok(()));
        };
        if let Some(ping) = ping
            && ping_wake.poll_if_woken(cx, |cx| ping.poll(cx)).is_ready()
        {
            tracing::debug!("keepalive timed out; closing the connection");
            conn.abrupt_shutdown(h2::Reason::NO_ERROR);
        }
        let mut budget = ACCEPT_BUDGET;
        let (gate, gate_waker) = &this.gate;
        let gated = &mut Context::from_waker(gate_waker);
        let mut took = false;
        loop {
            // Streams first: the frames they queue go out with the
            // connection's flush below, so the wake-ups they give the
            // connection are dropped.
            gate.hold(cx.waker());
            this.in_flight.poll_woken(cx);
            let dropped = gate.release();
            // The connection was polled (to `Pending`) by the accept just
            // before: unless a wake-up was dropped since, or a stream may
            // be waiting, polling it again would find nothing to do.
            if took && !dropped && this.headers_seen.load(Ordering::Acquire) == this.accepted {
                return Poll::Pending;
            }
            match conn.poll_accept(gated) {
                Poll::Ready(Some(Ok((request, reply)))) => {
                    let (parts, recv) = request.into_parts();
                    let length = parts
                        .headers
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse().ok());
                    let mut request = Request::from_parts(parts, RecvBody::new(recv, length));
                    (this.streams.prepare)(&mut request);
                    let s = &this.streams;
                    let guard = StreamGuard::open(&s.state, s.max_premature_percent);
                    let call = this.service.clone().oneshot(request);
                    this.in_flight.push(StreamTask::new(reply, call, guard));
                    this.accepted += 1;
                    took = true;
                    budget -= 1;
                    if budget == 0 {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    this.phase = Phase::Closed;
                    return Poll::Ready(Err(error.into()));
                }
                Poll::Ready(None) => {
                    let timed_out = ping.as_ref().is_some_and(KeepAlive::timed_out);
                    this.phase = Phase::Closed;
                    return Poll::Ready(if timed_out {
                        Err(H2Error::KeepAliveTimedOut)
                    } else {
                        Ok(())
                    });
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Keepalive PINGs on one connection.
struct KeepAlive {
    pings: PingPong,
    config: KeepAliveConfig,
    sleep: Pin<Box<Sleep>>,
    /// A PING is out and its PONG not back yet.
    waiting: bool,
    timed_out: bool,
}

impl KeepAlive {
    fn new(pings: PingPong, config: KeepAliveConfig) -> Self {
        let sleep = Box::pin(tokio::time::sleep(config.interval));
        Self {
            pings,
            config,
            sleep,
            waiting: false,
            timed_out: false,
        }
    }

    fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// Ready (once) when the connection must close: a PING went unanswered.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.timed_out {
            return Poll::Pending;
        }
        if self.waiting {
            self.poll_pong(cx);
        }
        while self.sleep.as_mut().poll(cx).is_ready() {
            if self.waiting {
                self.timed_out = true;
                return Poll::Ready(());
            }
            if let Err(error) = self.pings.send_ping(Ping::opaque()) {
                tracing::debug!(%error, "cannot send a keepalive PING");
                return Poll::Pending;
            }
            self.waiting = true;
            let deadline = Instant::now() + self.config.timeout;
            self.sleep.as_mut().reset(deadline);
            // Registers for the PONG.
            self.poll_pong(cx);
        }
        Poll::Pending
    }

    /// When the PONG is back: the next PING after a whole interval.
    fn poll_pong(&mut self, cx: &mut Context<'_>) {
        if self.pings.poll_pong(cx).is_ready() {
            self.waiting = false;
            let next = Instant::now() + self.config.interval;
            self.sleep.as_mut().reset(next);
        }
    }
}
