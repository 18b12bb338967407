//! Leaf certificates of the private CA: the server's (`server.crt`,
//! `server.key`, kept when it is still what was asked for) and the clients'
//! for mutual TLS (`clients/NAME.crt`, `clients/NAME.key`).

use super::{
    CaError, LeafReport, Outcome, certificate_error, check_free, files, generate_error,
    intermediate,
};
use crate::tls::{
    TlsError,
    inspect::{self, CertInfo},
    pki::{self, Issued, Issuer},
    store,
};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// Why an existing server certificate is not the one `create-server-cert`
/// would make now (so it is only replaced with `--force`).
#[derive(Debug, thiserror::Error)]
pub enum NotReusable {
    /// It cannot be loaded (or its key does not match).
    #[error("{0}")]
    Unreadable(#[from] TlsError),
    /// Its leaf does not parse.
    #[error("{0}")]
    Unparsable(#[from] inspect::InspectError),
    /// Another CA issued it.
    #[error("it was issued by another CA")]
    OtherCa,
    /// It is for other names.
    #[error("it is for {} instead of {}", have.join(", "), wanted.join(", "))]
    OtherNames {
        /// Its names.
        have: Vec<String>,
        /// The names asked for.
        wanted: Vec<String>,
    },
    /// It expires within a third of the validity asked for.
    #[error("it expires in {0} days")]
    ExpiresSoon(i64),
}

/// Issues `server.crt` (chain: leaf, intermediate) and `server.key` for
/// `hosts` (DNS names and IP addresses), valid `days`. If a server
/// certificate exists: one for the same names from this CA, not expiring
/// within a third of `days`, is kept ([`Outcome::Kept`], so an init
/// container can run again); any other is only replaced with `force`.
pub fn create_server_cert(
    dir: &Path,
    hosts: &[String],
    days: u32,
    force: bool,
) -> Result<LeafReport, CaError> {
    let (cert, key) = (dir.join(files::SERVER_CRT), dir.join(files::SERVER_KEY));
    let issuer = intermediate(dir)?;
    let wanted: BTreeSet<String> = hosts
        .iter()
        .map(|h| pki::normalize_host(h))
        .collect::<Result<_, _>>()
        .map_err(generate_error(dir))?;
    let exists = cert.exists() || key.exists();
    if exists && !force {
        return match reusable_server_cert(&cert, &key, &issuer, &wanted, days) {
            Ok(info) => Ok(LeafReport {
                outcome: Outcome::Kept,
                cert,
                key,
                info,
            }),
            Err(reason) => Err(CaError::ServerCertExists { path: cert, reason }),
        };
    }
    let issued = pki::server_cert(&issuer, hosts, days).map_err(generate_error(dir))?;
    write_leaf(cert, key, &issued, exists)
}

/// `Ok` with the existing leaf if it is what `create-server-cert` would
/// make now; else why it is not.
fn reusable_server_cert(
    cert: &Path,
    key: &Path,
    issuer: &Issuer,
    wanted: &BTreeSet<String>,
    days: u32,
) -> Result<CertInfo, NotReusable> {
    let loaded = crate::tls::files::load(cert, key)?;
    let info = inspect::describe(&loaded.cert[0])?;
    let inter = inspect::chain_ders(&issuer.cert_pem)?;
    if !inspect::issued_by(&loaded.cert[0], &inter[0]) {
        return Err(NotReusable::OtherCa);
    }
    let have: BTreeSet<String> = info.sans.iter().cloned().collect();
    if &have != wanted {
        return Err(NotReusable::OtherNames {
            have: have.into_iter().collect(),
            wanted: wanted.iter().cloned().collect(),
        });
    }
    if info.expires_within(days / 3, inspect::now_unix()) {
        return Err(NotReusable::ExpiresSoon(
            info.days_left(inspect::now_unix()),
        ));
    }
    Ok(info)
}

/// Issues `clients/NAME.crt` (chain: leaf, intermediate) and
/// `clients/NAME.key` for mutual TLS, valid `days`; an existing one is only
/// replaced with `force`.
pub fn create_client_cert(
    dir: &Path,
    name: &str,
    days: u32,
    force: bool,
) -> Result<LeafReport, CaError> {
    pki::check_client_name(name).map_err(generate_error(dir))?;
    let issuer = intermediate(dir)?;
    let clients = dir.join(files::CLIENTS);
    let (cert, key) = (
        clients.join(format!("{name}.crt")),
        clients.join(format!("{name}.key")),
    );
    check_free(&[&cert, &key], force)?;
    let exists = cert.exists() || key.exists();
    let issued = pki::client_cert(&issuer, name, days).map_err(generate_error(dir))?;
    store::private_dir(&clients)?;
    write_leaf(cert, key, &issued, exists)
}

/// Writes a new leaf (key first: a certificate is never on disk without
/// its key) and reports it.
fn write_leaf(
    cert: PathBuf,
    key: PathBuf,
    issued: &Issued,
    replaced: bool,
) -> Result<LeafReport, CaError> {
    store::write_key(&key, &issued.key_pem)?;
    store::write_cert(&cert, &issued.cert_pem)?;
    let info = inspect::describe_pem(&issued.cert_pem).map_err(certificate_error(&cert))?;
    Ok(LeafReport {
        outcome: if replaced {
            Outcome::Replaced
        } else {
            Outcome::Created
        },
        cert,
        key,
        info,
    })
}
