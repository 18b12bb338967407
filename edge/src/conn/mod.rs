//! Client connections: their lifecycle limits, for every listener.
//!
//! - [`accept`]: the one accept loop (file-descriptor exhaustion: back off,
//!   shed idle connections, log once per interval);
//! - [`table`]: caps in total and per address, oldest idle closed first
//!   ([`idle`]: in O(1)), per-address rate and handshakes at accept
//!   ([`admission`]);
//! - [`state`]: one connection's state (idle since, close signal);
//! - [`lifecycle`]: first-request and idle timeouts, closing on request;
//! - [`h2_serve`]: the HTTP/2 server loop, each stream polled in the
//!   connection's task ([`h2_stream`]); [`h2_body`]: a stream's received
//!   body; [`headers_seen`]: when no stream can be waiting to be accepted;
//! - [`streams`]: in-flight requests per connection and the
//!   premature-reset guard;
//! - [`proxy`]: the PROXY protocol (v1, v2) from trusted networks;
//! - [`fd`]: RLIMIT_NOFILE raised at start, and what it leaves for connections;
//! - [`stats`]: the counters `/metrics` reads.

pub mod accept;
mod admission;
pub mod fd;
pub mod h2_body;
pub(crate) mod h2_serve;
mod h2_stream;
mod headers_seen;
mod idle;
pub mod lifecycle;
pub mod proxy;
mod side_wake;
pub mod state;
pub mod stats;
mod stream_set;
pub mod streams;
pub mod table;
mod wake_gate;

pub use state::ConnState;
pub use stats::{ConnStats, Refusal};
pub use table::{ConnGuard, ConnTable};

use ipnet::IpNet;
use std::{
    net::{IpAddr, Ipv6Addr},
    time::Duration,
};
use vibectl_config::ConnectionsConfig;

/// The limits a [`ConnTable`] and its connections apply.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `connections.first_request_timeout`.
    pub first_request_timeout: Duration,
    /// `connections.idle_timeout`.
    pub idle_timeout: Duration,
    /// `connections.max_total` (before the fd bound).
    pub max_total: usize,
    /// `connections.max_per_address` (0: none).
    pub max_per_address: usize,
    /// `connections.max_premature_reset_percent` (0: off).
    pub max_premature_reset_percent: u8,
    /// `connections.accept_rate_per_address` (0: off).
    pub accept_rate_per_address: u32,
    /// `connections.accept_burst_per_address`.
    pub accept_burst_per_address: u32,
    /// `connections.max_handshakes_per_address` (0: none).
    pub max_handshakes_per_address: usize,
    /// The PROXY protocol sources (none when it is off): their connections
    /// get the per-address rules once the header named the client.
    pub proxy_trusted: Vec<IpNet>,
}

impl Limits {
    /// The limits of `[connections]`.
    pub fn from_config(c: &ConnectionsConfig) -> Self {
        Self {
            first_request_timeout: c.first_request_timeout,
            idle_timeout: c.idle_timeout,
            max_total: c.max_total,
            max_per_address: c.max_per_address,
            max_premature_reset_percent: c.max_premature_reset_percent,
            accept_rate_per_address: c.accept_rate_per_address,
            accept_burst_per_address: c.accept_burst_per_address,
            max_handshakes_per_address: c.max_handshakes_per_address,
            proxy_trusted: if c.proxy_protocol {
                c.proxy_protocol_trusted.clone()
            } else {
                Vec::new()
            },
        }
    }

    /// Whether `peer` is a trusted PROXY protocol source.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.proxy_trusted.iter().any(|net| net.contains(&peer))
    }
}

/// Why the edge closed a connection (a `/metrics` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// No first request within `first_request_timeout`.
    FirstRequestTimeout,
    /// No request in flight for `idle_timeout`.
    IdleTimeout,
    /// The oldest idle connection, closed at the total cap.
    EvictedTotal,
    /// The oldest idle connection of an address, closed at its cap.
    EvictedAddress,
    /// Closed while file descriptors ran out.
    ShedFdLimit,
    /// The client reset most of its recent streams right after opening them.
    PrematureReset,
}

impl CloseReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 6] = [
        Self::FirstRequestTimeout,
        Self::IdleTimeout,
        Self::EvictedTotal,
        Self::EvictedAddress,
        Self::ShedFdLimit,
        Self::PrematureReset,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstRequestTimeout => "first_request_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::EvictedTotal => "evicted_total_cap",
            Self::EvictedAddress => "evicted_address_cap",
            Self::ShedFdLimit => "shed_fd_limit",
            Self::PrematureReset => "premature_reset",
        }
    }
}

/// The key of a client address for per-address accounting: IPv4 as is
/// (IPv4-mapped IPv6 too), IPv6 by its /64, which one host usually holds whole.
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests;
