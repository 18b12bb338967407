//! What the HTTP providers share: one reqwest client per provider, the
//! request with its key, retries with bounded exponential backoff before any
//! output (connect errors, 429, 5xx; `retry-after` honoured, capped), the
//! SSE loop under the provider's `timeout`, and error bodies. The wire
//! formats themselves are [`WireFormat`]s (`openai`, `anthropic`).
//!
//! Time to first token: the client keeps its connections to the provider
//! (HTTP/2 where the provider offers it over TLS, else HTTP/1.1 keep-alive),
//! idle ones for [`POOL_IDLE`], with TCP keep-alives (and HTTP/2 PINGs
//! while a call is in flight, never on idle connections); after the
//! provider's end marker the rest of the body is read off in the background
//! ([`recycle`]) so an HTTP/1.1 connection goes back to the pool instead of
//! being closed; without that, every call paid a new TCP connection (and,
//! to an `https` provider, a new TLS handshake) before its first token.

use super::{
    EventStream, Provider, ProviderError, ProviderEvent, ProviderRequest, format::WireFormat,
};
use crate::{
    error::CoreError,
    secrets::{Credentials, KeyCache, redact},
};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::header::HeaderMap;
use std::{sync::Arc, time::Duration};
use tokio::time::{Instant, timeout_at};
use vibectl_config::{ProviderConfig, Secret};
// URLs in errors are the configured base URL, never a key.
use vibectl_proto::wire::error_chain;

/// The most of an error body read (the rest is not worth holding).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How long an idle provider connection is kept for the next call.
const POOL_IDLE: Duration = Duration::from_secs(300);
/// HTTP/2 PINGs while a call is in flight (a dead connection is noticed
/// before the call's timeout) and how long a PING may go unanswered.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keep-alive on provider connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Bounds on reading the rest of a finished answer's body ([`recycle`]).
const RECYCLE_WITHIN: Duration = Duration::from_secs(2);
const RECYCLE_MAX_EVENTS: usize = 16;

/// A provider spoken to over HTTP/SSE in some [`WireFormat`].
#[derive(Debug)]
pub(super) struct HttpProvider {
    name: String,
    cfg: ProviderConfig,
    wire: &'static dyn WireFormat,
    /// Parsed once: a call clones it instead of parsing the string again.
    url: reqwest::Url,
    client: reqwest::Client,
    keys: KeyCache,
}

/// One failed try: what went wrong, and whether another try may help.
struct Failure {
    error: ProviderError,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl HttpProvider {
    pub(super) fn new(
        name: &str,
        cfg: &ProviderConfig,
        wire: &'static dyn WireFormat,
    ) -> Result<Self, CoreError> {
        let base = cfg.base_url.as_deref().unwrap_or(wire.default_base_url());
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(POOL_IDLE)
            .tcp_keepalive(TCP_KEEPALIVE)
            .http2_keep_alive_interval(H2_KEEPALIVE)
            .http2_keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
            .user_agent(concat!("vibectl-core/", env!("CARGO_PKG_VERSION")))
            // A redirect is an error, never followed: the key goes to
            // `base_url` only (reqwest would re-send a custom key header
            // such as `x-api-key`, and the prompt, to any host it names).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CoreError::HttpClient {
                provider: name.to_owned(),
                message: e.to_string(),
            })?;
        let url = format!("{}{}", base.trim_end_matches('/'), wire.path());
        let url = reqwest::Url::parse(&url).map_err(|e| CoreError::HttpClient {
            provider: name.to_owned(),
            message: format!("base_url {base:?}: {e}"),
        })?;
        Ok(Self {
            name: name.to_owned(),
            cfg: cfg.clone(),
            wire,
            url,
            client,
            keys: KeyCache::new(Credentials::lookup(name, cfg)),
        })
    }
}

impl Provider for HttpProvider {
    /// The call as a stream of events; see [`super::EventStream`].
    fn stream(self: Arc<Self>, req: ProviderRequest) -> EventStream {
        Box::pin(async_stream::stream! {
            let deadline = Instant::now() + self.cfg.timeout;
            let key = match &*self.keys.get(|| Credentials::lookup(&self.name, &self.cfg)) {
                Credentials::Present(key) => key.clone(),
                Credentials::Missing { hint } => {
                    yield ProviderEvent::Failed(ProviderError::MissingApiKey { hint: hint.clone() });
                    return;
                }
                Credentials::BuiltIn => Secret::new(""),
            };
            let body = self.wire.body(&req);
            let opened = timeout_at(deadline, self.open(&body, &key)).await;
            let (response, retries) = match opened {
                Err(_) => {
                    yield ProviderEvent::Failed(ProviderError::Timeout(self.cfg.timeout));
                    return;
                }
                Ok((Err(error), retries)) => {
                    yield ProviderEvent::Retried(retries);
                    yield ProviderEvent::Failed(error);
                    return;
                }
                Ok((Ok(response), retries)) => (response, retries),
            };
            yield ProviderEvent::Retried(retries);
            let mut events = response.bytes_stream().eventsource();
            loop {
                let next = match timeout_at(deadline, events.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        yield ProviderEvent::Failed(ProviderError::Timeout(self.cfg.timeout));
                        return;
                    }
                };
                let event = match next {
                    None => {
                        let why = "the provider closed the stream before its end marker";
                        yield ProviderEvent::Failed(ProviderError::StreamBroken(why.to_owned()));
                        return;
                    }
                    Some(Err(e)) => {
                        let why = redact(&error_chain(&e), &key);
                        yield ProviderEvent::Failed(ProviderError::StreamBroken(why));
                        return;
                    }
                    Some(Ok(event)) => event,
                };
                match self.wire.parse(&event) {
                    Err(error) => {
                        yield ProviderEvent::Failed(scrub(error, &key));
                        return;
                    }
                    Ok(parsed) => {
                        if let Some(text) = parsed.text.filter(|t| !t.is_empty()) {
                            yield ProviderEvent::Text(text);
                        }
                        if let Some(usage) = parsed.usage {
                            yield ProviderEvent::Usage(usage);
                        }
                        if parsed.done {
                            recycle(events);
                            return;
                        }
                    }
                }
            }
        })
    }
}

