//! The response body of an admitted call: it holds the call's [`Hold`]
//! (its concurrency slots and its place in the in-flight gauge) for the
//! whole stream, releasing it when the stream ends or the client drops it,
//! and it is the edge's deadline backstop: [`BACKSTOP_GRACE`] after the
//! call's deadline it drops the core's stream (which cancels the call
//! there) and ends the call with `DEADLINE_EXCEEDED` trailers.

use super::{
    BoxError, EdgeBody,
    body::{FrameWatch, WatchedBody},
    context::Identity,
    grpc_status::{GrpcCode, status_headers},
};
use crate::{
    limits::{
        Permit,
        alarms::{Alarm, Alarms},
        deadline::{BACKSTOP_GRACE, CallDeadline, DeadlineSource},
    },
    metrics::InFlight,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use std::task::{Context, Poll};
use tokio::time::Instant;
use vibectl_proto::wire::{ANONYMOUS_SUBJECT, LIMIT_TYPE, LimitType};

/// The `DEADLINE_EXCEEDED` status (with `limit-type: timeout` when it is
/// the token's deadline) of a call that outlived `deadline`.
pub fn deadline_status(deadline: &CallDeadline, sub: &str) -> HeaderMap {
    let mut headers = status_headers(GrpcCode::DeadlineExceeded, &deadline.message(sub));
    if deadline.source == DeadlineSource::Token {
        headers.insert(
            LIMIT_TYPE,
            HeaderValue::from_static(LimitType::Timeout.as_str()),
        );
    }
    headers
}

/// What an admitted call holds until its response ends.
#[allow(dead_code, reason = "held only for their Drop")]
pub struct Hold {
    /// The call's permit (its concurrency slots).
    pub permit: Permit,
    /// Its place in `vibectl_concurrent_in_flight`.
    pub in_flight: Option<InFlight>,
}

/// The edge's own end of a call that outlived its deadline.
pub struct Backstop {
    alarm: Alarm,
    deadline: CallDeadline,
    /// Whose call (`None`: anonymous).
    who: Option<Identity>,
}

/// What an admitted call's response body holds ([`limited_body`]).
pub struct Limited {
    /// Released when the stream ends (or the body is dropped).
    _hold: Hold,
    backstop: Option<Backstop>,
}

/// The response body of an admitted call: frames pass unchanged; the
/// [`Hold`] is released at the end of the stream (or when the body is
/// dropped); past the backstop the core's stream is dropped and
/// `DEADLINE_EXCEEDED` trailers end the call.
pub type LimitedBody = WatchedBody<Limited>;

/// Wraps the core's response body of an admitted call.
pub fn limited_body(inner: EdgeBody, hold: Hold, backstop: Option<Backstop>) -> LimitedBody {
    WatchedBody::new(
        inner,
        Limited {
            _hold: hold,
            backstop,
        },
    )
}

impl FrameWatch for Limited {
    fn interrupt(&mut self, cx: &mut Context<'_>) -> Option<Frame<Bytes>> {
        let backstop = self.backstop.as_mut()?;
        backstop.expired(cx).is_ready().then(|| {
            let sub = backstop.sub();
            tracing::info!(%sub, after = ?backstop.deadline.after, "call ended by the edge's deadline backstop");
            Frame::trailers(deadline_status(&backstop.deadline, sub))
        })
    }

    fn frame(&mut self, _frame: Option<&Result<Frame<Bytes>, BoxError>>) {}
}

impl Backstop {
    /// The backstop of a call of `who` (`None`: anonymous) that started
    /// at `started`, on the limits layer's `alarms`.
    pub fn new(
        alarms: &Alarms,
        deadline: CallDeadline,
        who: Option<Identity>,
        started: Instant,
    ) -> Self {
        let at = started + deadline.after + BACKSTOP_GRACE;
        Self {
            alarm: alarms.at(at),
            deadline,
            who,
        }
    }

    /// Ready once the backstop's time has come.
    pub fn expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.alarm.poll(cx)
    }

    /// Whose call (`anonymous` without a verified token).
    pub fn sub(&self) -> &str {
        self.who.as_ref().map_or(ANONYMOUS_SUBJECT, Identity::sub)
    }

    /// The call's deadline.
    pub fn deadline(&self) -> CallDeadline {
        self.deadline
    }

    /// When the edge ends the call.
    #[cfg(test)]
    pub fn at(&self) -> Instant {
        self.alarm.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{limits::Limiter, metrics::Metrics};
    use futures::StreamExt;
    use http_body_util::BodyExt;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_backstop_ends_a_silent_stream_and_frees_the_slot() {
        use crate::limits::{Admit, CallKind};
        use futures::stream;
        use http_body_util::StreamBody;
        use std::sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        };

        let config: vibectl_config::LimitsConfig = vibectl_config::Config::from_toml(
            "[limits.global]\nmax_concurrent_requests = 1",
            std::path::Path::new("t.toml"),
        )
        .expect("valid")
        .limits;
        let limiter = Limiter::new(&config, None, Metrics::disabled()).expect("limiter");
        let Admit::Allowed(permit) = limiter.admit("alice", None, CallKind::Call).await else {
            panic!("admitted")
        };
        // The core's stream: one frame, then silence; notes being dropped.
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        let frames = stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x")))])
            .chain(stream::pending())
            .map(move |f| {
                let _held = &flag;
                f
            });
        let deadline = CallDeadline::of(None, Some(2)).expect("deadline");
        let started = Instant::now();
        let alice = crate::http::context::tests::identity("alice", None);
        let alarms = Alarms::default();
        let backstop = Backstop::new(&alarms, deadline, Some(alice), started);
        assert_eq!(backstop.at() - started, Duration::from_secs(3));
        let hold = Hold {
            permit,
            in_flight: None,
        };
        let mut body = limited_body(StreamBody::new(frames).boxed_unsync(), hold, Some(backstop));
        let first = body.frame().await.expect("frame").expect("ok");
        assert!(first.is_data());
        assert!(matches!(
            limiter.admit("alice", None, CallKind::Call).await,
            Admit::Refused(_)
        ));
        let last = body.frame().await.expect("frame").expect("ok");
        assert_eq!(started.elapsed(), Duration::from_secs(3), "deadline + 1 s");
        let trailers = last.into_trailers().expect("trailers");
        assert_eq!(trailers["grpc-status"], "4");
        assert_eq!(trailers[LIMIT_TYPE], "timeout");
        assert!(
            dropped.load(Ordering::SeqCst),
            "the core's stream is dropped"
        );
        assert!(body.frame().await.is_none());
        assert!(
            matches!(
                limiter.admit("alice", None, CallKind::Call).await,
                Admit::Allowed(_)
            ),
            "the slot is free"
        );
    }
}
