//! For tests: checks a served chain the way rustls clients (tonic,
//! vibectl's grpc) do, trusting one CA bundle alone.

use rustls::{
    RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use std::{path::Path, sync::Arc};

/// Verifies the chain in `chain_file` (leaf first) for `name`, trusting
/// only the certificates in `bundle_file`.
pub(crate) fn verify_chain(
    bundle_file: &Path,
    chain_file: &Path,
    name: &str,
) -> Result<(), rustls::Error> {
    crate::tls::install_crypto_provider();
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(bundle_file).expect("bundle") {
        roots.add(ca.expect("ca")).expect("add");
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(chain_file)
        .expect("chain")
        .map(|c| c.expect("cert"))
        .collect();
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(crate::tls::crypto_provider()),
    )
    .build()
    .expect("verifier");
    let server = ServerName::try_from(name.to_owned()).expect("name");
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server, &[], UnixTime::now())
        .map(|_| ())
}
