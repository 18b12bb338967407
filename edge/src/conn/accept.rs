//! The one accept loop behind every listener (TLS/h2c, admin, HTTP-01):
//! admission through the [`ConnTable`] caps, and file-descriptor
//! exhaustion handled as nginx and Envoy operators expect. The table's cap
//! is below the descriptor limit ([`fd::connection_cap`]), so accept should
//! not fail; when it does (EMFILE/ENFILE: other descriptors, or evicted
//! sockets not closed yet) the loop sheds the connections idle the longest,
//! releases its spare descriptor ([`fd::Spare`]) so that the pending client
//! is accepted at once, backs off only if that is not enough (10 ms,
//! doubling to 100 ms; 1 s for other errors) and logs once per interval
//! with a count, never once per failure. Then, at shutdown, the drain.

use crate::{
    conn::{ConnGuard, ConnTable, fd},
    shutdown,
};
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Shortest and longest pause after a failed accept.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// Longest pause while descriptors ran out: the shed connections free
/// theirs within milliseconds.
const FD_BACKOFF_MAX: Duration = Duration::from_millis(100);
/// Idle connections closed per failed accept while descriptors are out.
const SHED_BATCH: usize = 8;
/// At most one log line per this interval about failed or refused accepts.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What a connection task gets from the loop.
pub(crate) struct Accepted {
    /// The socket.
    pub tcp: TcpStream,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Its place in the table (dropping it frees the place).
    pub guard: ConnGuard,
    /// The listener's shutdown signals and task tracker.
    pub ctx: ConnCtx,
}

/// The listener-wide signals a connection task needs.
#[derive(Clone)]
pub(crate) struct ConnCtx {
    /// Every task of the listener (connections and their streams).
    pub tracker: TaskTracker,
    /// Graceful shutdown (GOAWAY, drain).
    pub shutdown: CancellationToken,
    /// End of the grace period: drop what is left.
    pub hard_stop: CancellationToken,
}

/// A log line at most once per [`LOG_INTERVAL`], counting the rest.
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(n)`: log now, `n` events were not logged since the last line.
    fn tick(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now < t + LOG_INTERVAL) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Accepts on `listener` until `shutdown` fires, running `handle` for each
/// admitted connection under the listener's tracker; then stops accepting
/// and drains in-flight connections for at most `grace`.
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    name: &'static str,
    table: Arc<ConnTable>,
    shutdown: CancellationToken,
    grace: Duration,
    handle: F,
) where
    F: Fn(Accepted) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ctx = ConnCtx {
        tracker: TaskTracker::new(),
        shutdown: shutdown.clone(),
        hard_stop: CancellationToken::new(),
    };
    let mut backoff = BACKOFF.0;
    let (mut failures, mut refusals) = (Throttle::new(), Throttle::new());
    let mut spare = fd::Spare::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                let out_of_fds = fd::is_fd_exhaustion(&error);
                table.stats().accept_failed(out_of_fds);
                let shed = if out_of_fds {
                    table.shed_idle(SHED_BATCH)
                } else {
                    0
                };
                let retry_now = out_of_fds && spare.release();
                if let Some(more) = failures.tick() {
                    tracing::warn!(
                        listener = name, %error, shed_idle = shed, more_failures = more,
                        open = table.open(), "accept failed: descriptors ran out or the system refused"
                    );
                }
                if retry_now {
                    continue;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                let max = if out_of_fds {
                    FD_BACKOFF_MAX
                } else {
                    BACKOFF.1
                };
                backoff = (backoff * 2).min(max);
                continue;
            }
        };
        backoff = BACKOFF.0;
        spare.restore();
        let guard = match table.admit(peer.ip()) {
            Ok(guard) => guard,
            Err(refusal) => {
                if let Some(more) = refusals.tick() {
                    tracing::warn!(
                        listener = name, %peer, reason = refusal.as_str(), more_refused = more,
                        open = table.open(),
                        "connection refused at accept (a cap with none idle, or its address's rate \
                         or handshakes in progress)"
                    );
                }
                continue;
            }
        };
        let accepted = Accepted {
            tcp,
            peer,
            guard,
            ctx: ctx.clone(),
        };
        ctx.tracker.spawn(handle(accepted));
    }
    drop(listener);
    tracing::info!(listener = name, "stopped accepting");
    shutdown::drain(&ctx.tracker, grace, &ctx.hard_stop).await;
}

impl Throttle {
    fn new() -> Self {
        Self {
            last: None,
            suppressed: 0,
        }
    }
}
