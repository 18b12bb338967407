//! The call deadline: `grpc-timeout` (the client's) and the token's
//! `request_timeout_seconds`, whichever is shorter. The core enforces it
//! (it owns the provider call); the edge is the backstop: a call that
//! outlives its deadline by more than [`BACKSTOP_GRACE`] is ended here with
//! `DEADLINE_EXCEEDED`, and dropping the core's stream cancels the call
//! there.

use std::time::Duration;

/// The gRPC deadline header.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";
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

/// Parses a `grpc-timeout` value: 1–8 ASCII digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`). `None` when malformed.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value.len().checked_sub(1)?;
    if !value.is_char_boundary(split) {
        return None;
    }
    let (digits, unit) = value.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `timeout` as a `grpc-timeout` value (at most 8 digits): in
/// milliseconds (rounded up) when that fits, else seconds, else hours.
pub fn format_grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    if millis <= MAX {
        return format!("{millis}m");
    }
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    if u128::from(secs) <= MAX {
        return format!("{secs}S");
    }
    format!("{}H", (secs.div_ceil(3600)).min(99_999_999))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_round_trips_and_rejects_garbage() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        for bad in ["", "S", "5", "123456789S", "5s", "-5S", "5 S", "é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
        assert_eq!(format_grpc_timeout(Duration::from_secs(30)), "30000m");
        assert_eq!(format_grpc_timeout(Duration::from_micros(1500)), "2m");
        assert_eq!(format_grpc_timeout(Duration::from_secs(200_000)), "200000S");
        let back = parse_grpc_timeout(&format_grpc_timeout(Duration::from_millis(1234)));
        assert_eq!(back, Some(Duration::from_millis(1234)));
    }

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