impl HttpProvider {
    /// Sends the request, retrying before any output; returns the streaming
    /// response (status 2xx) or the last failure, with the retry count.
    async fn open(
        &self,
        body: &serde_json::Value,
        key: &Secret,
    ) -> (Result<reqwest::Response, ProviderError>, u32) {
        let mut retries = 0;
        loop {
            match self.try_once(body, key).await {
                Ok(response) => return (Ok(response), retries),
                Err(failure) if failure.retryable && retries < self.cfg.max_retries => {
                    let delay = backoff(&self.cfg, retries, failure.retry_after);
                    tracing::info!(provider = %self.name, error = %failure.error, ?delay, retry = retries + 1, "provider call failed; retrying");
                    tokio::time::sleep(delay).await;
                    retries += 1;
                }
                Err(failure) => return (Err(failure.error), retries),
            }
        }
    }

    async fn try_once(
        &self,
        body: &serde_json::Value,
        key: &Secret,
    ) -> Result<reqwest::Response, Failure> {
        let request = self
            .wire
            .authorize(self.client.post(self.url.clone()), key)
            .json(body);
        let response = request.send().await.map_err(|e| {
            let error = if e.is_timeout() {
                ProviderError::Connect(format!("timed out after {:?}", self.cfg.connect_timeout))
            } else if e.is_connect() {
                ProviderError::Connect(redact(&error_chain(&e), key))
            } else {
                ProviderError::StreamBroken(redact(&error_chain(&e), key))
            };
            Failure {
                retryable: e.is_connect() || e.is_timeout(),
                error,
                retry_after: None,
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if matches!(status.as_u16(), 401 | 403) {
            // Perhaps rotated: the next call reads the key again.
            self.keys.refused();
        }
        let retry_after = retry_after(response.headers());
        let redirect = status
            .is_redirection()
            .then(|| redirect_message(response.headers()));
        let text = read_bounded(response).await;
        let message = redirect.unwrap_or_else(|| {
            self.wire
                .error_message(&text)
                .unwrap_or_else(|| fallback_message(status, &text))
        });
        Err(Failure {
            error: ProviderError::Http {
                status: status.as_u16(),
                message: redact(&message, key),
            },
            retryable: status.as_u16() == 429 || status.is_server_error(),
            retry_after,
        })
    }
}

/// Reads what follows the provider's end marker (normally just the end of
/// the chunked body) in the background, bounded in time and events, so that
/// an HTTP/1.1 connection is returned to the pool: dropping a response body
/// before its end closes the connection.
fn recycle<S: futures::Stream + Send + 'static>(rest: S) {
    tokio::spawn(async move {
        let drain = rest.take(RECYCLE_MAX_EVENTS).for_each(|_| async {});
        let _ = tokio::time::timeout(RECYCLE_WITHIN, drain).await;
    });
}

/// Wait before retry number `attempt + 1`: the provider's `retry-after` if
/// it sent one, else `initial × 2^attempt`; never more than the cap.
fn backoff(cfg: &ProviderConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = cfg
        .retry_initial_backoff
        .saturating_mul(2u32.saturating_pow(attempt.min(16)));
    retry_after
        .unwrap_or(exponential)
        .min(cfg.retry_max_backoff)
}

/// `retry-after-ms` (OpenAI) or `retry-after` in seconds; HTTP dates are
/// ignored (the exponential backoff applies then).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    number("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| number("retry-after").map(Duration::from_secs_f64))
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error response.
async fn read_bounded(response: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// What a redirect answer says: where it pointed (scheme, host and port
/// only: a query could carry anything) and that it was not followed.
fn redirect_message(headers: &HeaderMap) -> String {
    let target = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|location| match reqwest::Url::parse(location) {
            Ok(url) => format!(" to {}", url.origin().ascii_serialization()),
            Err(_) => " to a relative location".to_owned(),
        })
        .unwrap_or_default();
    format!(
        "a redirect{target}, not followed (the key is only sent to base_url): \
         set base_url to the address that answers"
    )
}

fn fallback_message(status: reqwest::StatusCode, body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return status.canonical_reason().unwrap_or("error").to_owned();
    }
    body.chars().take(300).collect()
}

fn scrub(error: ProviderError, key: &Secret) -> ProviderError {
    match error {
        ProviderError::Upstream { kind, message } => ProviderError::Upstream {
            kind,
            message: redact(&message, key),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vibectl_config::ProviderKind;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let mut cfg = ProviderConfig::builtin(ProviderKind::Openai);
        cfg.retry_initial_backoff = Duration::from_millis(100);
        cfg.retry_max_backoff = Duration::from_millis(350);
        assert_eq!(backoff(&cfg, 0, None), Duration::from_millis(100));
        assert_eq!(backoff(&cfg, 1, None), Duration::from_millis(200));
        assert_eq!(backoff(&cfg, 2, None), Duration::from_millis(350));
        assert_eq!(backoff(&cfg, 40, None), Duration::from_millis(350));
        assert_eq!(
            backoff(&cfg, 0, Some(Duration::from_secs(60))),
            Duration::from_millis(350)
        );
        assert_eq!(backoff(&cfg, 0, Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn retry_after_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "2".parse().expect("value"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "150".parse().expect("value"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut d = HeaderMap::new();
        d.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("value"),
        );
        assert_eq!(retry_after(&d), None);
    }
}
