//! The certificate source of an edge: none (h2c), or the one `config.tls`
//! names, started through [`crate::tls::sources`] (self-signed, files,
//! private CA, ACME: each a [`crate::tls::sources::CertSource`]).

#[cfg(any(test, feature = "test-support"))]
use crate::tls::SelfSigned;
use crate::{
    EdgeError, Transport,
    tls::{
        CertResolver, Rotation,
        acme::Acme,
        sources::{self, Serving},
    },
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vibectl_config::Config;

/// The certificates an edge serves, and what keeps them fresh.
pub(super) struct Certificates {
    /// What the main listener speaks.
    pub transport: Transport,
    /// What is served (TLS only).
    pub resolver: Option<Arc<CertResolver>>,
    /// The generated CA and leaf (self-signed source; read by tests).
    #[cfg(any(test, feature = "test-support"))]
    pub self_signed: Option<SelfSigned>,
    /// The rotation of watched files (files and private-CA sources).
    pub rotation: Option<Rotation>,
    /// The ACME task (ACME source).
    pub acme: Option<Acme>,
}

impl Certificates {
    /// Plaintext h2c: no certificate at all.
    pub fn none() -> Self {
        Self {
            transport: Transport::Insecure,
            resolver: None,
            #[cfg(any(test, feature = "test-support"))]
            self_signed: None,
            rotation: None,
            acme: None,
        }
    }

    /// Starts the source `config.tls` names; its background work stops
    /// when `shutdown` fires.
    pub async fn load(
        config: &Config,
        redis: Option<&crate::shared_redis::SharedRedis>,
        shutdown: &CancellationToken,
    ) -> Result<Self, EdgeError> {
        let Serving {
            server_config,
            resolver,
            #[cfg(any(test, feature = "test-support"))]
            self_signed,
            rotation,
            acme,
            ..
        } = sources::start(config, redis, shutdown.clone()).await?;
        Ok(Self {
            transport: Transport::Tls(server_config),
            resolver: Some(resolver),
            #[cfg(any(test, feature = "test-support"))]
            self_signed,
            rotation,
            acme,
        })
    }
}
