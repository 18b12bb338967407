//! Issuing certificates with rcgen: CAs (the self-signed mode's local CA;
//! the private CA's root and intermediate) and leaves (server, client).
//! Pure functions, PEM in and PEM out; writing files is
//! [`crate::tls::store`]'s job, reading them back [`crate::tls::inspect`]'s.
//! Every key is ECDSA P-256; every serial number is 128 random bits.
//!
//! `issue` makes CAs and leaves, `names` checks the host and client
//! names that go into them, and [`Issuer`] is a CA loaded for signing.

mod issue;
mod issuer;
mod names;

pub use issue::{client_cert, intermediate_ca, root_ca, self_signed_ca, server_cert};
pub use issuer::{Issued, Issuer};
pub use names::{check_client_name, normalize_host};

/// The organization name in every certificate the edge issues.
pub const ORGANIZATION: &str = "vibectl LLM proxy";

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or the key.
    #[error("cannot {what}: {source}")]
    Rcgen {
        /// What was being done.
        what: &'static str,
        /// rcgen's reason.
        source: rcgen::Error,
    },
    /// A host name that is neither a DNS name nor an IP address.
    #[error("host name `{name}` cannot go into a certificate: {reason}")]
    BadHost {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A client name that cannot be a certificate's common name and file name.
    #[error("client name `{name}` is not usable: {reason}")]
    BadClientName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA key is not the key of the CA certificate.
    #[error("the CA key does not belong to the CA certificate")]
    CaKeyMismatch,
    /// A server certificate needs at least one name.
    #[error("a server certificate needs at least one host name or IP address")]
    NoHosts,
}

fn rc(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { what, source }
}
