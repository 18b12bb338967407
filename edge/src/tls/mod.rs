//! TLS: one [`server_config`] builder (versions, AEAD suites, ALPN `h2`,
//! optional client certificates) and the certificate sources that plug a
//! [`CertResolver`] into it: [`self_signed`] (generated once with rcgen,
//! persisted), [`files`] (operator PEM) and [`ca`] (the private CA of
//! `vibectl-edge ca …`, served by `serve-ca`). Files and private-CA
//! certificates are reloaded when they change ([`rotation`]). [`acme`]
//! orders and renews certificates from an ACME CA and swaps them into the
//! same [`CertResolver`] (`serve-acme`).
//!
//! Issuing ([`pki`]), reading ([`inspect`]) and writing ([`store`])
//! certificates is shared by the self-signed mode and the private CA: one
//! way to make a CA and a leaf in the codebase.
//!
//! What the rest of the edge reads from here: [`ClientIdentity`] (in request
//! extensions under mutual TLS), [`HandshakeStats`] (failed handshakes by
//! reason) and [`CertResolver::served`] (the served certificate's
//! fingerprint and expiry).

pub mod acme;
pub mod ca;
mod client_auth;
pub mod files;
pub mod inspect;
mod pki;
mod resolver;
mod rotation;
pub(crate) mod self_signed;
mod server_config;
mod stats;
pub mod store;

pub use client_auth::ClientIdentity;
pub use resolver::{CertResolver, ServedCert};
pub use rotation::{Rotation, RotationStatus, WatchedPair};
pub use self_signed::SelfSigned;
pub use server_config::{crypto_provider, install_crypto_provider, server_config};
pub use stats::{HandshakeFailure, HandshakeStats};

use std::{path::PathBuf, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use vibectl_config::{Config, TlsMode};

/// What can go wrong with certificates. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read, written or created.
    #[error("{action} {}: {source}", path.display())]
    File {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{} is not a valid PEM {what}: {message}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The parser's message.
        message: String,
    },
    /// The certificate file holds no certificate.
    #[error("{} holds no PEM certificate (expected the chain, leaf first)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds a key of a type rustls cannot sign with.
    #[error("{} holds an unsupported private key: {message}", path.display())]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The private key is not the key of the certificate.
    #[error(
        "the private key in {} does not match the certificate in {} (wrong key file, or the chain is not leaf first)",
        key_file.display(),
        cert_file.display()
    )]
    KeyDoesNotMatchCertificate {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
    },
    /// A certificate or key could not be made (or a CA loaded for signing).
    #[error("certificates in {}: {source}", dir.display())]
    Generate {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: pki::PkiError,
    },
    /// A PEM block that is not an X.509 certificate.
    #[error("{}: {source}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        source: inspect::InspectError,
    },
    /// The leaf certificate has expired.
    #[error("the certificate in {} expired at {not_after}", path.display())]
    CertificateExpired {
        /// The file.
        path: PathBuf,
        /// Its `notAfter`, RFC 3339.
        not_after: String,
    },
    /// The leaf certificate is not valid yet.
    #[error("the certificate in {} is not valid before {not_before} (check the clocks)", path.display())]
    CertificateNotYetValid {
        /// The file.
        path: PathBuf,
        /// Its `notBefore`, RFC 3339.
        not_before: String,
    },
    /// A certificate of the chain is not issued by the next one.
    #[error(
        "the chain in {} is not in order: certificate {position} did not issue the one before it (expected the leaf first, then each issuer)",
        path.display()
    )]
    ChainOutOfOrder {
        /// The file.
        path: PathBuf,
        /// 1-based position of the certificate that should be the issuer.
        position: usize,
    },
    /// A file exists and `--force` was not given.
    #[error("{} already exists; pass --force to replace it", path.display())]
    FileExists {
        /// The file.
        path: PathBuf,
    },
    /// `ca create-*` before `ca init`.
    #[error(
        "no CA in {dir} (missing {missing}); run `vibectl-edge ca init --dir {dir}` first",
        dir = dir.display()
    )]
    CaNotInitialized {
        /// The directory.
        dir: PathBuf,
        /// The first missing file.
        missing: &'static str,
    },
    /// Some CA files exist, others do not.
    #[error(
        "{} holds an incomplete CA (has {}; lacks {}): restore the missing files, or pass --force to replace it with a new CA (clients then need the new ca-bundle.crt)",
        dir.display(), present.join(", "), missing.join(", ")
    )]
    CaIncomplete {
        /// The directory.
        dir: PathBuf,
        /// CA files present.
        present: Vec<String>,
        /// CA files missing.
        missing: Vec<String>,
    },
    /// The CA files do not belong together.
    #[error("the CA in {} is inconsistent: {reason}", dir.display())]
    CaInconsistent {
        /// The directory.
        dir: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// `serve-ca` on a CA without a server certificate.
    #[error(
        "no server certificate in {dir}: run `vibectl-edge ca create-server-cert --dir {dir} HOST…` first",
        dir = dir.display()
    )]
    CaNoServerCert {
        /// The CA directory.
        dir: PathBuf,
    },
    /// A server certificate exists that is not the one asked for.
    #[error("{} already exists and {reason}; pass --force to replace it", path.display())]
    ServerCertExists {
        /// The certificate file.
        path: PathBuf,
        /// How it differs from what was asked.
        reason: String,
    },
    /// `tls.client_ca_file` cannot be used.
    #[error("tls.client_ca_file {}: {message}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// `ca check-expiry`: certificates expire within the window.
    #[error("{count} certificate(s) in {} expire within {days} days (or have expired)", dir.display())]
    Expiring {
        /// The CA directory.
        dir: PathBuf,
        /// How many.
        count: usize,
        /// The window, in days.
        days: u32,
    },
    /// A directory cannot be watched for certificate rotation.
    #[error("cannot watch {} for certificate changes: {message}", path.display())]
    Watch {
        /// The directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
    /// ACME cannot start (settings, cache directory, directory URL).
    #[error(transparent)]
    Acme(#[from] acme::AcmeError),
    /// `[tls.acme]` given to [`load`], which cannot order certificates.
    #[error(
        "[tls.acme] certificates are ordered by `vibectl-edge serve` or `serve-acme` (tls::acme::start), not by tls::load"
    )]
    AcmeNeedsServe,
}

