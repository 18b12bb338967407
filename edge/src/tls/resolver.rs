//! The certificate resolver every mode plugs into the `ServerConfig`: one
//! `CertifiedKey` behind an `ArcSwap`, so a renewal or reload replaces it for
//! new handshakes while live connections keep the one they negotiated.

use arc_swap::ArcSwap;
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::{fmt, sync::Arc};

/// Serves one certificate (whatever the SNI) that can be swapped at any time.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// Serves `key` to every handshake from now on; existing connections
    /// are untouched (they hold their own `Arc`).
    pub fn swap(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chain = self.current.load().cert.len();
        f.debug_struct("CertResolver")
            .field("chain_len", &chain)
            .finish()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
