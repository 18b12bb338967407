//! The h2c client to the core: every forwarded stream multiplexes over one
//! HTTP/2 connection ([`super::core_conn`]), over TCP (`host:port`) or a
//! Unix socket (`unix:/path`). Connecting is bounded by
//! `edge.core_connect_timeout` (a refused connect fails at once) and the wait
//! for response headers by `edge.core_response_timeout`; a body's frames are
//! never bounded as a whole (see [`super::body`]).

use crate::{
    EdgeError,
    http::{
        EdgeBody, ForwardError,
        core_conn::{CoreBody, CoreConn, Dial},
    },
};
use bytes::Bytes;
use http::{Request, Response, Uri, Version, uri::Authority, uri::Scheme};
use http_body_util::{BodyExt, Full};
use std::{path::PathBuf, sync::Arc, time::Duration};
use vibectl_config::EdgeConfig;
use vibectl_proto::wire::error_chain;

/// Where the core listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreTarget {
    /// `host:port`, h2c over TCP.
    Tcp(String),
    /// `unix:/path`, h2c over a Unix socket.
    Unix(PathBuf),
}

impl CoreTarget {
    /// Parses `edge.core_address`: `host:port`, `http://host:port` (the
    /// core speaks plaintext h2c) or `unix:/path`; anything else is refused
    /// naming these forms.
    pub fn parse(address: &str) -> Result<Self, EdgeError> {
        let original = address;
        let invalid = |reason: &str| EdgeError::CoreAddressInvalid {
            address: original.to_owned(),
            reason: format!("{reason}; accepted forms: host:port, http://host:port, unix:/path"),
        };
        let address = match address.strip_prefix("http://") {
            Some(rest) => rest.strip_suffix('/').unwrap_or(rest),
            None if address.contains("://") => {
                return Err(invalid(
                    "the core speaks plaintext h2c on loopback; no other scheme",
                ));
            }
            None => address,
        };
        if let Some(path) = address.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid(
                    "`unix:` needs a socket path, e.g. unix:/run/vibectl/core.sock",
                ));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let (host, port) = address.rsplit_once(':').ok_or_else(|| invalid("no port"))?;
        let bad_host = host.is_empty() || host.contains(['/', '@', '?', '#', ' ']);
        if bad_host || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(invalid("expected a host and a port 1-65535"));
        }
        Ok(Self::Tcp(address.to_owned()))
    }

    /// The `:authority` sent to the core.
    fn authority(&self) -> &str {
        match self {
            Self::Tcp(address) => address,
            Self::Unix(_) => "localhost",
        }
    }
}

/// What the core's gRPC health service said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreHealth {
    /// `SERVING`.
    Serving,
    /// Any other health status (the number from `grpc.health.v1`).
    NotServing(u8),
    /// The core answered, but without a health service (any gRPC status).
    Reachable,
}

/// A cloneable handle to the pooled h2c connection to the core (cloned
/// per request: one reference count).
#[derive(Clone)]
pub struct CoreClient {
    shared: Arc<Shared>,
}

struct Shared {
    conn: CoreConn,
    /// The `:authority` sent to the core, parsed once.
    authority: Authority,
    address: Arc<str>,
    response_timeout: Duration,
    connect_timeout: Duration,
}

impl std::fmt::Debug for CoreClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreClient")
            .field("address", &self.shared.address)
            .finish()
    }
}

