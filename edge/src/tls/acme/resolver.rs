//! What the TLS listener's resolver does in ACME mode, and how a new ACME
//! certificate gets there.

use super::{ACME_TLS_ALPN, AcmeStatus, answers::Answers};
use crate::tls::{CertResolver, ServedCert, files, files::unix_to_rfc3339, inspect};
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::{path::Path, sync::Arc};
use tokio::sync::watch;

/// Answers TLS-ALPN-01 validation handshakes (ALPN exactly `acme-tls/1`,
/// RFC 8737 §4) with the pending challenge certificate for the SNI, and
/// every other handshake with the served certificate: the self-signed
/// fallback until an ACME certificate is deployed, then that one.
#[derive(Debug)]
pub struct AcmeResolver {
    pub(super) answers: Answers,
    /// Answers of orders other replicas run (Redis storage).
    pub(super) remote: Answers,
    pub(super) served: Arc<CertResolver>,
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut alpn = hello.alpn().into_iter().flatten();
        if alpn.next() == Some(ACME_TLS_ALPN) && alpn.next().is_none() {
            // `None` (no challenge pending for this SNI) fails the handshake.
            let name = hello.server_name()?;
            return self
                .answers
                .tls_alpn(name)
                .or_else(|| self.remote.tls_alpn(name));
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
    /// Stored by another replica sharing the storage.
    Shared,
}

/// A certificate now served: its validity (Unix seconds) and its leaf.
#[derive(Debug, Clone)]
pub(super) struct Deployed {
    pub(super) not_before: i64,
    pub(super) not_after: i64,
    pub(super) leaf: Vec<u8>,
}

/// Checks ACME certificates (the cached PEM: key, then chain) and swaps
/// the servable ones into the served resolver.
#[derive(Debug)]
pub(super) struct Deployer {
    pub(super) served: Arc<CertResolver>,
    pub(super) status: watch::Sender<AcmeStatus>,
}

impl Deployer {
    /// Serves `pem` from now on if it is a valid chain with its key (not
    /// expired); otherwise keeps what is served and records why.
    pub(super) fn deploy(&self, pem: &[u8], path: &Path, source: Source) -> Option<Deployed> {
        let what = match source {
            Source::Cache => "cached",
            Source::Issued => "new",
            Source::Shared => "shared",
        };
        match files::parse(pem, pem, path, path) {
            Ok(key) => {
                let leaf = key.cert.first().and_then(|c| inspect::describe(c).ok());
                let served = ServedCert::of(&key);
                let deployed = match (&leaf, key.cert.first()) {
                    (Some(l), Some(der)) => Some(Deployed {
                        not_before: l.not_before,
                        not_after: l.not_after,
                        leaf: der.to_vec(),
                    }),
                    _ => None,
                };
                self.served.swap(key);
                if let Some(leaf) = &leaf {
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
                    status.expired = false;
                });
                deployed
            }
            Err(error) => {
                let message = format!("the {what} certificate cannot be served: {error}");
                tracing::warn!("ACME: {message}; a new one will be ordered");
                self.status
                    .send_modify(|status| status.last_error = Some(message));
                None
            }
        }
    }
}
