//! The ACME API client's trust (webpki roots, plus `--acme-ca-file`) and the
//! start-up check that the directory URL answers as an ACME directory.

use super::{
    AcmeError,
    client::{AcmeHttp, RetryAfter},
};
use crate::tls::crypto_provider;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use std::{path::Path, sync::Arc, time::Duration};

/// How the directory is fetched at start: tries, the bound on each, and the
/// pause before each retry (3 tries, at most about 10 s when it answers
/// nothing at all).
#[derive(Debug, Clone)]
pub struct ProbePolicy {
    /// Longest one fetch may take.
    pub timeout: Duration,
    /// Pauses between tries (one fewer than the tries).
    pub pauses: Vec<Duration>,
}

impl Default for ProbePolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            pauses: vec![Duration::from_millis(500), Duration::from_millis(1500)],
        }
    }
}

/// The TLS client for the CA's API: TLS 1.2+, the public webpki roots, and
/// the certificates of `ca_file` (e.g. Pebble's test CA).
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, AcmeError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let bad = |message: String| AcmeError::CaFile {
            path: path.to_owned(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("holds no PEM certificate".to_owned()));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Fetches the ACME directory at `url` with the client the orders will
/// use, retrying as `policy` says; the last error if it never answers with
/// a directory.
pub async fn probe(
    client: &Arc<rustls::ClientConfig>,
    url: &str,
    policy: &ProbePolicy,
) -> Result<(), AcmeError> {
    let http = AcmeHttp::new(client.clone(), RetryAfter::default());
    let mut pauses = policy.pauses.iter();
    let mut tries = 0;
    loop {
        tries += 1;
        let error = match tokio::time::timeout(policy.timeout, http.get(url)).await {
            Ok(Ok((status, body))) => match directory_error(status, &body) {
                None => {
                    tracing::debug!(url, "ACME directory answered");
                    return Ok(());
                }
                Some(error) => error,
            },
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {:?}", policy.timeout),
        };
        match pauses.next() {
            Some(pause) => {
                tracing::warn!(url, %error, try = tries, "ACME directory did not answer; retrying");
                tokio::time::sleep(*pause).await;
            }
            None => {
                return Err(AcmeError::DirectoryUnreachable {
                    url: url.to_owned(),
                    tries,
                    error,
                });
            }
        }
    }
}

/// Why an answer is not an ACME directory (RFC 8555 §7.1.1), if it is not.
fn directory_error(status: http::StatusCode, body: &[u8]) -> Option<String> {
    if !status.is_success() {
        return Some(format!("HTTP {status}: not an ACME directory"));
    }
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(_) => return Some("the answer is not JSON: not an ACME directory".to_owned()),
    };
    let missing: Vec<&str> = ["newNonce", "newAccount", "newOrder"]
        .into_iter()
        .filter(|key| !json[key].is_string())
        .collect();
    (!missing.is_empty()).then(|| format!("not an ACME directory: {} missing", missing.join(", ")))
}
