//! Mutual TLS, optional: with `tls.client_ca_file`, clients present a
//! certificate issued by one of the CAs in that file (`ca create-client-cert`
//! makes them), verified by rustls' `WebPkiClientVerifier` during the
//! handshake. `tls.client_auth = "required"` (the default once a client CA
//! is set) refuses a handshake without one; `"optional"` accepts clients
//! without a certificate but still refuses an invalid one.
//!
//! The verified certificate's identity becomes a [`ClientIdentity`]: the
//! accept loop puts it into the connection's span and into every request's
//! context (`http::RequestContext::client`), where any layer reads it. A
//! request without one
//! came over a connection without a client certificate. A client
//! certificate never replaces the JWT: with auth on, a call needs both.

use crate::tls::{TlsError, crypto_provider, inspect};
use rustls::{
    RootCertStore,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use std::{path::Path, sync::Arc};
use vibectl_config::{ClientAuth, TlsConfig};

/// Who the client is, from its verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's common name (what `ca create-client-cert NAME` put
    /// there), if it has one.
    pub common_name: Option<String>,
    /// The whole subject distinguished name.
    pub subject: String,
    /// SHA-256 fingerprint of the client's certificate, `AB:CD:…`.
    pub sha256: String,
}

impl ClientIdentity {
    /// The identity of a verified leaf certificate (DER); `None` if it does
    /// not parse (rustls verified it, so that does not happen in practice).
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let info = inspect::describe(der).ok()?;
        Some(Self {
            common_name: info.common_name,
            subject: info.subject,
            sha256: info.sha256,
        })
    }

    /// The identity of the peer of a finished handshake, if it presented a
    /// certificate (rustls only completes the handshake once it verified it).
    pub fn of_connection(conn: &rustls::ServerConnection) -> Option<Self> {
        conn.peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| Self::from_der(leaf))
    }
}

/// The client certificate verifier `tls` asks for, `None` without
/// `tls.client_ca_file`.
pub fn verifier(tls: &TlsConfig) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    let Some(file) = &tls.client_ca_file else {
        return Ok(None);
    };
    let roots = read_roots(file)?;
    let builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(crypto_provider()));
    let builder = match tls.client_auth.unwrap_or_default() {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    let verifier = builder.build().map_err(|e| TlsError::ClientCa {
        path: file.clone(),
        message: e.to_string(),
    })?;
    Ok(Some(verifier))
}

fn read_roots(file: &Path) -> Result<RootCertStore, TlsError> {
    let bad = |message: String| TlsError::ClientCa {
        path: file.to_owned(),
        message,
    };
    std::fs::metadata(file).map_err(|source| TlsError::File {
        action: "cannot read",
        path: file.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_file_iter(file)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("it holds no PEM certificate".to_owned()));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| bad(format!("certificate {} is not a usable CA: {e}", i + 1)))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{CertResolver, ca, files, server_config};
    use rustls::{ClientConfig, ClientConnection, ServerConnection};
    use rustls_pki_types::{PrivateKeyDer, ServerName};

    /// Runs a handshake in memory; the server's connection, or the first error.
    fn handshake(
        server: rustls::ServerConfig,
        client: ClientConfig,
    ) -> Result<ServerConnection, rustls::Error> {
        let mut server = ServerConnection::new(Arc::new(server))?;
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = ClientConnection::new(Arc::new(client), name)?;
        for _ in 0..20 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).expect("client write");
            server.read_tls(&mut buf.as_slice()).expect("server read");
            server.process_new_packets()?;
            let mut buf = Vec::new();
            server.write_tls(&mut buf).expect("server write");
            client.read_tls(&mut buf.as_slice()).expect("client read");
            client.process_new_packets()?;
            if !server.is_handshaking() && !client.is_handshaking() {
                return Ok(server);
            }
        }
        panic!("handshake did not finish");
    }

    struct Setup {
        _dir: tempfile::TempDir,
        server: rustls::ServerConfig,
        bundle: std::path::PathBuf,
        alice: ca::LeafReport,
    }

    fn setup(mode: &str) -> Setup {
        crate::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        ca::init(dir.path(), ca::Validity::default(), false).expect("init");
        ca::create_server_cert(dir.path(), &["localhost".into()], 30, false).expect("server");
        let alice = ca::create_client_cert(dir.path(), "alice", 30, false).expect("client");
        let bundle = dir.path().join(ca::files::BUNDLE);
        let toml = format!(
            "[tls]\nclient_ca_file = \"{}\"\nclient_auth = \"{mode}\"\n",
            bundle.display()
        );
        let config = vibectl_config::Config::from_toml(&toml, Path::new("t.toml")).expect("config");
        let key = files::load(
            &dir.path().join(ca::files::SERVER_CRT),
            &dir.path().join(ca::files::SERVER_KEY),
        )
        .expect("load");
        let server = server_config(&config.tls, Arc::new(CertResolver::new(key))).expect("server");
        Setup {
            _dir: dir,
            server,
            bundle,
            alice,
        }
    }

    fn client(bundle: &Path, identity: Option<&ca::LeafReport>) -> ClientConfig {
        let roots = read_roots(bundle).expect("roots");
        let builder = ClientConfig::builder_with_provider(Arc::new(crypto_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        match identity {
            Some(leaf) => {
                let chain = CertificateDer::pem_file_iter(&leaf.cert)
                    .expect("chain")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certs");
                let key = PrivateKeyDer::from_pem_file(&leaf.key).expect("key");
                builder.with_client_auth_cert(chain, key).expect("identity")
            }
            None => builder.with_no_client_auth(),
        }
    }

    #[test]
    fn required_mode_yields_the_verified_identity_or_refuses() {
        let s = setup("required");
        let conn = handshake(s.server.clone(), client(&s.bundle, Some(&s.alice))).expect("ok");
        let identity = ClientIdentity::of_connection(&conn).expect("identity");
        assert_eq!(identity.common_name.as_deref(), Some("alice"));
        assert_eq!(identity.sha256, s.alice.info.sha256);
        assert!(
            identity.subject.contains("CN=alice"),
            "{}",
            identity.subject
        );
        let err = handshake(s.server, client(&s.bundle, None)).expect_err("no cert");
        assert!(
            matches!(err, rustls::Error::NoCertificatesPresented),
            "{err:?}"
        );
    }

    #[test]
    fn optional_mode_accepts_no_certificate_but_not_a_foreign_one() {
        let s = setup("optional");
        let conn = handshake(s.server.clone(), client(&s.bundle, None)).expect("anonymous");
        assert_eq!(ClientIdentity::of_connection(&conn), None);
        let other = setup("optional");
        let err = handshake(s.server, client(&s.bundle, Some(&other.alice))).expect_err("foreign");
        assert!(
            matches!(err, rustls::Error::InvalidCertificate(_)),
            "{err:?}"
        );
    }

    #[test]
    fn a_bad_client_ca_file_is_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("clients.pem");
        std::fs::write(&file, "no certificates here\n").expect("write");
        let mut tls = TlsConfig {
            client_ca_file: Some(file),
            ..TlsConfig::default()
        };
        let err = verifier(&tls).expect_err("refused");
        assert!(err.to_string().contains("clients.pem"), "{err}");
        tls.client_ca_file = Some(tmp.path().join("missing.pem"));
        let err = verifier(&tls).expect_err("refused");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        assert!(verifier(&TlsConfig::default()).expect("none").is_none());
    }
}
