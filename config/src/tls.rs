//! `[tls]`: the edge's TLS policy (versions, handshake timeout, client
//! certificates) and its one certificate source ([`TlsMode`]).

use crate::defaults;
use serde::Deserialize;
use std::{path::PathBuf, time::Duration};

/// Lowest TLS protocol version accepted.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (1.3 preferred).
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// Whether a client certificate is required once `tls.client_ca_file` is set.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Every client must present a certificate that verifies (default).
    #[default]
    Required,
    /// A client may present none; one that it presents must verify.
    Optional,
}

/// `[tls]`: the policy, and at most one certificate source sub-table.
/// With no sub-table the edge uses `[tls.self_signed]` with its defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: TlsVersion,
    /// Longest a client may take to complete the TLS handshake; a slower
    /// connection is dropped.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Mutual TLS: PEM file of the CAs that issue client certificates (e.g.
    /// a private CA's `ca-bundle.crt`). Unset: no client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// `"required"` (default) or `"optional"`; needs `client_ca_file`.
    pub client_auth: Option<ClientAuth>,
    /// How often `[tls.files]` / `[tls.private_ca]` certificates are
    /// re-checked besides the file-system watch ("0s": watch only).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// `[tls.self_signed]`: generated once with rcgen and persisted.
    pub self_signed: Option<SelfSignedTls>,
    /// `[tls.files]`: operator-supplied PEM certificate chain and key.
    pub files: Option<FilesTls>,
    /// `[tls.private_ca]`: the server certificate of a `vibectl-edge ca` directory.
    pub private_ca: Option<PrivateCaTls>,
    /// `[tls.acme]`: certificates from an ACME CA (what `serve-acme` sets).
    pub acme: Option<crate::acme::AcmeTls>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            min_version: TlsVersion::default(),
            handshake_timeout: defaults::TLS_HANDSHAKE_TIMEOUT,
            client_ca_file: None,
            client_auth: None,
            reload_interval: defaults::TLS_RELOAD_INTERVAL,
            self_signed: None,
            files: None,
            private_ca: None,
            acme: None,
        }
    }
}

/// `[tls.self_signed]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfSignedTls {
    /// Where the certificate, key and CA bundle live; default `<state_dir>/certs`.
    pub dir: Option<PathBuf>,
    /// Validity of a newly generated certificate, in days.
    pub validity_days: u32,
}

impl Default for SelfSignedTls {
    fn default() -> Self {
        Self {
            dir: None,
            validity_days: defaults::SELF_SIGNED_VALIDITY_DAYS,
        }
    }
}

/// `[tls.files]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// `[tls.private_ca]` (what `serve-ca --ca-dir` sets).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateCaTls {
    /// The CA directory of `vibectl-edge ca init`; the edge serves its
    /// `server.crt` (chain) and `server.key`.
    pub dir: PathBuf,
}

/// The certificate source in force, one variant per mode.
#[derive(Debug, Clone)]
pub enum TlsMode {
    /// Generated with rcgen on first run and persisted.
    SelfSigned(SelfSignedTls),
    /// Operator-supplied PEM files.
    Files(FilesTls),
    /// The server certificate of a private CA directory.
    PrivateCa(PrivateCaTls),
    /// Issued and renewed by an ACME CA (self-signed until the first one).
    Acme(crate::acme::AcmeTls),
}

impl TlsConfig {
    /// The certificate source: `files`, else `private_ca`, else `acme`,
    /// else self-signed (validation allows only one of them).
    pub fn mode(&self) -> TlsMode {
        match (&self.files, &self.private_ca, &self.self_signed) {
            (Some(files), _, _) => TlsMode::Files(files.clone()),
            (None, Some(ca), _) => TlsMode::PrivateCa(ca.clone()),
            (None, None, _) if self.acme.is_some() => {
                TlsMode::Acme(self.acme.clone().unwrap_or_default())
            }
            (None, None, self_signed) => {
                TlsMode::SelfSigned(self_signed.clone().unwrap_or_default())
            }
        }
    }

    /// Checks across `[tls]` keys: `(key, message)` of the first problem.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let sources = [
            self.files.is_some(),
            self.self_signed.is_some(),
            self.private_ca.is_some(),
            self.acme.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err((
                "tls",
                "choose one certificate source: [tls.files], [tls.private_ca], [tls.acme] or [tls.self_signed]",
            ));
        }
        if let Some(acme) = &self.acme {
            acme.check()?;
        }
        if self.client_auth.is_some() && self.client_ca_file.is_none() {
            return Err((
                "tls.client_auth",
                "needs tls.client_ca_file (the CAs that issue client certificates)",
            ));
        }
        Ok(())
    }
}
