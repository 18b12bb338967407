//! TLS: one [`server_config`] builder (versions, AEAD suites, ALPN `h2`) and
//! the certificate sources that plug a [`CertResolver`] into it:
//! [`self_signed`] (generated once with rcgen, persisted) and [`files`]
//! (operator PEM). A private CA and ACME are later modules beside these;
//! they too only produce a `CertifiedKey` for the resolver.

pub mod files;
mod resolver;
pub mod self_signed;
mod server_config;

pub use resolver::CertResolver;
pub use self_signed::SelfSigned;
pub use server_config::{ALPN_H2, crypto_provider, install_crypto_provider, server_config};

use std::{path::PathBuf, sync::Arc};
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
    /// rcgen could not make a certificate or key.
    #[error("cannot generate the self-signed certificate in {}: {source}", dir.display())]
    Generate {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: rcgen::Error,
    },
    /// A host name cannot go into a certificate.
    #[error("host name `{name}` cannot go into a certificate: {message}")]
    BadHostname {
        /// The name.
        name: String,
        /// Why.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
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
        })
    }
}

/// Loads the certificate source `config.tls` names: `[tls.files]`, else
/// self-signed (generated on first run in `tls.self_signed.dir` or
/// `<state_dir>/certs`, reused afterwards).
pub fn load(config: &Config) -> Result<TlsSetup, TlsError> {
    install_crypto_provider();
    match config.tls.mode() {
        TlsMode::Files(files) => {
            let key = files::load(&files.cert_file, &files.key_file)?;
            tracing::info!(cert = %files.cert_file.display(), "TLS: serving the operator's certificate");
            TlsSetup::from_key(config, key, None)
        }
        TlsMode::SelfSigned(opts) => {
            let dir = opts
                .dir
                .clone()
                .unwrap_or_else(|| config.edge.state_dir().join("certs"));
            let made =
                self_signed::ensure(&dir, &config.edge.hostnames, opts.validity_days, false)?;
            let key = files::load(&made.cert_path, &made.key_path)?;
            TlsSetup::from_key(config, key, Some(made))
        }
    }
}
