//! The caller's limits, as the edge passes them in a request header after
//! it verified the token (`x-vibectl-limits`; absent = unlimited), and the
//! call's deadline (`grpc-timeout`). The core enforces the two it can only
//! enforce itself: the input length (it decodes the request) and the
//! deadline (it owns the provider call). Rate and concurrency are the
//! edge's; the core only reports them in `GetServerInfo`.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::cell::RefCell;
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Status, metadata::MetadataMap};
use vibectl_proto::{ExecuteRequest, ServerLimits};

use vibectl_proto::wire::{LIMIT_TYPE, LimitType, LimitValues, parse_grpc_timeout};

// The header names, parsed once.
use vibectl_proto::wire::header_names::{GRPC_TIMEOUT as GRPC_TIMEOUT_NAME, LIMITS as LIMITS_NAME};

/// The edge may spend a moment before forwarding: a `grpc-timeout` within
/// this much of the token's `request_timeout_seconds` is taken to be it.
const TOKEN_DEADLINE_SLACK: Duration = Duration::from_secs(1);

/// The limits in force for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallLimits {
    /// The caller's limits (`x-vibectl-limits`).
    pub limits: LimitValues,
    /// `grpc-timeout`.
    pub grpc_timeout: Option<Duration>,
}

/// The caller's limits in `value`, from the last value this thread read
/// when it is the same (nearly every call has the limits of the call
/// before: the global set, or the same token's; parsing them took some
/// 2,000 instructions per call). A value with a malformed part is parsed,
/// and its parts logged, every time.
fn parse_limits(value: &HeaderValue) -> LimitValues {
    thread_local! {
        static LAST: RefCell<Option<(HeaderValue, LimitValues)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| {
        if let Some((kept, limits)) = last.as_ref()
            && kept == value
        {
            return *limits;
        }
        let Ok(text) = value.to_str() else {
            return LimitValues::default();
        };
        let (limits, malformed) = LimitValues::parse(text);
        if malformed.is_empty() {
            *last = Some((value.clone(), limits));
        }
        for part in malformed {
            tracing::warn!(
                header = LIMITS_NAME.as_str(),
                part,
                "ignoring a malformed limit"
            );
        }
        limits
    })
}

impl CallLimits {
    /// Reads the headers; a malformed value counts as absent (and is logged:
    /// only the edge sets them).
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        let headers: &HeaderMap = metadata.as_ref();
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let limits = headers
            .get(&LIMITS_NAME)
            .map_or_else(LimitValues::default, parse_limits);
        let grpc_timeout = text(&GRPC_TIMEOUT_NAME).and_then(|value| {
            let parsed = parse_grpc_timeout(value);
            if parsed.is_none() {
                tracing::warn!(value, "ignoring a malformed grpc-timeout header");
            }
            parsed
        });
        Self {
            limits,
            grpc_timeout,
        }
    }

    /// The limits as `GetServerInfo` reports them (unset when absent).
    pub fn server_limits(&self) -> ServerLimits {
        let as_i32 = |n: Option<u32>| n.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        ServerLimits {
            max_requests_per_minute: as_i32(self.limits.requests_per_minute),
            max_concurrent_requests: as_i32(self.limits.concurrency),
            max_input_length: as_i32(self.limits.input_length),
            request_timeout_seconds: as_i32(self.limits.timeout_seconds),
        }
    }

    /// `RESOURCE_EXHAUSTED` with `limit-type: input_length` when the
    /// request's characters exceed the caller's limit. No `retry-after-ms`:
    /// waiting does not make the input shorter.
    pub fn check_input(&self, request: &ExecuteRequest) -> Result<(), InputTooLong> {
        let Some(limit) = self.limits.input_length else {
            return Ok(());
        };
        let characters = input_characters(request);
        if characters > u64::from(limit) {
            return Err(InputTooLong { characters, limit });
        }
        Ok(())
    }

    /// The call's deadline, counted from `started`: the earlier of
    /// `grpc-timeout` and the token's `request_timeout_seconds`.
    pub fn deadline(&self, started: Instant) -> Option<Deadline> {
        let token = self
            .limits
            .timeout_seconds
            .map(|s| Duration::from_secs(u64::from(s)));
        // (time allowed, the time named in the message, whose limit)
        let (allowed, after, cause) = match (self.grpc_timeout, token) {
            (None, None) => return None,
            (Some(client), None) => (client, client, DeadlineCause::Client),
            (None, Some(token)) => (token, token, DeadlineCause::Token),
            (Some(client), Some(token)) if client + TOKEN_DEADLINE_SLACK >= token => {
                (client.min(token), token, DeadlineCause::Token)
            }
            (Some(client), Some(_)) => (client, client, DeadlineCause::Client),
        };
        Some(Deadline {
            at: started + allowed,
            after,
            cause,
        })
    }
}

