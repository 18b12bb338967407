//! `[connections]`: the lifecycle limits of the edge's client connections
//! (every listener), and the PROXY protocol on the TLS listener.

use crate::defaults;
use ipnet::IpNet;
use serde::Deserialize;
use std::time::Duration;

/// `[connections]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Longest time from the end of the TLS handshake (h2c and plain
    /// HTTP: from accept) to the first request's headers; a connection
    /// that sends nothing (no HTTP/2 preface) is closed then.
    #[serde(with = "humantime_serde")]
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/2: GOAWAY).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// HTTP/2 PING interval towards clients ("0s": no PINGs).
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Most client connections at once, all listeners together (also
    /// bounded by the file-descriptor limit). At the cap, the connection
    /// idle the longest is closed to make room; with none idle, the new
    /// one is refused.
    pub max_total: usize,
    /// Most connections from one client address (IPv6: per /64), with the
    /// same rule at the cap. 0: no per-address cap.
    pub max_per_address: usize,
    /// New connections accepted per second from one client address (IPv6:
    /// per /64), a token bucket refilled at this rate; a connection over it
    /// is closed at accept, before any TLS work. 0: no rate limit.
    pub accept_rate_per_address: u32,
    /// The bucket's size: new connections one address may open at once.
    pub accept_burst_per_address: u32,
    /// Most connections of one address in set-up at once (PROXY header,
    /// TLS handshake); more are closed at accept. 0: no limit.
    pub max_handshakes_per_address: usize,
    /// The premature-reset guard: a connection whose client resets more
    /// than this share (percent) of its recent streams within a second of
    /// opening them gets GOAWAY and its streams are cancelled. 0: off.
    pub max_premature_reset_percent: u8,
    /// Read a PROXY protocol header (v1 or v2) on the TLS listener from
    /// `proxy_protocol_trusted` sources (an L4 load balancer), so the
    /// audit log, failure budget and per-address caps see the real client.
    /// Off by default; a PROXY header from any other source is refused.
    pub proxy_protocol: bool,
    /// Networks allowed to send a PROXY header, e.g. `["10.0.0.0/8"]`.
    pub proxy_protocol_trusted: Vec<IpNet>,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            first_request_timeout: defaults::FIRST_REQUEST_TIMEOUT,
            idle_timeout: defaults::CONNECTION_IDLE_TIMEOUT,
            keepalive_interval: defaults::KEEPALIVE_INTERVAL,
            keepalive_timeout: defaults::KEEPALIVE_TIMEOUT,
            max_total: defaults::MAX_CONNECTIONS,
            max_per_address: defaults::MAX_CONNECTIONS_PER_ADDRESS,
            accept_rate_per_address: defaults::ACCEPT_RATE_PER_ADDRESS,
            accept_burst_per_address: defaults::ACCEPT_BURST_PER_ADDRESS,
            max_handshakes_per_address: defaults::MAX_HANDSHAKES_PER_ADDRESS,
            max_premature_reset_percent: defaults::MAX_PREMATURE_RESET_PERCENT,
            proxy_protocol: false,
            proxy_protocol_trusted: Vec::new(),
        }
    }
}

impl ConnectionsConfig {
    /// Checks across `[connections]` keys: `(key, message)` of the first problem.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let zero = Duration::ZERO;
        if self.first_request_timeout == zero {
            return Err(("connections.first_request_timeout", "must be > 0"));
        }
        if self.idle_timeout == zero {
            return Err(("connections.idle_timeout", "must be > 0"));
        }
        if self.keepalive_interval > zero && self.keepalive_timeout == zero {
            return Err((
                "connections.keepalive_timeout",
                "must be > 0 while keepalive_interval is set",
            ));
        }
        if self.max_total == 0 {
            return Err(("connections.max_total", "must be > 0"));
        }
        if self.accept_rate_per_address > 0 && self.accept_burst_per_address == 0 {
            return Err((
                "connections.accept_burst_per_address",
                "must be > 0 while accept_rate_per_address is set (0 would refuse every connection)",
            ));
        }
        if self.max_premature_reset_percent > 100 {
            return Err((
                "connections.max_premature_reset_percent",
                "is a percentage: 0 (off) to 100",
            ));
        }
        if self.proxy_protocol && self.proxy_protocol_trusted.is_empty() {
            return Err((
                "connections.proxy_protocol_trusted",
                "must list the load balancer's networks while proxy_protocol = true",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::{path::Path, time::Duration};

    #[test]
    fn keys_parse_defaults_hold_and_bad_values_name_their_key() {
        let cfg = Config::from_toml("", Path::new("t.toml")).expect("defaults");
        assert_eq!(
            cfg.connections.first_request_timeout,
            Duration::from_secs(10)
        );
        assert!(!cfg.connections.proxy_protocol);
        assert_eq!(cfg.connections.accept_rate_per_address, 50);
        let text = "[connections]\nproxy_protocol = true\n\
                    proxy_protocol_trusted = [\"10.0.0.0/8\", \"fd00::/8\"]\n\
                    max_per_address = 0\n";
        let cfg = Config::from_toml(text, Path::new("t.toml")).expect("parse");
        assert_eq!(cfg.connections.proxy_protocol_trusted.len(), 2);
        for (text, key) in [
            (
                "[connections]\nproxy_protocol = true\n",
                "proxy_protocol_trusted",
            ),
            ("[connections]\nmax_total = 0\n", "max_total"),
            (
                "[connections]\naccept_burst_per_address = 0\n",
                "accept_burst_per_address",
            ),
            (
                "[connections]\naccept_rate_per_address = -1\n",
                "accept_rate_per_address",
            ),
            ("[connections]\naccept_rate = 5\n", "accept_rate"),
            ("[connections]\nidle_timeout = \"0s\"\n", "idle_timeout"),
            (
                "[connections]\nproxy_protocol_trusted = [\"10.0.0.0/33\"]\n",
                "proxy_protocol_trusted",
            ),
        ] {
            let err = Config::from_toml(text, Path::new("t.toml")).expect_err(text);
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
