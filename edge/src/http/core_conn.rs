//! The one HTTP/2 connection to the core, driven with the `h2` crate
//! directly (no pool, no per-request task in the steady state): a request's
//! headers and its first body frame are queued together, so a unary call
//! reaches the core in one write instead of two (hyper's client waits for
//! stream capacity before its first DATA frame, which costs a second write,
//! a second wake-up of the core and a spawned task per call). Only a body
//! with more frames than the first gets a task that streams the rest with
//! flow control. The connection is opened on first use, bounded by the
//! connect timeout; when it ends (the core restarted, GOAWAY) the next
//! request opens a new one.

use crate::http::{BoxError, EdgeBody, body::poll_now};
use bytes::Bytes;
use h2::{
    SendStream,
    client::{self, SendRequest},
};
use http::{Request, Response};
use http_body::{Body, Frame};
use std::{
    future::poll_fn,
    io,
    path::PathBuf,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpStream, UnixStream},
};

/// Stream and connection windows and buffers: hyper's client defaults, so
/// flow control behaves as before.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONN_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Framing overhead of small response DATA frames received from the core
/// and not yet forwarded (h2 closes the connection with GOAWAY
/// `ENHANCE_YOUR_CALM` past it; its default is half the connection window,
/// about 12,000 frames). The core is trusted, and 10,000 long streams each
/// trickling small chunks through a moment of CPU starvation must not cost
/// every stream on the connection: 64 MiB is some 300,000 small frames.
const DATA_FRAME_BUDGET: usize = 64 * 1024 * 1024;

/// Where to connect.
#[derive(Debug, Clone)]
pub enum Dial {
    /// `host:port`.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// The live connection's request handle, and whether its task still runs.
struct Live {
    tx: SendRequest<Bytes>,
    alive: Arc<AtomicBool>,
}

/// The connection to the core (see the module doc).
pub struct CoreConn {
    dial: Dial,
    connect_timeout: Duration,
    live: Mutex<Option<Live>>,
    /// One connect at a time: concurrent first requests share it.
    connecting: tokio::sync::Mutex<()>,
}

impl CoreConn {
    /// A connection to `dial`, opened on first use.
    pub fn new(dial: Dial, connect_timeout: Duration) -> Self {
        Self {
            dial,
            connect_timeout,
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends `request` and waits for the response headers. The first body
    /// frame goes out with the headers when it is ready at once.
    pub async fn send(&self, request: Request<EdgeBody>) -> Result<Response<CoreBody>, BoxError> {
        let mut tx = self.ready().await?;
        let (parts, mut body) = request.into_parts();
        let end = body.is_end_stream();
        let (response, mut stream) = tx.send_request(Request::from_parts(parts, ()), end)?;
        if !end {
            // The first frame inline: for a unary call, the whole body.
            let first = poll_now(&mut body).await;
            let more = match first {
                Poll::Ready(Some(Ok(frame))) if frame.is_data() && !body.is_end_stream() => {
                    // Look one frame ahead: when the client's END_STREAM has
                    // come (an empty frame after the message), it goes out on
                    // the message's DATA frame. The core's h2 counts small
                    // DATA frames that are not the stream's last against a
                    // per-connection budget; a final one costs nothing.
                    match poll_now(&mut body).await {
                        Poll::Ready(None) => send_frame(&mut stream, Some(Ok(frame)), true)?,
                        // tonic's clients end a message with an empty DATA
                        // frame flagged END_STREAM: the flag goes on the
                        // message instead (one frame fewer for the core).
                        Poll::Ready(Some(Ok(next)))
                            if body.is_end_stream()
                                && next.data_ref().is_some_and(Bytes::is_empty) =>
                        {
                            send_frame(&mut stream, Some(Ok(frame)), true)?
                        }
                        next => {
                            send_frame(&mut stream, Some(Ok(frame)), false)?;
                            match next {
                                Poll::Ready(next) => {
                                    send_frame(&mut stream, next, body.is_end_stream())?
                                }
                                Poll::Pending => true,
                            }
                        }
                    }
                }
                Poll::Ready(frame) => send_frame(&mut stream, frame, body.is_end_stream())?,
                Poll::Pending => true,
            };
            if more {
                tokio::spawn(pump(body, stream));
            }
        }
        let response = response.await?;
        Ok(response.map(|recv| CoreBody::new(recv, None)))
    }

    /// A request handle ready for one more stream, connecting if needed.
    async fn ready(&self) -> Result<SendRequest<Bytes>, BoxError> {
        if let Some(tx) = self.cached() {
            match tx.ready().await {
                Ok(tx) => return Ok(tx),
                Err(error) => {
                    tracing::debug!(%error, "core connection unusable; reconnecting");
                    self.forget();
                }
            }
        }
        let _one = self.connecting.lock().await;
        if let Some(tx) = self.cached() {
            return Ok(tx.ready().await?);
        }
        let tx = self.connect().await?;
        Ok(tx.ready().await?)
    }

    fn cached(&self) -> Option<SendRequest<Bytes>> {
        let live = self.live.lock().ok()?;
        let live = live.as_ref()?;
        live.alive.load(Ordering::Acquire).then(|| live.tx.clone())
    }

    fn forget(&self) {
        if let Ok(mut live) = self.live.lock() {
            *live = None;
        }
    }

    async fn connect(&self) -> Result<SendRequest<Bytes>, BoxError> {
        let timeout = self.connect_timeout;
        let io = match tokio::time::timeout(timeout, dial(&self.dial)).await {
            Ok(io) => io?,
            Err(_) => return Err(format!("no connection within {timeout:?}").into()),
        };
        let (tx, conn) = client::Builder::new()
            .enable_push(false)
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .max_header_list_size(MAX_HEADER_LIST)
            .data_frame_budget(DATA_FRAME_BUDGET)
            .handshake::<_, Bytes>(io)
            .await?;
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, "core connection ended");
            }
            flag.store(false, Ordering::Release);
        });
        if let Ok(mut live) = self.live.lock() {
            *live = Some(Live {
                tx: tx.clone(),
                alive,
            });
        }
        Ok(tx)
    }
}

