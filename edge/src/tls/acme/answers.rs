//! The challenge answers of the orders in flight: a TLS-ALPN-01 challenge
//! certificate per domain (RFC 8737: self-signed, the domain as its only
//! SAN, the critical `acmeIdentifier` extension holding SHA-256 of the key
//! authorization) and an HTTP-01 key authorization per token. An answer is
//! put in place before its challenge is responded to and stays until the
//! order says every authorization is final (valid or invalid).

use super::{
    AcmeError,
    storage::{Answer, AnswerKind},
};
use arc_swap::ArcSwap;
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::{collections::HashMap, sync::Arc};

/// What the listeners answer now.
#[derive(Default)]
struct Snapshot {
    /// TLS-ALPN-01: lower-case domain → challenge certificate.
    tls_alpn: HashMap<String, Arc<CertifiedKey>>,
    /// HTTP-01: token → key authorization.
    http: HashMap<String, String>,
}

/// The pending answers, read lock-free by every handshake and request.
#[derive(Clone, Default)]
pub struct Answers {
    inner: Arc<ArcSwap<Snapshot>>,
}

impl std::fmt::Debug for Answers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let now = self.inner.load();
        f.debug_struct("Answers")
            .field("tls_alpn", &now.tls_alpn.keys().collect::<Vec<_>>())
            .field("http_tokens", &now.http.len())
            .finish()
    }
}

impl Answers {
    /// The TLS-ALPN-01 challenge certificate for `domain`, if one is pending.
    pub fn tls_alpn(&self, domain: &str) -> Option<Arc<CertifiedKey>> {
        self.inner
            .load()
            .tls_alpn
            .get(&domain.to_ascii_lowercase())
            .cloned()
    }

    /// The key authorization for an HTTP-01 `token`, if it is pending.
    pub fn http(&self, token: &str) -> Option<String> {
        self.inner.load().http.get(token).cloned()
    }

    /// Serves a TLS-ALPN-01 answer for `domain` from now on.
    pub fn add_tls_alpn(&self, domain: &str, key_authorization: &str) -> Result<(), AcmeError> {
        let key = Arc::new(challenge_certificate(domain, key_authorization)?);
        let domain = domain.to_ascii_lowercase();
        self.inner.rcu(|now| {
            let mut tls_alpn = now.tls_alpn.clone();
            tls_alpn.insert(domain.clone(), key.clone());
            Snapshot {
                tls_alpn,
                http: now.http.clone(),
            }
        });
        Ok(())
    }

    /// Serves an HTTP-01 answer for `token` from now on.
    pub fn add_http(&self, token: &str, key_authorization: &str) {
        self.inner.rcu(|now| {
            let mut http = now.http.clone();
            http.insert(token.to_owned(), key_authorization.to_owned());
            Snapshot {
                tls_alpn: now.tls_alpn.clone(),
                http,
            }
        });
    }

    /// Serves exactly `answers` from now on (a follower's copy of the
    /// answers a replica shares).
    pub(crate) fn replace(&self, answers: &[Answer]) -> Result<(), AcmeError> {
        let mut next = Snapshot::default();
        for answer in answers {
            match answer.kind {
                AnswerKind::TlsAlpn => {
                    let key = challenge_certificate(&answer.name, &answer.key_authorization)?;
                    next.tls_alpn
                        .insert(answer.name.to_ascii_lowercase(), Arc::new(key));
                }
                AnswerKind::Http => {
                    next.http
                        .insert(answer.name.clone(), answer.key_authorization.clone());
                }
            }
        }
        self.inner.store(Arc::new(next));
        Ok(())
    }

    /// Stops answering for these domains and tokens.
    pub fn remove(&self, domains: &[String], tokens: &[String]) {
        self.inner.rcu(|now| {
            let mut tls_alpn = now.tls_alpn.clone();
            let mut http = now.http.clone();
            for domain in domains {
                tls_alpn.remove(&domain.to_ascii_lowercase());
            }
            for token in tokens {
                http.remove(token);
            }
            Snapshot { tls_alpn, http }
        });
    }
}

/// The RFC 8737 challenge certificate for `domain`.
pub fn challenge_certificate(
    domain: &str,
    key_authorization: &str,
) -> Result<CertifiedKey, AcmeError> {
    use sha2::{Digest, Sha256};
    let bad = |e: rcgen::Error| AcmeError::Challenge(format!("TLS-ALPN-01 certificate: {e}"));
    let digest = Sha256::digest(key_authorization.as_bytes());
    let mut params = CertificateParams::new(vec![domain.to_owned()]).map_err(bad)?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(&digest)];
    let key = KeyPair::generate().map_err(bad)?;
    let cert = params.self_signed(&key).map_err(bad)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = crate::tls::crypto_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| AcmeError::Challenge(format!("TLS-ALPN-01 key: {e}")))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_served_until_removed() {
        let answers = Answers::default();
        answers.add_http("tok", "tok.thumb");
        answers
            .add_tls_alpn("A.example.test", "tok.thumb")
            .expect("certificate");
        assert_eq!(answers.http("tok").as_deref(), Some("tok.thumb"));
        let cert = answers.tls_alpn("a.example.test").expect("pending");
        let parsed = x509_parser::parse_x509_certificate(&cert.cert[0])
            .expect("x509")
            .1;
        let acme_id = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(acme_id.critical);
        answers.remove(&["a.example.test".to_owned()], &["tok".to_owned()]);
        assert!(answers.http("tok").is_none());
        assert!(answers.tls_alpn("a.example.test").is_none());
    }
}
