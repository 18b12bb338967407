//! `[edge]`: the internet-facing process (its listeners, the core it
//! forwards to, and the bounds on each call). Its TLS policy is
//! [`crate::tls`], HSTS [`crate::hsts`], tokens [`crate::jwt`].

use crate::defaults;
use serde::Deserialize;
use std::{net::SocketAddr, num::NonZeroU32, path::PathBuf, time::Duration};

/// `[edge]`: the internet-facing process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Address of the TLS (or, in `serve-insecure`, h2c) listener.
    pub listen: SocketAddr,
    /// Where the core listens: `host:port` (h2c over TCP) or `unix:/path`.
    pub core_address: String,
    /// Host names this edge answers for; they go into generated certificates
    /// (beside `localhost` and `127.0.0.1`).
    pub hostnames: Vec<String>,
    /// Directory for generated state (self-signed certificates, JWT secret).
    /// Default: `$VIBECTL_PROXY_HOME` or `~/.config/vibectl-proxy`.
    pub state_dir: Option<PathBuf>,
    /// Verify `authorization: Bearer <jwt>` on every call. On by default.
    pub require_auth: bool,
    /// Time allowed to connect to the core.
    #[serde(with = "humantime_serde")]
    pub core_connect_timeout: Duration,
    /// Longest wait for the core's response headers (the first response
    /// bytes) on a call without a deadline; a call with one (client
    /// `grpc-timeout`, token timeout) waits up to its deadline.
    #[serde(with = "humantime_serde")]
    pub core_response_timeout: Duration,
    /// Longest a call without a deadline may stream in total; it then ends
    /// with `DEADLINE_EXCEEDED`.
    #[serde(with = "humantime_serde")]
    pub max_call_duration: Duration,
    /// Forward gRPC server reflection to the core (off: only the vibectl
    /// service and gRPC health are forwarded; reflection stays on the
    /// core's loopback port).
    pub forward_reflection: bool,
    /// Longest silence between two frames of a forwarded stream.
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// Grace period for in-flight streams at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Largest request message, in bytes: a larger one is refused at the
    /// edge, before forwarding, with `RESOURCE_EXHAUSTED` and `limit-type:
    /// message_size` (the core accepts up to the same size).
    pub max_message_bytes: NonZeroU32,
    /// Address of the plain HTTP/1.1 admin listener (`/live`, `/ready`).
    /// Loopback by default: it is unauthenticated.
    pub admin_listen: SocketAddr,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: defaults::EDGE_LISTEN
                .parse()
                .expect("valid default address"),
            core_address: defaults::CORE_LISTEN.to_owned(),
            hostnames: Vec::new(),
            state_dir: None,
            require_auth: true,
            core_connect_timeout: defaults::CORE_CONNECT_TIMEOUT,
            core_response_timeout: defaults::CORE_RESPONSE_TIMEOUT,
            max_call_duration: defaults::MAX_CALL_DURATION,
            forward_reflection: false,
            stream_idle_timeout: defaults::STREAM_IDLE_TIMEOUT,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            max_message_bytes: defaults::MAX_MESSAGE_BYTES,
            admin_listen: defaults::EDGE_ADMIN_LISTEN
                .parse()
                .expect("valid default address"),
        }
    }
}

impl EdgeConfig {
    /// The state directory in force (config, then environment, then default).
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(defaults::state_dir)
    }
}
