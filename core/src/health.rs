//! `vibectl-core health`: asks a running core's `grpc.health.v1` service
//! whether it is SERVING, over the same h2c (TCP or Unix socket) the edge
//! uses. It is the pod's liveness and readiness probe (an `exec` probe: the
//! kubelet's own gRPC probe dials the pod IP, and the core stays on
//! loopback). A core that is draining answers NOT_SERVING.

use std::{net::SocketAddr, time::Duration};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Why the core is not healthy, in one line.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The address is neither `host:port` nor `unix:/path`.
    #[error("invalid address `{0}`: expected host:port or unix:/path")]
    InvalidAddress(String),
    /// No connection could be made.
    #[error("cannot connect to the core at {address}: {reason}")]
    Unreachable {
        /// Where.
        address: String,
        /// Why.
        reason: String,
    },
    /// The check did not finish in time.
    #[error("no answer from the core at {address} within {timeout:?}")]
    Timeout {
        /// Where.
        address: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The health service answered with an error status.
    #[error("the core at {address} answered the health check with {code:?}: {message}")]
    Failed {
        /// Where.
        address: String,
        /// The gRPC code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
    /// The core answered, but not SERVING (e.g. it is shutting down).
    #[error("the core at {address} is {status}")]
    NotServing {
        /// Where.
        address: String,
        /// `NOT_SERVING`, `UNKNOWN`, …
        status: String,
    },
}

/// Checks the core at `address` (`host:port` or `unix:/path`); the whole
/// check is bounded by `timeout`. An unspecified listen address
/// (`0.0.0.0`, `[::]`) is checked on loopback.
pub async fn check(address: &str, timeout: Duration) -> Result<(), HealthError> {
    let address = address.trim();
    let checked = tokio::time::timeout(timeout, check_unbounded(address, timeout)).await;
    checked.unwrap_or_else(|_| {
        Err(HealthError::Timeout {
            address: address.to_owned(),
            timeout,
        })
    })
}

async fn check_unbounded(address: &str, timeout: Duration) -> Result<(), HealthError> {
    let unreachable = |e: &(dyn std::error::Error + 'static)| HealthError::Unreachable {
        address: address.to_owned(),
        reason: vibectl_proto::wire::error_chain(e),
    };
    let channel = connect(address, timeout)
        .await?
        .map_err(|e| unreachable(&e))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    let status = match answer {
        Ok(response) => response.into_inner().status(),
        Err(s) if s.code() == tonic::Code::Unavailable => {
            return Err(HealthError::Unreachable {
                address: address.to_owned(),
                reason: s.message().to_owned(),
            });
        }
        Err(s) => {
            return Err(HealthError::Failed {
                address: address.to_owned(),
                code: s.code(),
                message: s.message().to_owned(),
            });
        }
    };
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(HealthError::NotServing {
            address: address.to_owned(),
            status: status.as_str_name().to_owned(),
        })
    }
}

async fn connect(
    address: &str,
    timeout: Duration,
) -> Result<Result<Channel, tonic::transport::Error>, HealthError> {
    if let Some(path) = address.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(HealthError::InvalidAddress(address.to_owned()));
        }
        let path = path.to_owned();
        let connector = tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        return Ok(Endpoint::from_static("http://core.invalid")
            .connect_timeout(timeout)
            .connect_with_connector(connector)
            .await);
    }
    let target = match address.parse::<SocketAddr>() {
        Ok(mut socket) => {
            if socket.ip().is_unspecified() {
                socket.set_ip(match socket {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            socket.to_string()
        }
        // A host name (e.g. localhost:50052).
        Err(_)
            if address
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
        {
            address.to_owned()
        }
        Err(_) => return Err(HealthError::InvalidAddress(address.to_owned())),
    };
    let endpoint = Endpoint::from_shared(format!("http://{target}"))
        .map_err(|_| HealthError::InvalidAddress(address.to_owned()))?
        .connect_timeout(timeout);
    Ok(endpoint.connect().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_addresses_are_named() {
        for bad in ["nonsense", "unix:", ":50052", "host:port"] {
            let err = check(bad, Duration::from_secs(1))
                .await
                .expect_err("must fail");
            assert!(
                matches!(err, HealthError::InvalidAddress(_)),
                "{bad}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let err = check(&address, Duration::from_secs(5))
            .await
            .expect_err("closed");
        assert!(matches!(err, HealthError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains(&address), "{err}");
    }
}
