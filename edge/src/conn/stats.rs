//! [`ConnStats`]: counters of the connection limits, read by `/metrics`
//! at scrape time.

use crate::conn::CloseReason;

/// Why a new connection was closed at accept (a `/metrics` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The total cap, with no idle connection to close.
    TotalCap,
    /// Its address's cap, with none of its connections idle.
    AddressCap,
    /// Its address opened connections faster than `accept_rate_per_address`.
    AddressRate,
    /// Its address has `max_handshakes_per_address` in set-up already.
    AddressHandshakes,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Self; 4] = [
        Self::TotalCap,
        Self::AddressCap,
        Self::AddressRate,
        Self::AddressHandshakes,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TotalCap => "total_cap",
            Self::AddressCap => "address_cap",
            Self::AddressRate => "address_rate",
            Self::AddressHandshakes => "address_handshakes",
        }
    }
}
use std::sync::atomic::{AtomicU64, Ordering};

/// See the module doc.
#[derive(Debug, Default)]
pub struct ConnStats {
    open: AtomicU64,
    max: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    refused: [AtomicU64; Refusal::ALL.len()],
    accept_fd_limit: AtomicU64,
    accept_other: AtomicU64,
    proxy_refused: AtomicU64,
}

/// What `/metrics` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections open.
    pub open: u64,
    /// The total cap in force.
    pub max: u64,
    /// Closed by the edge, per reason.
    pub closed: Vec<(CloseReason, u64)>,
    /// Refused at accept, per reason.
    pub refused: Vec<(Refusal, u64)>,
    /// Accept failures because file descriptors ran out (EMFILE, ENFILE).
    pub accept_fd_limit: u64,
    /// Other accept failures.
    pub accept_other: u64,
    /// PROXY protocol headers refused (untrusted source, or malformed).
    pub proxy_refused: u64,
}

impl ConnStats {
    pub(crate) fn set_open(&self, n: usize) {
        self.open.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn set_max(&self, n: usize) {
        self.max.store(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        if let Some(i) = CloseReason::ALL.iter().position(|r| *r == reason) {
            self.closed[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn accept_failed(&self, fd_limit: bool) {
        let counter = if fd_limit {
            &self.accept_fd_limit
        } else {
            &self.accept_other
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn proxy_refused(&self) {
        self.proxy_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            open: get(&self.open),
            max: get(&self.max),
            closed: CloseReason::ALL
                .iter()
                .zip(&self.closed)
                .map(|(r, n)| (*r, get(n)))
                .collect(),
            refused: Refusal::ALL
                .iter()
                .zip(&self.refused)
                .map(|(r, n)| (*r, get(n)))
                .collect(),
            accept_fd_limit: get(&self.accept_fd_limit),
            accept_other: get(&self.accept_other),
            proxy_refused: get(&self.proxy_refused),
        }
    }
}
