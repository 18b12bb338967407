//! ACME Renewal Information (RFC 9773): when the CA's directory offers
//! `renewalInfo`, the served certificate is renewed at a random point of
//! the window the CA suggests (§4.2: uniformly, so that many clients do
//! not renew at once; at once if the window has begun or passed, e.g.
//! after a revocation), and the window is fetched again after the
//! `Retry-After` the CA sent (§4.3.2; at least 1 s, at most 1 day).
//! Without `renewalInfo` the edge renews at a third of the lifetime left.
//! A renewal order names the certificate it replaces ([`new_order`]).

use super::steps::{OrderError, Steps, retried};
use instant_acme::{Account, CertificateIdentifier, Error, Identifier, NewOrder, Order};
use rustls_pki_types::Der;
use std::time::{Duration, SystemTime};
use x509_parser::{extensions::ParsedExtension, prelude::FromDer};

/// The shortest and longest pause between two fetches of the window.
const MIN_RECHECK: Duration = Duration::from_secs(1);
const MAX_RECHECK: Duration = Duration::from_secs(24 * 3600);

/// What the CA suggested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The window's start.
    pub start: SystemTime,
    /// The window's end.
    pub end: SystemTime,
    /// When to renew: a random point in the window (now if it has begun).
    pub renew_at: SystemTime,
    /// When to ask again.
    pub next_check: SystemTime,
}

/// The RFC 9773 §4.1 identifier of a certificate: its AKI keyIdentifier
/// and its serial number's bytes.
pub fn certificate_id(leaf_der: &[u8]) -> Option<CertificateIdentifier<'static>> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf_der).ok()?;
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        })?;
    Some(
        CertificateIdentifier::new(Der::from_slice(aki), Der::from_slice(cert.raw_serial()))
            .into_owned(),
    )
}

/// The CA's window for `leaf_der`: `Ok(None)` when the CA has no
/// `renewalInfo` (or the certificate has no AKI).
pub async fn fetch(account: &Account, leaf_der: &[u8]) -> Result<Option<Window>, Error> {
    let Some(id) = certificate_id(leaf_der) else {
        return Ok(None);
    };
    let (info, retry_after) = match account.renewal_info(&id).await {
        Ok(found) => found,
        Err(Error::Unsupported(_)) => return Ok(None),
        Err(error) => return Err(error),
    };
    let start = SystemTime::from(info.suggested_window.start);
    let end = SystemTime::from(info.suggested_window.end);
    let now = SystemTime::now();
    Ok(Some(Window {
        start,
        end,
        renew_at: pick(start, end, now, rand::random::<f64>()),
        next_check: now + retry_after.clamp(MIN_RECHECK, MAX_RECHECK),
    }))
}

/// New-order for `identifiers`; a renewal inside the CA's window names the
/// certificate it `replaces` (RFC 9773 §5). A CA that refuses the field
/// (e.g. `alreadyReplaced`) created no order: it is ordered without it.
pub async fn new_order(
    account: &Account,
    steps: &Steps,
    identifiers: &[Identifier],
    replaces: Option<&CertificateIdentifier<'static>>,
) -> Result<Order, OrderError> {
    if let Some(replaced) = replaces {
        let new_order = NewOrder::new(identifiers).replaces(replaced.clone());
        match retried!(steps, "new-order", "", false, account.new_order(&new_order)) {
            Err(error @ OrderError::Refused { .. }) => {
                tracing::info!(%error, replaces = %replaced, "ACME: the CA refused the ARI replaces field; ordering without it");
            }
            result => return result,
        }
    }
    let new_order = NewOrder::new(identifiers);
    retried!(steps, "new-order", "", false, account.new_order(&new_order))
}

/// A point `fraction` (0..1) of the way through `start..end`, not before
/// `now`; `now` when the window has begun.
pub fn pick(start: SystemTime, end: SystemTime, now: SystemTime, fraction: f64) -> SystemTime {
    if start <= now {
        return now;
    }
    let span = end.duration_since(start).unwrap_or_default();
    start + span.mul_f64(fraction.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_renewal_point_is_inside_the_window_or_now() {
        let now = SystemTime::now();
        let start = now + Duration::from_secs(100);
        let end = now + Duration::from_secs(200);
        assert_eq!(pick(start, end, now, 0.0), start);
        assert_eq!(pick(start, end, now, 1.0), end);
        assert_eq!(pick(start, end, now, 0.5), now + Duration::from_secs(150));
        // A window that has begun (or passed: revoked): at once.
        assert_eq!(pick(now - Duration::from_secs(5), end, now, 0.9), now);
        assert_eq!(
            pick(
                now - Duration::from_secs(50),
                now - Duration::from_secs(10),
                now,
                0.3
            ),
            now
        );
    }

    #[test]
    fn the_identifier_is_aki_dot_serial() {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![0xAB; 20]);
        let ca = ca.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut leaf = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).expect("params");
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0x02, 0x03]));
        leaf.use_authority_key_identifier_extension = true;
        let leaf = leaf.signed_by(&key, &ca, &ca_key).expect("leaf");
        let id = certificate_id(leaf.der()).expect("id");
        assert_eq!(id.to_string(), "q6urq6urq6urq6urq6urq6urq6s.AQID");
    }
}