/// Characters (Unicode scalar values) of every system and user fragment.
pub fn input_characters(request: &ExecuteRequest) -> u64 {
    request
        .system_fragments
        .iter()
        .chain(&request.user_fragments)
        .map(|f| f.chars().count() as u64)
        .sum()
}

/// A request longer than the caller's `max_input_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputTooLong {
    /// The request's characters.
    pub characters: u64,
    /// The caller's limit.
    pub limit: u32,
}

impl InputTooLong {
    /// The gRPC status sent to the caller.
    pub fn status(&self) -> Status {
        let mut status = Status::resource_exhausted(format!(
            "input is {} characters; this token's limit is {} (max_input_length)",
            self.characters, self.limit
        ));
        status.metadata_mut().insert(
            LIMIT_TYPE,
            LimitType::InputLength.as_str().parse().expect("ASCII"),
        );
        status
    }
}

/// Whose limit a deadline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineCause {
    /// The token's `request_timeout_seconds` (the edge's `grpc-timeout` is it).
    Token,
    /// The client's own, shorter `grpc-timeout`.
    Client,
}

/// When a call must end, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The instant the call is cut.
    pub at: Instant,
    /// The limit as the message names it (the token's value when it is the
    /// token's limit, even if the edge forwarded a moment less).
    pub after: Duration,
    /// Whose limit it is.
    pub cause: DeadlineCause,
}

impl Deadline {
    /// `DEADLINE_EXCEEDED`, naming the time and the limit; with
    /// `limit-type: timeout` when it is the token's limit.
    pub fn status(&self) -> Status {
        let after = human(self.after);
        match self.cause {
            DeadlineCause::Token => {
                let mut status = Status::deadline_exceeded(format!(
                    "request timed out after {after} (request_timeout_seconds)"
                ));
                status.metadata_mut().insert(
                    LIMIT_TYPE,
                    LimitType::Timeout.as_str().parse().expect("ASCII"),
                );
                status
            }
            DeadlineCause::Client => Status::deadline_exceeded(format!(
                "request timed out after {after} (the client's deadline, grpc-timeout)"
            )),
        }
    }
}

