//! TLS: one [`server_config`] builder (versions, AEAD suites, ALPN `h2`,
//! optional client certificates) and the certificate [`sources`] that feed
//! the one [`CertResolver`] inside it, each behind the
//! [`sources::CertSource`] trait: self-signed ([`self_signed`]: generated
//! once with rcgen, persisted), operator [`files`], the private CA of
//! `vibectl-edge ca …` ([`ca`], served by `serve-ca`) — the last two
//! reloaded when they change ([`rotation`]) — and ACME ([`acme`]: orders
//! and renews certificates and swaps them into the same resolver).
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
#[cfg(test)]
mod client_check;
pub mod files;
pub mod inspect;
mod pki;
mod resolver;
mod rotation;
pub(crate) mod self_signed;
mod server_config;
pub mod sources;
mod stats;
pub mod store;

pub use client_auth::ClientIdentity;
pub use resolver::{CertResolver, ServedCert};
#[cfg(any(test, feature = "test-support"))]
pub use rotation::RotationStatus;
pub use rotation::{Rotation, WatchedPair};
pub use self_signed::SelfSigned;
pub use server_config::{crypto_provider, install_crypto_provider, server_config};
pub use stats::{HandshakeFailure, HandshakeStats};

use std::path::PathBuf;

/// What can go wrong loading, serving and rotating certificates (the
/// `ca` commands' own refusals are [`ca::CaError`]). Every variant names the file.
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
    /// `serve-ca` on a CA without a server certificate.
    #[error(
        "no server certificate in {dir}: run `vibectl-edge ca create-server-cert --dir {dir} HOST…` first",
        dir = dir.display()
    )]
    CaNoServerCert {
        /// The CA directory.
        dir: PathBuf,
    },
    /// `tls.client_ca_file` cannot be used.
    #[error("tls.client_ca_file {}: {message}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
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
}
