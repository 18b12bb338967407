//! The default source: a local CA and a server certificate generated with
//! rcgen on first run (in `tls.self_signed.dir` or `<state_dir>/certs`),
//! reused afterwards and re-issued at start when stale.

use super::{CertSource, Serving};
use crate::tls::{TlsError, files, self_signed};
use tokio_util::sync::CancellationToken;
use vibectl_config::{Config, SelfSignedTls};

/// `[tls.self_signed]` (or no `[tls]` source at all).
pub(super) struct SelfSignedSource(pub(super) SelfSignedTls);

#[async_trait::async_trait]
impl CertSource for SelfSignedSource {
    async fn start(
        self: Box<Self>,
        config: &Config,
        _shutdown: CancellationToken,
    ) -> Result<Serving, TlsError> {
        let Self(opts) = *self;
        let dir = opts
            .dir
            .unwrap_or_else(|| config.edge.state_dir().join("certs"));
        let made = self_signed::ensure(&dir, &config.edge.hostnames, opts.validity_days, false)?;
        let key = files::load(&made.cert_path, &made.key_path)?;
        tracing::info!(
            ca_bundle = %made.ca_bundle_path.display(),
            sha256 = %made.ca_fingerprint,
            "self-signed TLS: give clients the CA bundle (--ca-bundle)"
        );
        let mut serving = Serving::fixed(config, key)?;
        serving.self_signed = Some(made);
        Ok(serving)
    }
}
