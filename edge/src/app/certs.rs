//! The choice of certificate source: none (h2c), `[tls.acme]` (ordered and
//! renewed in the background), or what [`tls::load`] reads (files, private
//! CA, self-signed), with rotation of watched files.

use crate::{
    EdgeError, Transport,
    tls::{
        self, CertResolver, Rotation, SelfSigned,
        acme::{self, Acme, ProbePolicy},
    },
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vibectl_config::{Config, TlsMode};

/// The certificates an edge serves, and what keeps them fresh.
pub(super) struct Certificates {
    /// What the main listener speaks.
    pub transport: Transport,
    /// What is served (TLS only).
    pub resolver: Option<Arc<CertResolver>>,
    /// The generated CA and leaf (self-signed mode).
    pub self_signed: Option<SelfSigned>,
    /// The rotation of watched files (files and private-CA modes).
    pub rotation: Option<Rotation>,
    /// The ACME task (ACME mode).
    pub acme: Option<Acme>,
}

impl Certificates {
    /// Plaintext h2c: no certificate at all.
    pub fn none() -> Self {
        Self {
            transport: Transport::Insecure,
            resolver: None,
            self_signed: None,
            rotation: None,
            acme: None,
        }
    }

    /// Loads (or starts ordering) what `config.tls` names; background work
    /// stops when `shutdown` fires.
    pub async fn load(config: &Config, shutdown: &CancellationToken) -> Result<Self, EdgeError> {
        if let TlsMode::Acme(_) = config.tls.mode() {
            let setup = acme::start(config, &ProbePolicy::default(), shutdown.clone()).await?;
            return Ok(Self {
                transport: Transport::Tls(setup.server_config),
                resolver: Some(setup.resolver),
                self_signed: None,
                rotation: None,
                acme: Some(setup.acme),
            });
        }
        let setup = tls::load(config)?;
        // Files and private CA: swap renewed certificates in as they land.
        let rotation = setup.start_rotation(shutdown.clone())?;
        if let Some(made) = &setup.self_signed {
            tracing::info!(
                ca_bundle = %made.ca_bundle_path.display(),
                sha256 = %made.ca_fingerprint,
                "self-signed TLS: give clients the CA bundle (--ca-bundle)"
            );
        }
        Ok(Self {
            transport: Transport::Tls(setup.server_config),
            resolver: Some(setup.resolver),
            self_signed: setup.self_signed,
            rotation,
            acme: None,
        })
    }
}
