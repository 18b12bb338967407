//! The ACME source (`[tls.acme]`, `serve-acme`): an adapter over
//! [`crate::tls::acme::start`], which serves a self-signed fallback until
//! the first ACME certificate is deployed, then orders and renews in the
//! background (its internals live in `tls/acme/`).

use super::{CertSource, Serving};
use crate::tls::{
    TlsError,
    acme::{self, ProbePolicy},
};
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;

/// `[tls.acme]`.
pub(super) struct AcmeSource;

#[async_trait::async_trait]
impl CertSource for AcmeSource {
    async fn start(
        self: Box<Self>,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Result<Serving, TlsError> {
        let setup = acme::start(config, &ProbePolicy::default(), shutdown).await?;
        Ok(Serving {
            server_config: setup.server_config,
            resolver: setup.resolver,
            self_signed: None,
            rotation: None,
            acme: Some(setup.acme),
        })
    }
}
