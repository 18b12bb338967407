//! The call deadline: `grpc-timeout` (the client's) and the token's
//! `request_timeout_seconds`, whichever is shorter. The core enforces it
//! (it owns the provider call); the edge is the backstop: a call that
//! outlives its deadline by more than [`BACKSTOP_GRACE`] is ended here with
//! `DEADLINE_EXCEEDED`, and dropping the core's stream cancels the call
//! there.

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
}

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
    }
}