/// `30 s`, `1.5 s`, `250 ms`.
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vibectl_proto::wire::{GRPC_TIMEOUT, LIMITS_HEADER};

    fn metadata(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().expect("value"));
        }
        m
    }

    #[test]
    fn headers_become_limits_and_bad_ones_are_ignored() {
        let l = CallLimits::from_metadata(&metadata(&[
            (
                LIMITS_HEADER,
                "rpm=60,concurrency=0,input-length=32000,timeout=many",
            ),
            (GRPC_TIMEOUT, "5S"),
        ]));
        assert_eq!(
            l,
            CallLimits {
                limits: LimitValues {
                    requests_per_minute: Some(60),
                    input_length: Some(32000),
                    ..LimitValues::default()
                },
                grpc_timeout: Some(Duration::from_secs(5)),
            }
        );
        let s = l.server_limits();
        assert_eq!(s.max_requests_per_minute, Some(60));
        assert_eq!(s.max_input_length, Some(32000));
        assert_eq!(s.max_concurrent_requests, None);
        assert_eq!(
            CallLimits::default().server_limits(),
            ServerLimits::default()
        );
    }

    #[test]
    fn each_call_gets_its_own_limits_when_the_last_ones_are_kept() {
        let limits =
            |value: &str| CallLimits::from_metadata(&metadata(&[(LIMITS_HEADER, value)])).limits;
        let rpm = |n| LimitValues {
            requests_per_minute: Some(n),
            ..LimitValues::default()
        };
        for _ in 0..2 {
            assert_eq!(limits("rpm=60"), rpm(60));
            assert_eq!(limits("rpm=60"), rpm(60), "the kept ones");
            assert_eq!(limits("rpm=5"), rpm(5), "another caller's");
            assert_eq!(limits("rpm=5,color=red"), rpm(5), "a malformed part");
            assert_eq!(limits("rpm=60"), rpm(60));
            assert_eq!(
                CallLimits::from_metadata(&MetadataMap::new()).limits,
                LimitValues::default(),
                "no header: unlimited"
            );
        }
    }

    #[test]
    fn input_is_counted_in_characters() {
        let req = ExecuteRequest {
            system_fragments: vec!["ab".into()],
            user_fragments: vec!["héé".into(), "日本".into()],
            ..ExecuteRequest::default()
        };
        assert_eq!(input_characters(&req), 7);
        let limits = |n| CallLimits {
            limits: LimitValues {
                input_length: Some(n),
                ..LimitValues::default()
            },
            ..CallLimits::default()
        };
        assert!(limits(7).check_input(&req).is_ok());
        let err = limits(6).check_input(&req).expect_err("too long");
        let status = err.status();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "input is 7 characters; this token's limit is 6 (max_input_length)"
        );
        assert_eq!(
            status.metadata().get(LIMIT_TYPE).map(|v| v.to_str().ok()),
            Some(Some("input_length"))
        );
        assert!(
            status
                .metadata()
                .get(vibectl_proto::wire::RETRY_AFTER_MS)
                .is_none()
        );
    }

    #[test]
    fn deadline_is_the_earlier_and_names_its_cause() {
        let now = Instant::now();
        let l = |grpc: Option<u64>, token: Option<u32>| CallLimits {
            grpc_timeout: grpc.map(Duration::from_millis),
            limits: LimitValues {
                timeout_seconds: token,
                ..LimitValues::default()
            },
        };
        assert_eq!(l(None, None).deadline(now), None);
        let d = l(Some(500), None).deadline(now).expect("client");
        assert_eq!(
            (d.after, d.cause),
            (Duration::from_millis(500), DeadlineCause::Client)
        );
        assert!(d.status().message().contains("500 ms"));
        assert!(d.status().metadata().get(LIMIT_TYPE).is_none());
        let d = l(None, Some(30)).deadline(now).expect("token");
        assert_eq!(
            (d.after, d.cause),
            (Duration::from_secs(30), DeadlineCause::Token)
        );
        // The edge forwarded the token's 30 s, minus a moment.
        let d = l(Some(29_990), Some(30)).deadline(now).expect("token");
        assert_eq!(d.cause, DeadlineCause::Token);
        let status = d.status();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(
            status.message(),
            "request timed out after 30 s (request_timeout_seconds)"
        );
        assert_eq!(d.at, now + Duration::from_millis(29_990));
        assert_eq!(
            status.metadata().get(LIMIT_TYPE).map(|v| v.to_str().ok()),
            Some(Some("timeout"))
        );
        let d = l(Some(2_000), Some(30)).deadline(now).expect("client");
        assert_eq!(
            (d.after, d.cause),
            (Duration::from_secs(2), DeadlineCause::Client)
        );
        assert_eq!(d.at, now + Duration::from_secs(2));
    }
}
