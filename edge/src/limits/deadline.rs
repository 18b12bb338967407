//! The call deadline: `grpc-timeout` (the client's) and the token's
//! `request_timeout_seconds`, whichever is shorter; a call with neither is
//! bounded by the edge's defaults: `edge.max_call_duration` in total (30
//! min) and `edge.core_response_timeout` (60 s) for the core's first
//! response bytes. The core enforces the deadline (it owns the provider
//! call); the edge is the backstop: a call that outlives its deadline by
//! more than [`BACKSTOP_GRACE`] is ended here with `DEADLINE_EXCEEDED`, and
//! dropping the core's stream cancels the call there. A call with a
//! deadline waits for the core's first bytes up to its deadline
//! ([`ResponseWait`]) rather than `core_response_timeout`.

use std::time::Duration;

/// How long past its deadline a call may run before the edge ends it.
pub const BACKSTOP_GRACE: Duration = Duration::from_secs(1);

/// Whose limit the deadline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineSource {
    /// The client's own `grpc-timeout`.
    Client,
    /// The token's `request_timeout_seconds` (`limit-type: timeout`).
    Token,
    /// Neither: the edge's `edge.max_call_duration`.
    Default,
}

/// How long the forwarder waits for the core's response headers on a call
/// with a deadline of its own (its deadline plus the backstop's grace);
/// absent, `edge.core_response_timeout` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseWait(pub Duration);

/// The deadline of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDeadline {
    /// Time allowed from the call's start.
    pub after: Duration,
    /// Whose limit it is.
    pub source: DeadlineSource,
}

impl CallDeadline {
    /// The shorter of the client's `grpc-timeout` and the token's timeout.
    pub fn of(client: Option<Duration>, token_seconds: Option<u32>) -> Option<Self> {
        let token = token_seconds.map(|s| Duration::from_secs(u64::from(s)));
        match (client, token) {
            (None, None) => None,
            (Some(c), Some(t)) if c < t => Some(Self::client(c)),
            (Some(c), None) => Some(Self::client(c)),
            (_, Some(t)) => Some(Self {
                after: t,
                source: DeadlineSource::Token,
            }),
        }
    }

    /// The deadline of a call without one: `max_call` in total.
    pub fn default_bound(max_call: Duration) -> Self {
        Self {
            after: max_call,
            source: DeadlineSource::Default,
        }
    }

    /// What the forwarder may wait for the core's first bytes: up to the
    /// deadline for a call with its own, `None` (the default wait) else.
    pub fn response_wait(&self) -> Option<ResponseWait> {
        (self.source != DeadlineSource::Default).then(|| ResponseWait(self.after + BACKSTOP_GRACE))
    }

    fn client(after: Duration) -> Self {
        Self {
            after,
            source: DeadlineSource::Client,
        }
    }

    /// The message of the edge's own `DEADLINE_EXCEEDED`.
    pub fn message(&self, sub: &str) -> String {
        match self.source {
            DeadlineSource::Token => format!(
                "deadline exceeded: token `{sub}` may run a call for at most {} s (request_timeout_seconds)",
                self.after.as_secs()
            ),
            DeadlineSource::Client => format!(
                "deadline exceeded: the call's grpc-timeout of {} ms passed",
                self.after.as_millis()
            ),
            DeadlineSource::Default => format!(
                "deadline exceeded: a call without a deadline may run for at most {} s \
                 (edge.max_call_duration); send a grpc-timeout for longer calls",
                self.after.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shorter_deadline_wins() {
        let secs = Duration::from_secs;
        assert_eq!(CallDeadline::of(None, None), None);
        let token = CallDeadline::of(Some(secs(60)), Some(5)).expect("some");
        assert_eq!(
            (token.after, token.source),
            (secs(5), DeadlineSource::Token)
        );
        let client = CallDeadline::of(Some(secs(2)), Some(5)).expect("some");
        assert_eq!(
            (client.after, client.source),
            (secs(2), DeadlineSource::Client)
        );
        let only_client = CallDeadline::of(Some(secs(9)), None).expect("some");
        assert_eq!(only_client.source, DeadlineSource::Client);
        assert!(token.message("alice").contains("request_timeout_seconds"));
        assert_eq!(token.response_wait(), Some(ResponseWait(secs(6))));
        let default = CallDeadline::default_bound(secs(1800));
        assert_eq!(default.response_wait(), None);
        assert!(
            default.message("a").contains("edge.max_call_duration"),
            "{}",
            default.message("a")
        );
    }
}
