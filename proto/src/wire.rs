//! The edge↔core contract beyond the protobuf messages: the names both
//! processes must agree on, defined here once and imported by both.
//!
//! The edge verifies the token, strips every client-sent `x-vibectl-*`
//! header, sets the caller ([`CALLER_HEADER`]), [`ALLOWED_MODELS_HEADER`]
//! and the caller's limits ([`LIMITS_HEADER`]), rewrites
//! [`GRPC_TIMEOUT`] to the call's deadline, and forwards over h2c. The core
//! trusts those headers (it listens on loopback only) and answers limit
//! refusals with a [`LimitType`] in [`LIMIT_TYPE`] trailing metadata (the
//! edge adds [`RETRY_AFTER_MS`] to its own). Renaming anything here renames
//! it on both sides.

use std::time::Duration;

mod caller;
mod limits;
pub use caller::{CALLER_HEADER, Caller};
pub use limits::{LIMITS_HEADER, LimitValues};

// The service name as a literal, so the method paths below are built from
// it at compile time (`concat!` takes literals, not constants).
macro_rules! service_name {
    () => {
        "vibectl.llm_proxy.VibectlLLMProxy"
    };
}

/// Fully qualified service name, as it appears in HTTP/2 paths.
pub const SERVICE_NAME: &str = service_name!();

/// Header prefix of everything the edge asserts about the caller; a client's
/// own `x-vibectl-*` headers are dropped before the edge sets its own.
pub const IDENTITY_PREFIX: &str = "x-vibectl-";
/// The models the caller's token may use (comma-separated ids or aliases);
/// absent = every model.
pub const ALLOWED_MODELS_HEADER: &str = "x-vibectl-allowed-models";
/// The gRPC deadline header (`<1-8 digits><H|M|S|m|u|n>`).
pub const GRPC_TIMEOUT: &str = "grpc-timeout";
/// Metadata (header or trailer) naming the limit that refused or ended a
/// call: a [`LimitType`].
pub const LIMIT_TYPE: &str = "limit-type";
/// Metadata: milliseconds until a refused call may pass.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The caller, limit and deadline headers as parsed header names, for the
/// edge that writes them and the core that reads them (a `&str` name is
/// parsed again at every lookup or insert).
pub mod header_names {
    use tonic::codegen::http::HeaderName;

    /// [`super::CALLER_HEADER`].
    pub const CALLER: HeaderName = HeaderName::from_static(super::CALLER_HEADER);
    /// [`super::LIMITS_HEADER`].
    pub const LIMITS: HeaderName = HeaderName::from_static(super::LIMITS_HEADER);
    /// [`super::GRPC_TIMEOUT`].
    pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static(super::GRPC_TIMEOUT);
    /// [`super::RETRY_AFTER_MS`].
    pub const RETRY_AFTER_MS: HeaderName = HeaderName::from_static(super::RETRY_AFTER_MS);
}
/// Response metadata of `GetServerInfo` (core → client, through the edge):
/// the caller's remaining quota budgets and when each resets.
pub const QUOTA_REMAINING: &str = "x-vibectl-quota-remaining";

/// The edge's `sub` (metrics label and limits key) of a caller without a
/// verified subject (`edge.require_auth = false`).
pub const ANONYMOUS_SUBJECT: &str = "anonymous";
/// The core's `sub` label of a call that carries no [`CALLER_HEADER`] (the
/// same anonymous caller, as the core sees it; kept apart from
/// [`ANONYMOUS_SUBJECT`] because both labels are already on dashboards).
pub const NO_SUBJECT: &str = "-";
/// The label of everything past a bound (subjects past `max_subjects`,
/// paths that are not one of the three RPCs).
pub const OTHER_LABEL: &str = "other";

/// The service's three RPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `Execute`: one call, one response.
    Execute,
    /// `StreamExecute`: one call, a stream of chunks.
    StreamExecute,
    /// `GetServerInfo`: models and the caller's limits.
    GetServerInfo,
}

impl Method {
    /// Every RPC.
    pub const ALL: [Self; 3] = [Self::Execute, Self::StreamExecute, Self::GetServerInfo];