impl CoreClient {
    /// A client for `edge.core_address` with the edge's timeouts. Connects
    /// lazily, on the first request.
    pub fn new(edge: &EdgeConfig) -> Result<Self, EdgeError> {
        let target = CoreTarget::parse(&edge.core_address)?;
        let authority =
            Authority::try_from(target.authority()).map_err(|e| EdgeError::CoreAddressInvalid {
                address: edge.core_address.clone(),
                reason: e.to_string(),
            })?;
        let dial = match target {
            CoreTarget::Tcp(address) => Dial::Tcp(address),
            CoreTarget::Unix(path) => Dial::Unix(path),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                conn: CoreConn::new(dial, edge.core_connect_timeout),
                authority,
                address: edge.core_address.as_str().into(),
                response_timeout: edge.core_response_timeout,
                connect_timeout: edge.core_connect_timeout,
            }),
        })
    }

    /// `edge.core_address`.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// Sends `request` (its path kept, its authority replaced by the core's)
    /// and waits at most `core_response_timeout` for the response headers.
    pub async fn send(
        &self,
        request: Request<EdgeBody>,
    ) -> Result<Response<CoreBody>, ForwardError> {
        self.send_within(request, self.shared.response_timeout)
            .await
    }

    /// As [`CoreClient::send`], waiting at most `timeout` for the headers.
    pub async fn send_within(
        &self,
        mut request: Request<EdgeBody>,
        timeout: Duration,
    ) -> Result<Response<CoreBody>, ForwardError> {
        self.address_to_core(&mut request)?;
        match tokio::time::timeout(timeout, self.shared.conn.send(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(self.unavailable(e.as_ref())),
            Err(_) => Err(ForwardError::CoreResponseTimeout {
                address: self.shared.address.to_string(),
                after: timeout,
            }),
        }
    }

    /// As [`CoreClient::send`] without a timer of its own: for a call
    /// whose caller already bounds the wait (the limits layer's deadline
    /// backstop ends a call with a deadline at the same moment this
    /// timer would, so a second timer per call was pure cost).
    pub async fn send_bounded_by_caller(
        &self,
        mut request: Request<EdgeBody>,
    ) -> Result<Response<CoreBody>, ForwardError> {
        self.address_to_core(&mut request)?;
        self.shared
            .conn
            .send(request)
            .await
            .map_err(|e| self.unavailable(e.as_ref()))
    }

    /// The path kept as it is (no copy, no re-parse); scheme and authority
    /// the core's; HTTP/2.
    fn address_to_core(&self, request: &mut Request<EdgeBody>) -> Result<(), ForwardError> {
        let mut parts = std::mem::take(request.uri_mut()).into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.shared.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *request.uri_mut() = Uri::from_parts(parts).map_err(|e| self.unavailable(&e))?;
        *request.version_mut() = Version::HTTP_2;
        Ok(())
    }

    fn unavailable(&self, error: &(dyn std::error::Error + 'static)) -> ForwardError {
        ForwardError::CoreUnavailable {
            address: self.shared.address.to_string(),
            reason: error_chain(error),
        }
    }

    /// Asks the core's `grpc.health.v1.Health/Check` (whole server), within
    /// the connect timeout plus two seconds.
    pub async fn check_health(&self) -> Result<CoreHealth, ForwardError> {
        let timeout = self.shared.connect_timeout + Duration::from_secs(2);
        let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = Request::post("/grpc.health.v1.Health/Check")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body)
            .map_err(|e| self.unavailable(&e))?;
        let response = self.send_within(request, timeout).await?;
        let headers = response.headers().clone();
        let collected = tokio::time::timeout(timeout, response.into_body().collect())
            .await
            .map_err(|_| ForwardError::CoreResponseTimeout {
                address: self.shared.address.to_string(),
                after: timeout,
            })?
            .map_err(|e| self.unavailable(&e))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status = trailers
            .get("grpc-status")
            .or_else(|| headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok()?.parse::<u8>().ok());
        if status != Some(0) {
            return Ok(CoreHealth::Reachable);
        }
        // HealthCheckResponse { status = 1 (enum) }: after the 5-byte gRPC
        // frame prefix, field 1 varint is `08 NN`; absent means UNKNOWN (0).
        let data = collected.to_bytes();
        let health = match data.get(5..) {
            Some([0x08, n, ..]) => *n,
            _ => 0,
        };
        Ok(match health {
            1 => CoreHealth::Serving,
            n => CoreHealth::NotServing(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_core_addresses() {
        assert_eq!(
            CoreTarget::parse("127.0.0.1:50052").expect("tcp"),
            CoreTarget::Tcp("127.0.0.1:50052".into())
        );
        assert_eq!(
            CoreTarget::parse("unix:/run/core.sock").expect("unix"),
            CoreTarget::Unix("/run/core.sock".into())
        );
        assert_eq!(
            CoreTarget::parse("http://127.0.0.1:50052/").expect("http"),
            CoreTarget::Tcp("127.0.0.1:50052".into())
        );
        for bad in [
            "",
            "unix:",
            "nohost",
            ":80",
            "host:notaport",
            "host:70000",
            "https://127.0.0.1:50052",
            "grpc://h:1",
            "http://h:1/path",
        ] {
            let err = CoreTarget::parse(bad).expect_err(bad).to_string();
            assert!(
                err.contains("edge.core_address") && err.contains("http://host:port"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn refused_connect_is_unavailable_at_once() {
        // Bind, learn the port, close: nothing listens there now.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let config = EdgeConfig {
            core_address: address,
            ..EdgeConfig::default()
        };
        let client = CoreClient::new(&config).expect("client");
        let started = std::time::Instant::now();
        let err = client.check_health().await.expect_err("refused");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, ForwardError::CoreUnavailable { .. }), "{err}");
        assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    }
}
