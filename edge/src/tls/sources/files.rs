//! The operator's PEM files (`[tls.files]`, `serve-custom`), rotated when
//! they change.

use super::{CertSource, Serving};
use crate::tls::{TlsError, WatchedPair, files};
use tokio_util::sync::CancellationToken;
use vibectl_config::{Config, FilesTls};

/// `[tls.files]`.
pub(super) struct Files(pub(super) FilesTls);

#[async_trait::async_trait]
impl CertSource for Files {
    async fn start(
        self: Box<Self>,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Result<Serving, TlsError> {
        let Self(opts) = *self;
        let key = files::load(&opts.cert_file, &opts.key_file)?;
        tracing::info!(cert = %opts.cert_file.display(), "TLS: serving the operator's certificate");
        let pair = WatchedPair {
            cert_file: opts.cert_file,
            key_file: opts.key_file,
        };
        Serving::watched(config, key, pair, shutdown)
    }
}