    /// The HTTP/2 path (`/vibectl.llm_proxy.VibectlLLMProxy/Execute`).
    pub const fn path(self) -> &'static str {
        match self {
            Self::Execute => concat!("/", service_name!(), "/Execute"),
            Self::StreamExecute => concat!("/", service_name!(), "/StreamExecute"),
            Self::GetServerInfo => concat!("/", service_name!(), "/GetServerInfo"),
        }
    }

    /// The RPC's name (`Execute`): the `method` label of both processes.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Execute => "Execute",
            Self::StreamExecute => "StreamExecute",
            Self::GetServerInfo => "GetServerInfo",
        }
    }

    /// The RPC at an HTTP/2 path; `None` for anything else (health,
    /// reflection, unknown).
    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.path() == path)
    }

    /// Whether the RPC is a model call (holds a provider call until its
    /// response ends), as opposed to a question about the server.
    pub const fn is_call(self) -> bool {
        matches!(self, Self::Execute | Self::StreamExecute)
    }
}

/// Which limit refused or ended a call (the [`LIMIT_TYPE`] value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitType {
    /// Requests per minute.
    Rpm,
    /// Calls in flight (per token or across all tokens).
    Concurrency,
    /// Characters of input (enforced by the core).
    InputLength,
    /// The token's `request_timeout_seconds`.
    Timeout,
    /// A request message over `edge.max_message_bytes` (refused by the edge).
    MessageSize,
    /// A token budget (`max_tokens_per_day` / `_month`; enforced by the core).
    Token,
    /// A cost budget (`max_cost_usd_per_day` / `_month`; enforced by the core).
    Cost,
}

impl LimitType {
    /// Every limit type.
    pub const ALL: [Self; 7] = [
        Self::Rpm,
        Self::Concurrency,
        Self::InputLength,
        Self::Timeout,
        Self::MessageSize,
        Self::Token,
        Self::Cost,
    ];

    /// The metadata value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rpm => "rpm",
            Self::Concurrency => "concurrency",
            Self::InputLength => "input_length",
            Self::Timeout => "timeout",
            Self::MessageSize => "message_size",
            Self::Token => "token",
            Self::Cost => "cost",
        }
    }

    /// Parses a metadata value.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
}

/// Parses a `grpc-timeout` value: 1–8 ASCII digits and a unit (`H`, `M`,
/// `S`, `m`, `u`, `n`: hours … nanoseconds). `None` when malformed.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let value = value.trim();
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
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

/// An error and its sources on one line, `: `-joined, each text once (a
/// source whose text an earlier part already holds is left out; hyper's and
/// reqwest's top-level errors alone say little: "client error (Connect)").
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_parses_every_unit_and_rejects_garbage() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            "",
            "S",
            "10",
            "123456789S",
            "1.5S",
            "-1S",
            "10s",
            "10 S",
            "1é",
            "é",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn grpc_timeout_formats_within_eight_digits_and_round_trips() {
        assert_eq!(format_grpc_timeout(Duration::from_secs(30)), "30000m");
        assert_eq!(format_grpc_timeout(Duration::from_micros(1500)), "2m");
        assert_eq!(format_grpc_timeout(Duration::from_secs(200_000)), "200000S");
        let back = parse_grpc_timeout(&format_grpc_timeout(Duration::from_millis(1234)));
        assert_eq!(back, Some(Duration::from_millis(1234)));
    }

    #[test]
    fn methods_and_limit_types_round_trip() {
        assert_eq!(SERVICE_NAME, "vibectl.llm_proxy.VibectlLLMProxy");
        assert_eq!(
            Method::Execute.path(),
            "/vibectl.llm_proxy.VibectlLLMProxy/Execute"
        );
        for m in Method::ALL {
            assert_eq!(Method::from_path(m.path()), Some(m));
            assert!(m.path().ends_with(m.name()));
        }
        assert_eq!(Method::from_path("/grpc.health.v1.Health/Check"), None);
        for t in LimitType::ALL {
            assert_eq!(LimitType::parse(t.as_str()), Some(t));
        }
        assert_eq!(LimitType::parse("tokens"), None);
    }

    #[test]
    fn error_chain_joins_sources_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let inner = E("connection refused", None);
        let mid = E("connect: connection refused", Some(Box::new(inner)));
        let top = E("client error (Connect)", Some(Box::new(mid)));
        assert_eq!(
            error_chain(&top),
            "client error (Connect): connect: connection refused"
        );
    }
}
