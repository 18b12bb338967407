//! Certificate sources: each one loads the first certificate, puts it in
//! the one [`CertResolver`] and keeps it fresh in the background. The
//! configuration chooses one ([`choose`]: the only `TlsMode` match); the
//! composition root starts it ([`CertSource::start`]) and serves what it
//! returns ([`Serving`]).
//!
//! | source | file | kept fresh by |
//! | --- | --- | --- |
//! | self-signed (default) | [`self_signed`] | nothing (re-issued at start when stale) |
//! | operator files (`[tls.files]`) | [`files`] | [`crate::tls::rotation`] of the pair |
//! | private CA (`[tls.private_ca]`) | [`private_ca`] | [`crate::tls::rotation`] of `server.crt`/`.key` |
//! | ACME (`[tls.acme]`) | [`acme`] | the ACME task ([`crate::tls::acme`]) |
//!
//! To add a source: one file here implementing [`CertSource`], one arm in
//! [`choose`] (and its `TlsMode` in `vibectl_config`).

mod acme;
mod files;
mod private_ca;
mod self_signed;

use crate::shared_redis::SharedRedis;
use crate::tls::{
    CertResolver, Rotation, SelfSigned, TlsError, WatchedPair, acme::Acme, install_crypto_provider,
    rotation, server_config,
};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vibectl_config::{Config, TlsMode};

/// A place certificates come from.
#[async_trait::async_trait]
pub trait CertSource: Send {
    /// Loads the first certificate and starts what keeps it fresh (until
    /// `shutdown` fires). Must run inside a tokio runtime.
    async fn start(
        self: Box<Self>,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Result<Serving, TlsError>;
}

/// A started source: what the TLS listener serves, and what keeps it fresh.
#[derive(Debug)]
pub struct Serving {
    /// The TLS configuration of the main listener.
    pub server_config: Arc<rustls::ServerConfig>,
    /// What is served (for `/metrics`, logs and tests).
    pub resolver: Arc<CertResolver>,
    /// The generated CA and leaf (self-signed source).
    pub self_signed: Option<SelfSigned>,
    /// The rotation of watched files (files and private-CA sources).
    pub rotation: Option<Rotation>,
    /// The ACME task (ACME source).
    pub acme: Option<Acme>,
}

/// The source `config.tls` names: `[tls.files]`, `[tls.private_ca]`,
/// `[tls.acme]`, else self-signed.
pub fn choose(config: &Config, redis: Option<&SharedRedis>) -> Box<dyn CertSource> {
    match config.tls.mode() {
        TlsMode::Files(opts) => Box::new(files::Files(opts)),
        TlsMode::PrivateCa(opts) => Box::new(private_ca::PrivateCa(opts)),
        TlsMode::SelfSigned(opts) => Box::new(self_signed::SelfSignedSource(opts)),
        TlsMode::Acme(_) => Box::new(acme::AcmeSource(redis.cloned())),
    }
}

/// [`choose`], then [`CertSource::start`]; logs what is served.
pub async fn start(
    config: &Config,
    redis: Option<&SharedRedis>,
    shutdown: CancellationToken,
) -> Result<Serving, TlsError> {
    install_crypto_provider();
    let serving = choose(config, redis).start(config, shutdown).await?;
    if let Some(served) = serving.resolver.served() {
        tracing::info!(
            sha256 = %served.sha256,
            not_after = %served.not_after(),
            subject = %served.subject,
            "TLS: serving certificate"
        );
    }
    Ok(serving)
}

impl Serving {
    /// Serves `key`, a certificate that changes only with a restart.
    pub fn fixed(config: &Config, key: CertifiedKey) -> Result<Self, TlsError> {
        let resolver = Arc::new(CertResolver::new(key));
        let server_config = server_config(&config.tls, resolver.clone())?;
        Ok(Self {
            server_config: Arc::new(server_config),
            resolver,
            self_signed: None,
            rotation: None,
            acme: None,
        })
    }

    /// Serves `key`, read from `pair`, and swaps in new versions of the
    /// pair as they land (re-checked every `tls.reload_interval` too).
    fn watched(
        config: &Config,
        key: CertifiedKey,
        pair: WatchedPair,
        shutdown: CancellationToken,
    ) -> Result<Self, TlsError> {
        let mut serving = Self::fixed(config, key)?;
        let rotation = rotation::spawn(
            pair,
            &serving.resolver,
            config.tls.reload_interval,
            shutdown,
        )?;
        serving.rotation = Some(rotation);
        Ok(serving)
    }
}
