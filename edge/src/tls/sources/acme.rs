//! The ACME source (`[tls.acme]`, `serve-acme`): an adapter over
//! [`crate::tls::acme::start()`], which serves a self-signed fallback until
//! the first ACME certificate is deployed, then orders and renews in the
//! background (its internals live in `tls/acme/`).

use super::{CertSource, Serving};
use crate::shared_redis::SharedRedis;
use crate::tls::{
    TlsError,
    acme::{self, ProbePolicy},
};
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;

/// `[tls.acme]`; its Redis storage uses the edge's one handle, if any.
pub(super) struct AcmeSource(pub(super) Option<SharedRedis>);

#[async_trait::async_trait]
impl CertSource for AcmeSource {
    async fn start(
        self: Box<Self>,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Result<Serving, TlsError> {
        let setup = acme::start(config, &ProbePolicy::default(), self.0.as_ref(), shutdown).await?;
        Ok(Serving {
            server_config: setup.server_config,
            resolver: setup.resolver,
            self_signed: None,
            rotation: None,
            acme: Some(setup.acme),
        })
    }
}