/// The TLS side of an edge: the `ServerConfig` to serve with, and the
/// resolver behind it (kept to swap certificates without a restart).
#[derive(Debug, Clone)]
pub struct TlsSetup {
    /// Pass to [`crate::Transport::Tls`].
    pub server_config: Arc<rustls::ServerConfig>,
    /// The resolver inside `server_config`.
    pub resolver: Arc<CertResolver>,
    /// Set in self-signed mode: where the files are, the CA fingerprint.
    pub self_signed: Option<SelfSigned>,
    /// Set for files and private-CA modes: the pair to watch for rotation.
    pub watched: Option<WatchedPair>,
    /// The periodic re-check of the watched pair (`tls.reload_interval`).
    pub reload_interval: Duration,
}

impl TlsSetup {
    /// Builds the setup for an already loaded certificate.
    pub fn from_key(
        config: &Config,
        key: rustls::sign::CertifiedKey,
        self_signed: Option<SelfSigned>,
    ) -> Result<Self, TlsError> {
        let resolver = Arc::new(CertResolver::new(key));
        let server_config = server_config(&config.tls, resolver.clone())?;
        Ok(Self {
            server_config: Arc::new(server_config),
            resolver,
            self_signed,
            watched: None,
            reload_interval: config.tls.reload_interval,
        })
    }

    /// Starts the certificate rotation of the watched pair (files and
    /// private-CA modes; `None` otherwise) until `shutdown` fires. Must run
    /// inside a tokio runtime.
    pub fn start_rotation(
        &self,
        shutdown: CancellationToken,
    ) -> Result<Option<Rotation>, TlsError> {
        self.watched
            .clone()
            .map(|pair| rotation::spawn(pair, &self.resolver, self.reload_interval, shutdown))
            .transpose()
    }
}

/// Loads the certificate source `config.tls` names: `[tls.files]`,
/// `[tls.private_ca]` (its `server.crt`/`server.key`), else self-signed
/// (generated on first run in `tls.self_signed.dir` or `<state_dir>/certs`,
/// reused afterwards). Logs what is served: fingerprint, expiry, subject.
pub fn load(config: &Config) -> Result<TlsSetup, TlsError> {
    install_crypto_provider();
    let setup = match config.tls.mode() {
        TlsMode::Files(opts) => {
            let key = files::load(&opts.cert_file, &opts.key_file)?;
            tracing::info!(cert = %opts.cert_file.display(), "TLS: serving the operator's certificate");
            let mut setup = TlsSetup::from_key(config, key, None)?;
            setup.watched = Some(WatchedPair {
                cert_file: opts.cert_file,
                key_file: opts.key_file,
            });
            setup
        }
        TlsMode::PrivateCa(opts) => {
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
            let mut setup = TlsSetup::from_key(config, key, None)?;
            setup.watched = Some(WatchedPair {
                cert_file,
                key_file,
            });
            setup
        }
        TlsMode::SelfSigned(opts) => {
            let dir = opts
                .dir
                .clone()
                .unwrap_or_else(|| config.edge.state_dir().join("certs"));
            let made =
                self_signed::ensure(&dir, &config.edge.hostnames, opts.validity_days, false)?;
            let key = files::load(&made.cert_path, &made.key_path)?;
            TlsSetup::from_key(config, key, Some(made))?
        }
        // Ordering and renewing needs tasks and listeners: `acme::start`.
        TlsMode::Acme(_) => return Err(TlsError::AcmeNeedsServe),
    };
    if let Some(served) = setup.resolver.served() {
        tracing::info!(
            sha256 = %served.sha256,
            not_after = %served.not_after(),
            subject = %served.subject,
            "TLS: serving certificate"
        );
    }
    Ok(setup)
}
