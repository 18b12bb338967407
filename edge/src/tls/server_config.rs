//! The one rustls `ServerConfig` builder. Every certificate mode goes through
//! it; modes differ only in the `ResolvesServerCert` they pass in.

use crate::tls::{TlsError, client_auth};
use rustls::{
    ServerConfig, SupportedCipherSuite, SupportedProtocolVersion,
    crypto::{CryptoProvider, ring},
    server::ResolvesServerCert,
    version,
};
use std::sync::Arc;
use vibectl_config::{TlsConfig, TlsVersion};

/// The only application protocol offered: gRPC needs HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// AEAD suites with forward secrecy only, in the edge's order of preference
/// (Mozilla's "intermediate" order): the TLS 1.3 suites (always ephemeral
/// key exchange), then TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305. No
/// CBC, no static RSA key exchange.
///
/// AES-128-GCM with SHA-256 comes first: every suite here is strong, and
/// this one is the cheapest to serve. Its handshake hashes with SHA-256,
/// which CPUs with SHA extensions run in hardware (SHA-384 runs in
/// software), and AES-128 takes 10 rounds to AES-256's 14: `hs_bench`
/// measures 10-15 % less server time per TLS 1.3 handshake than with
/// AES-256-GCM-SHA384 first.
const SUITES: &[SupportedCipherSuite] = &[
    ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Installs ring as the process-wide rustls provider. Idempotent: a second
/// call (parallel tests, a caller that installed one first) does nothing.
pub fn install_crypto_provider() {
    // `Err` only means a provider is already installed, which is fine.
    let _ = ring::default_provider().install_default();
}

/// The ring provider restricted to [`SUITES`].
pub fn crypto_provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: SUITES.to_vec(),
        ..ring::default_provider()
    }
}

/// Builds the edge's `ServerConfig`: TLS 1.3 and (unless
/// `tls.min_version = "1.3"`) 1.2, the AEAD suites above in server order,
/// ALPN `h2`, client certificates as `tls.client_ca_file` and
/// `tls.client_auth` say (none by default), certificates from `resolver`.
pub fn server_config(
    tls: &TlsConfig,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, TlsError> {
    let versions: &[&'static SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&version::TLS13, &version::TLS12],
        TlsVersion::Tls13 => &[&version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(versions)?;
    let builder = match client_auth::verifier(tls)? {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    config.ignore_client_order = true;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_aead_forward_secret_suites() {
        for suite in crypto_provider().cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.contains("GCM") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
        }
    }

    #[test]
    fn install_twice_does_not_panic() {
        install_crypto_provider();
        install_crypto_provider();
    }

    #[test]
    fn tls_keys_parse_and_conflicts_are_named() {
        let file = std::path::Path::new("edge.toml");
        let config = vibectl_config::Config::from_toml(
            "[tls]\nmin_version = \"1.3\"\nclient_ca_file = \"/etc/ca.pem\"\nreload_interval = \"5m\"\n\
             [tls.private_ca]\ndir = \"/var/lib/ca\"\n",
            file,
        )
        .expect("valid");
        assert!(matches!(
            config.tls.mode(),
            vibectl_config::TlsMode::PrivateCa(ref ca) if ca.dir == std::path::Path::new("/var/lib/ca")
        ));
        assert_eq!(config.tls.client_auth, None, "required by default");
        assert_eq!(
            config.tls.reload_interval,
            std::time::Duration::from_secs(300)
        );
        for (toml, key) in [
            ("[tls]\nclient_auth = \"optional\"\n", "tls.client_auth"),
            (
                "[tls]\nclient_auth = \"sometimes\"\nclient_ca_file = \"x\"\n",
                "tls.client_auth",
            ),
            (
                "[tls.files]\ncert_file = \"a\"\nkey_file = \"b\"\n[tls.private_ca]\ndir = \"c\"\n",
                "tls",
            ),
        ] {
            let err = vibectl_config::Config::from_toml(toml, file)
                .expect_err(toml)
                .to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("edge.toml"),
                "{err}"
            );
        }
    }
}
