//! Making certificates with rcgen: self-signed, root and intermediate CAs,
//! and server and client leaves signed by an [`Issuer`].

use super::{
    ORGANIZATION, PkiError,
    issuer::{Issued, Issuer},
    names::{check_client_name, normalize_host},
    rc,
};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // Positive and exactly 16 bytes long (RFC 5280: at most 20 octets).
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // Backdated a little, so clients with a slow clock accept a fresh one.
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days.max(1)));
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params(common_name: &str, days: u32, path_len: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    validity(&mut params, days);
    params
}

/// A new self-signed CA. `path_len` 0 signs leaves only (the self-signed
/// mode's local CA); 1 signs one level of intermediates (a root).
pub fn self_signed_ca(common_name: &str, days: u32, path_len: u8) -> Result<Issued, PkiError> {
    let key = KeyPair::generate().map_err(rc("generate a CA key"))?;
    let cert = ca_params(common_name, days, path_len)
        .self_signed(&key)
        .map_err(rc("sign the CA certificate"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new root CA (path length 1: it signs intermediates only).
pub fn root_ca(common_name: &str, days: u32) -> Result<Issued, PkiError> {
    self_signed_ca(common_name, days, 1)
}

/// A new intermediate CA signed by `root` (path length 0: it signs leaves
/// only). `cert_pem` is the intermediate alone.
pub fn intermediate_ca(root: &Issuer, common_name: &str, days: u32) -> Result<Issued, PkiError> {
    let key = KeyPair::generate().map_err(rc("generate the intermediate key"))?;
    let mut params = ca_params(common_name, days, 0);
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &root.cert, &root.key)
        .map_err(rc("sign the intermediate CA"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn leaf_params(common_name: &str, sans: Vec<SanType>, days: u32) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    validity(&mut params, days);
    params
}

/// A server certificate for `hosts` (DNS names and IP addresses; normalised
/// with [`normalize_host`], duplicates dropped), signed by `issuer`. The
/// common name is the first DNS name (else the first host). `cert_pem` is
/// the chain the server sends: the leaf, then `issuer`'s certificate.
pub fn server_cert(issuer: &Issuer, hosts: &[String], days: u32) -> Result<Issued, PkiError> {
    let mut names: Vec<String> = Vec::new();
    for host in hosts {
        let name = normalize_host(host)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let first = names.first().ok_or(PkiError::NoHosts)?;
    let common_name = names
        .iter()
        .find(|n| n.parse::<IpAddr>().is_err())
        .unwrap_or(first);
    let sans = names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => rcgen::Ia5String::try_from(name.as_str())
                .map(SanType::DnsName)
                .map_err(|_| PkiError::BadHost {
                    name: name.clone(),
                    reason: "it is not ASCII",
                }),
        })
        .collect::<Result<_, _>>()?;
    let mut params = leaf_params(common_name, sans, days);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(rc("generate the server key"))?;
    let cert = params
        .signed_by(&key, &issuer.cert, &issuer.key)
        .map_err(rc("sign the server certificate"))?;
    Ok(Issued {
        cert_pem: format!("{}{}", cert.pem(), issuer.cert_pem),
        key_pem: key.serialize_pem(),
    })
}

/// A client certificate (mutual TLS) with common name `name`, signed by
/// `issuer`; `cert_pem` is the chain: the leaf, then `issuer`'s certificate.
pub fn client_cert(issuer: &Issuer, name: &str, days: u32) -> Result<Issued, PkiError> {
    check_client_name(name)?;
    let mut params = leaf_params(name, Vec::new(), days);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().map_err(rc("generate the client key"))?;
    let cert = params
        .signed_by(&key, &issuer.cert, &issuer.key)
        .map_err(rc("sign the client certificate"))?;
    Ok(Issued {
        cert_pem: format!("{}{}", cert.pem(), issuer.cert_pem),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::inspect;

    #[test]
    fn chain_of_root_intermediate_and_leaves() {
        let root = root_ca("root", 30).expect("root");
        let root_issuer = Issuer::from_issued(&root).expect("load root");
        let inter = intermediate_ca(&root_issuer, "intermediate", 20).expect("intermediate");
        let inter_issuer = Issuer::from_issued(&inter).expect("load intermediate");
        let server = server_cert(
            &inter_issuer,
            &[
                "10.1.2.3".into(),
                "Proxy.Example".into(),
                "proxy.example".into(),
            ],
            10,
        )
        .expect("server");
        let chain = inspect::chain_ders(&server.cert_pem).expect("chain");
        assert_eq!(chain.len(), 2, "leaf and intermediate");
        let leaf = inspect::describe(&chain[0]).expect("leaf");
        assert_eq!(leaf.sans, ["10.1.2.3", "proxy.example"]);
        assert_eq!(leaf.common_name.as_deref(), Some("proxy.example"));
        assert!(!leaf.is_ca);
        let root_der = &inspect::chain_ders(&root.cert_pem).expect("root")[0];
        assert!(inspect::issued_by(&chain[0], &chain[1]));
        assert!(inspect::issued_by(&chain[1], root_der));
        let client = client_cert(&inter_issuer, "alice", 10).expect("client");
        let info = inspect::describe_pem(&client.cert_pem).expect("client");
        assert_eq!(info.common_name.as_deref(), Some("alice"));
        assert!(format!("{client:?}").contains("<redacted>"));
        assert!(!format!("{client:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn serials_differ_and_names_are_checked() {
        let root = root_ca("root", 30).expect("root");
        let issuer = Issuer::from_issued(&root).expect("load");
        let a = server_cert(&issuer, &["a.example".into()], 1).expect("a");
        let b = server_cert(&issuer, &["a.example".into()], 1).expect("b");
        let serial = |pem: &str| inspect::describe_pem(pem).expect("describe").serial;
        assert_ne!(serial(&a.cert_pem), serial(&b.cert_pem));
        assert!(matches!(
            server_cert(&issuer, &[], 1),
            Err(PkiError::NoHosts)
        ));
        for bad in ["", "../x", ".hidden", "a b"] {
            assert!(client_cert(&issuer, bad, 1).is_err(), "{bad}");
        }
    }
}
