//! The certificate resolver every mode plugs into the `ServerConfig`: one
//! `CertifiedKey` (with what the edge reports about it) behind an `ArcSwap`,
//! so a renewal or reload replaces it for new handshakes while live
//! connections keep the one they negotiated.

use crate::tls::{files::unix_to_rfc3339, inspect};
use arc_swap::ArcSwap;
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::{fmt, sync::Arc};

/// What the edge serves now, for logs, `/metrics`
/// (`vibectl_certificate_expiry_seconds`) and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCert {
    /// SHA-256 fingerprint of the leaf, `AB:CD:…` (as `openssl x509
    /// -fingerprint -sha256` prints it).
    pub sha256: String,
    /// The leaf's `notAfter`, Unix seconds.
    pub not_after_unix: i64,
    /// The leaf's subject distinguished name.
    pub subject: String,
}

impl ServedCert {
    /// Describes the leaf of `key`; `None` if it does not parse as X.509.
    pub fn of(key: &CertifiedKey) -> Option<Self> {
        let leaf = key.cert.first()?;
        let info = inspect::describe(leaf).ok()?;
        Some(Self {
            sha256: info.sha256,
            not_after_unix: info.not_after,
            subject: info.subject,
        })
    }

    /// The expiry as RFC 3339 (`2026-01-31T12:00:00Z`).
    pub fn not_after(&self) -> String {
        unix_to_rfc3339(self.not_after_unix)
    }
}

/// The served key and its description: one snapshot, swapped as a whole.
struct Current {
    key: Arc<CertifiedKey>,
    served: Option<ServedCert>,
}

/// Serves one certificate (whatever the SNI) that can be swapped at any time.
pub struct CertResolver {
    current: ArcSwap<Current>,
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(Self::snapshot(key)),
        }
    }

    fn snapshot(key: CertifiedKey) -> Current {
        Current {
            served: ServedCert::of(&key),
            key: Arc::new(key),
        }
    }

    /// Serves `key` to every handshake from now on; existing connections
    /// are untouched (they hold their own `Arc`).
    pub fn swap(&self, key: CertifiedKey) {
        self.current.store(Arc::new(Self::snapshot(key)));
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load().key.clone()
    }

    /// What is served now: the leaf's fingerprint, expiry and subject
    /// (`None` only if the leaf does not parse as X.509).
    pub fn served(&self) -> Option<ServedCert> {
        self.current.load().served.clone()
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.load();
        f.debug_struct("CertResolver")
            .field("chain_len", &current.key.cert.len())
            .field("served", &current.served)
            .finish()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
