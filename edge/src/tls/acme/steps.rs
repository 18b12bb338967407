//! One ACME request, retried where RFC 8555 says to and never beyond a
//! bound: a `badNonce` answer (§6.5) is sent again with a fresh nonce
//! (instant-acme re-sends twice itself; this re-sends the whole step up to
//! [`STEP_RETRIES`] more times), a 503/429 with a near `Retry-After` is
//! waited out, and a request that only reads (POST-as-GET) is repeated
//! after a network error. Nothing here starts a new order. What cannot be
//! retried becomes an [`OrderError`] whose [`OrderError::reason`] labels
//! the failure metric.

use super::{AcmeError, client::RetryAfter};
use instant_acme::Error;
use std::time::{Duration, SystemTime};

/// Re-sends of one step after instant-acme's own (each of which tries 3 times).
pub const STEP_RETRIES: u32 = 5;
/// The longest `Retry-After` waited out inside an order; a longer one
/// ends the order and the next waits until the time named.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(120);

const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

/// Why an order (or the account registration before it) failed.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The CA answered with a problem document.
    #[error("{step}: the CA refused it: {problem}")]
    Refused {
        /// The request.
        step: &'static str,
        /// `type: detail`.
        problem: String,
    },
    /// `rateLimited`: nothing is ordered before `until`.
    #[error("{step}: rate limited by the CA until {}: {detail}", httpdate::fmt_http_date(*until))]
    RateLimited {
        /// The request.
        step: &'static str,
        /// The time the CA named (or an hour from now when it named none).
        until: SystemTime,
        /// The CA's words.
        detail: String,
    },
    /// `badNonce` on every try.
    #[error("{step}: the CA refused the nonce (badNonce) {tries} times in a row")]
    BadNonce {
        /// The request.
        step: &'static str,
        /// Tries.
        tries: u32,
    },
    /// The CA could not be reached or did not answer.
    #[error("{step}: {message}")]
    Network {
        /// The request.
        step: &'static str,
        /// The transport's words.
        message: String,
    },
    /// Validation failed: the authorizations that ended invalid.
    #[error("validation failed: {0}")]
    Validation(String),
    /// The order did not become final in time.
    #[error("{0}")]
    Timeout(String),
    /// The cache could not be read or written.
    #[error(transparent)]
    Cache(AcmeError),
    /// A local problem (no offered challenge of the configured type, a CSR).
    #[error("{0}")]
    Local(String),
    /// DNS-01: the DNS server refused or did not take the TXT record.
    #[error("DNS-01: {0}")]
    Dns(super::dns_update::DnsError),
}

impl OrderError {
    /// The `reason` label of `vibectl_acme_orders_failed_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused { .. } => "refused",
            Self::RateLimited { .. } => "rate_limited",
            Self::BadNonce { .. } => "bad_nonce",
            Self::Network { .. } => "network",
            Self::Validation(_) => "validation",
            Self::Timeout(_) => "timeout",
            Self::Cache(_) => "cache",
            Self::Local(_) => "local",
            Self::Dns(_) => "dns",
        }
    }
}

/// Runs steps with the retries above.
#[derive(Debug, Clone, Default)]
pub struct Steps {
    /// Where the HTTP client leaves the `Retry-After` of a 429/503.
    pub retry_after: RetryAfter,
}

/// Runs `$attempt` (an expression giving a future of
/// `Result<T, instant_acme::Error>`) until it succeeds or
/// [`Steps::judge`] says it may not be retried.
macro_rules! retried {
    ($steps:expr, $step:expr, $url:expr, $read_only:expr, $attempt:expr) => {{
        let mut tries = 0u32;
        loop {
            tries += 1;
            match $attempt.await {
                Ok(value) => break Ok(value),
                Err(error) => {
                    if let Err(e) = $steps.judge($step, $url, $read_only, tries, error).await {
                        break Err(e);
                    }
                }
            }
        }
    }};
}
pub(super) use retried;

impl Steps {
    /// After try number `tries` of `step` failed with `error`: `Ok` (after
    /// any wait) if it may be sent again, else the [`OrderError`].
    /// `read_only`: a network error may be retried (the request changes
    /// nothing). `order_url` is logged with each retry.
    pub async fn judge(
        &self,
        step: &'static str,
        order_url: &str,
        read_only: bool,
        tries: u32,
        error: Error,
    ) -> Result<(), OrderError> {
        let retry_after = self.retry_after.take();
        let wait = retry_after
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        let again = tries <= STEP_RETRIES;
        match &error {
            Error::Api(problem) if problem.r#type.as_deref() == Some(BAD_NONCE) => {
                if !again {
                    return Err(OrderError::BadNonce { step, tries });
                }
                tracing::info!(
                    step,
                    order = order_url,
                    retry = tries,
                    "ACME: badNonce; sending the same request again with a fresh nonce"
                );
                Ok(())
            }
            Error::Api(problem) if problem.r#type.as_deref() == Some(RATE_LIMITED) => {
                let until =
                    retry_after.unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
                Err(OrderError::RateLimited {
                    step,
                    until,
                    detail: problem.detail.clone().unwrap_or_default(),
                })
            }
            Error::Api(problem)
                if matches!(problem.status, Some(503 | 429))
                    && again
                    && wait <= MAX_INLINE_WAIT =>
            {
                tracing::info!(
                    step,
                    order = order_url,
                    ?wait,
                    "ACME: the CA is busy; waiting as its Retry-After says"
                );
                tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
                Ok(())
            }
            Error::Api(problem) => Err(OrderError::Refused {
                step,
                problem: describe(problem),
            }),
            Error::Other(_) | Error::Hyper(_) | Error::Str(_) if read_only && again => {
                let pause = Duration::from_secs(1 << tries.min(5));
                tracing::info!(step, order = order_url, error = %error, ?pause, "ACME: the CA did not answer; trying again");
                tokio::time::sleep(pause).await;
                Ok(())
            }
            Error::Other(_) | Error::Hyper(_) | Error::Str(_) => Err(OrderError::Network {
                step,
                message: error.to_string(),
            }),
            _ => Err(OrderError::Network {
                step,
                message: format!("unexpected answer: {error}"),
            }),
        }
    }
}

/// `type: detail (subproblems)` without the `urn:ietf:params:acme:error:` prefix.
pub fn describe(problem: &instant_acme::Problem) -> String {
    let kind = problem
        .r#type
        .as_deref()
        .unwrap_or("error")
        .trim_start_matches("urn:ietf:params:acme:error:");
    let mut text = format!("{kind}: {}", problem.detail.as_deref().unwrap_or(""));
    for sub in &problem.subproblems {
        let name = sub
            .identifier
            .as_ref()
            .map(|i| format!("{i:?}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "; {name} {}",
            sub.detail.as_deref().unwrap_or_default()
        ));
    }
    text
}
