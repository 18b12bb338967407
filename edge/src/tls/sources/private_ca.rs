//! The server certificate of a private CA directory (`[tls.private_ca]`,
//! `serve-ca`): `server.crt`/`server.key` made by `vibectl-edge ca …`,
//! rotated when they change.

use super::{CertSource, Serving};
use crate::tls::{TlsError, WatchedPair, ca, files, inspect};
use tokio_util::sync::CancellationToken;
use vibectl_config::{Config, PrivateCaTls};

/// `[tls.private_ca]`.
pub(super) struct PrivateCa(pub(super) PrivateCaTls);

#[async_trait::async_trait]
impl CertSource for PrivateCa {
    async fn start(
        self: Box<Self>,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Result<Serving, TlsError> {
        let Self(opts) = *self;
        let cert_file = opts.dir.join(ca::files::SERVER_CRT);
        let key_file = opts.dir.join(ca::files::SERVER_KEY);
        if !cert_file.exists() || !key_file.exists() {
            return Err(TlsError::CaNoServerCert { dir: opts.dir });
        }
        let key = files::load(&cert_file, &key_file)?;
        match ca::bundle(&opts.dir)
            .ok()
            .and_then(|pem| inspect::chain_ders(&pem).ok())
        {
            Some(bundle) => tracing::info!(
                ca_bundle = %opts.dir.join(ca::files::BUNDLE).display(),
                root_sha256 = %inspect::fingerprint(&bundle[0]),
                "TLS: serving the private CA's certificate; clients trust the CA bundle (--ca-bundle)"
            ),
            None => tracing::warn!(
                dir = %opts.dir.display(),
                "TLS: serving the private CA's certificate, but its ca-bundle.crt is unreadable"
            ),
        }
        let pair = WatchedPair {
            cert_file,
            key_file,
        };
        Serving::watched(config, key, pair, shutdown)
    }
}
