//! Counters of failed TLS handshakes by reason, kept by the accept loop
//! and read by `/metrics` (through [`crate::Edge::handshake_stats`]) and
//! tests. Cheap: one relaxed atomic add per failed handshake.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// The client and the edge share no protocol version or no cipher
    /// suite (or no key-exchange group, signature scheme, …): a TLS 1.0/1.1
    /// client, a TLS 1.2 client with CBC-only suites, a TLS 1.2 client
    /// while `min_version = "1.3"`.
    ProtocolVersion,
    /// Mutual TLS is required and the client sent no certificate.
    NoClientCert,
    /// The client's certificate did not verify (another CA, expired, wrong
    /// usage, …).
    BadClientCert,
    /// The handshake did not finish within `tls.handshake_timeout`.
    Timeout,
    /// Anything else: garbage instead of a ClientHello, no common ALPN,
    /// a reset mid-handshake, …
    Other,
}

impl HandshakeFailure {
    /// Every reason, in the order of [`HandshakeStats::snapshot`].
    pub const ALL: [Self; 5] = [
        Self::ProtocolVersion,
        Self::NoClientCert,
        Self::BadClientCert,
        Self::Timeout,
        Self::Other,
    ];

    /// The label value: `protocol_version`, `no_client_cert`,
    /// `bad_client_cert`, `timeout`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProtocolVersion => "protocol_version",
            Self::NoClientCert => "no_client_cert",
            Self::BadClientCert => "bad_client_cert",
            Self::Timeout => "timeout",
            Self::Other => "other",
        }
    }

    /// Classifies the error of a failed `TlsAcceptor::accept` (an
    /// `io::Error` that wraps a `rustls::Error` when TLS itself failed).
    pub fn of_io_error(error: &std::io::Error) -> Self {
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => Self::of_rustls_error(tls),
            None => Self::Other,
        }
    }

    /// Classifies a rustls error.
    pub fn of_rustls_error(error: &rustls::Error) -> Self {
        match error {
            rustls::Error::PeerIncompatible(_) => Self::ProtocolVersion,
            rustls::Error::NoCertificatesPresented => Self::NoClientCert,
            rustls::Error::InvalidCertificate(_) => Self::BadClientCert,
            _ => Self::Other,
        }
    }
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failed handshakes since start, by reason. Shared as an `Arc` (see
/// [`crate::Edge::handshake_stats`]).
#[derive(Debug, Default)]
pub struct HandshakeStats {
    counts: [AtomicU64; 5],
}

impl HandshakeStats {
    fn index(reason: HandshakeFailure) -> usize {
        match reason {
            HandshakeFailure::ProtocolVersion => 0,
            HandshakeFailure::NoClientCert => 1,
            HandshakeFailure::BadClientCert => 2,
            HandshakeFailure::Timeout => 3,
            HandshakeFailure::Other => 4,
        }
    }

    /// Counts one failure.
    pub fn record(&self, reason: HandshakeFailure) {
        self.counts[Self::index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// Failures with `reason` so far.
    pub fn get(&self, reason: HandshakeFailure) -> u64 {
        self.counts[Self::index(reason)].load(Ordering::Relaxed)
    }

    /// Every reason with its count, in [`HandshakeFailure::ALL`] order.
    pub fn snapshot(&self) -> [(HandshakeFailure, u64); 5] {
        HandshakeFailure::ALL.map(|reason| (reason, self.get(reason)))
    }

    /// All failures so far.
    pub fn total(&self) -> u64 {
        self.snapshot().iter().map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_and_counts() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let cases = [
            (
                io(rustls::PeerIncompatible::Tls12NotOffered.into()),
                HandshakeFailure::ProtocolVersion,
            ),
            (
                io(rustls::PeerIncompatible::NoCipherSuitesInCommon.into()),
                HandshakeFailure::ProtocolVersion,
            ),
            (
                io(rustls::Error::NoCertificatesPresented),
                HandshakeFailure::NoClientCert,
            ),
            (
                io(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer,
                )),
                HandshakeFailure::BadClientCert,
            ),
            (
                io(rustls::Error::NoApplicationProtocol),
                HandshakeFailure::Other,
            ),
            (
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
                HandshakeFailure::Other,
            ),
        ];
        let stats = HandshakeStats::default();
        for (error, want) in cases {
            let got = HandshakeFailure::of_io_error(&error);
            assert_eq!(got, want, "{error}");
            stats.record(got);
        }
        stats.record(HandshakeFailure::Timeout);
        assert_eq!(stats.get(HandshakeFailure::ProtocolVersion), 2);
        assert_eq!(stats.get(HandshakeFailure::Timeout), 1);
        assert_eq!(stats.total(), 7);
        let labels: Vec<_> = stats.snapshot().iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "protocol_version",
                "no_client_cert",
                "bad_client_cert",
                "timeout",
                "other"
            ]
        );
    }
}