async fn dial(dial: &Dial) -> io::Result<CoreStream> {
    match dial {
        Dial::Tcp(address) => {
            let stream = TcpStream::connect(address.as_str()).await?;
            stream.set_nodelay(true)?;
            Ok(CoreStream::Tcp(stream))
        }
        Dial::Unix(path) => Ok(CoreStream::Unix(UnixStream::connect(path).await?)),
    }
}

/// Queues one request body frame; whether more frames may follow.
fn send_frame(
    stream: &mut SendStream<Bytes>,
    frame: Option<Result<Frame<Bytes>, BoxError>>,
    end: bool,
) -> Result<bool, BoxError> {
    match frame {
        None => {
            stream.send_data(Bytes::new(), true)?;
            Ok(false)
        }
        Some(Err(error)) => {
            stream.send_reset(h2::Reason::CANCEL);
            Err(error)
        }
        Some(Ok(frame)) => match frame.into_data() {
            Ok(data) => {
                stream.send_data(data, end)?;
                Ok(!end)
            }
            Err(frame) => {
                let trailers = frame.into_trailers().unwrap_or_default();
                stream.send_trailers(trailers)?;
                Ok(false)
            }
        },
    }
}

/// Streams the rest of a request body with flow control; a reset from the
/// core, or a failed client body, ends it (resetting the stream).
async fn pump(mut body: EdgeBody, mut stream: SendStream<Bytes>) {
    loop {
        // `None`: the core reset the stream (or the connection failed).
        let frame = poll_fn(|cx| {
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            stream.reserve_capacity(1);
            while stream.capacity() == 0 {
                match ready!(stream.poll_capacity(cx)) {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Poll::Ready(None),
                }
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        let Some(frame) = frame else { return };
        let end = body.is_end_stream();
        match send_frame(&mut stream, frame, end) {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::debug!(%error, "request body to the core ended early");
                return;
            }
        }
    }
}

/// The core's response body: DATA frames (their flow-control window given
/// back as they are read), then the trailers.
pub type CoreBody = crate::conn::h2_body::RecvBody;

/// A connection to the core.
pub enum CoreStream {
    /// Loopback TCP.
    Tcp(TcpStream),
    /// A Unix socket.
    Unix(UnixStream),
}

impl AsyncRead for CoreStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for CoreStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::Unix(s) => s.is_write_vectored(),
        }
    }
}
