//! What the TLS listener's resolver does in ACME mode, and how a new ACME
//! certificate gets there.

use super::AcmeStatus;
use crate::tls::{CertResolver, ServedCert, files, files::unix_to_rfc3339, inspect};
use arc_swap::ArcSwap;
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_acme::{ResolvesServerCertAcme, is_tls_alpn_challenge};
use std::{path::Path, sync::Arc};
use tokio::sync::watch;

/// Answers TLS-ALPN-01 validation handshakes (ALPN exactly `acme-tls/1`)
/// with rustls-acme's challenge certificate, and every other handshake with
/// the served certificate: the self-signed fallback until an ACME
/// certificate is deployed, then that one.
#[derive(Debug)]
pub struct AcmeResolver {
    pub(super) challenges: Arc<ArcSwap<ResolvesServerCertAcme>>,
    pub(super) served: Arc<CertResolver>,
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if is_tls_alpn_challenge(&hello) {
            // `None` (no challenge pending for this SNI) fails the handshake.
            return self.challenges.load().resolve(hello);
        }
        Some(self.served.current())
    }
}

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Read from the cache at start.
    Cache,
    /// Just issued by the CA.
    Issued,
}

/// Checks ACME certificates (the PEM rustls-acme caches: key, then chain)
/// and swaps the servable ones into the served resolver.
#[derive(Debug)]
pub(super) struct Deployer {
    pub(super) served: Arc<CertResolver>,
    pub(super) status: watch::Sender<AcmeStatus>,
}

impl Deployer {
    /// Serves `pem` from now on if it is a valid chain with its key (not
    /// expired); otherwise keeps what is served and records why.
    pub(super) fn deploy(&self, pem: &[u8], path: &Path, source: Source) {
        let what = match source {
            Source::Cache => "cached",
            Source::Issued => "new",
        };
        match files::parse(pem, pem, path, path) {
            Ok(key) => {
                let leaf = key.cert.first().and_then(|c| inspect::describe(c).ok());
                let served = ServedCert::of(&key);
                if served.is_some() && self.status.borrow().served == served {
                    // Read again by a fresh ACME state: already served.
                    return;
                }
                self.served.swap(key);
                if let Some(leaf) = &leaf {
                    // rustls-acme renews once two thirds of the lifetime are gone.
                    let renew_at = leaf.not_after - (leaf.not_after - leaf.not_before) / 3;
                    tracing::info!(
                        sha256 = %leaf.sha256,
                        not_after = %unix_to_rfc3339(leaf.not_after),
                        renew_at = %unix_to_rfc3339(renew_at),
                        names = ?leaf.sans,
                        "ACME: serving the {what} certificate"
                    );
                }
                self.status.send_modify(|status| {
                    status.served = served;
                    status.deployed += 1;
                    status.issued += u64::from(source == Source::Issued);
                    status.last_error = None;
                });
            }
            Err(error) => {
                let message = format!("the {what} certificate cannot be served: {error}");
                tracing::warn!("ACME: {message}; a new one will be ordered");
                self.status
                    .send_modify(|status| status.last_error = Some(message));
            }
        }
    }
}
