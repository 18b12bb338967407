//! `[tls.acme.dns01]`: how the edge answers DNS-01 challenges — RFC 2136
//! dynamic updates of the zone's primary server, signed with a TSIG key.
//! The secret is named here (a file or an environment variable), never
//! written in the configuration; the edge reads it at start.

use serde::Deserialize;
use std::{path::PathBuf, time::Duration};

/// The default wait for the TXT record to be visible on the servers.
pub const DEFAULT_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);
/// The default TTL of the `_acme-challenge` TXT records.
pub const DEFAULT_TXT_TTL: u32 = 60;

/// The TSIG MAC algorithm (RFC 8945; what `tsig-keygen -a` names).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum TsigAlgorithm {
    /// `hmac-sha256` (default; `tsig-keygen`'s default).
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// `hmac-sha384`.
    #[serde(rename = "hmac-sha384")]
    HmacSha384,
    /// `hmac-sha512`.
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

/// `[tls.acme.dns01]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AcmeDns01 {
    /// The zone's primary (authoritative) server that takes the updates,
    /// `host:port` (e.g. `ns1.example.com:53`, `127.0.0.1:5353`).
    pub server: String,
    /// The zone the `_acme-challenge` records are written to (e.g.
    /// `example.com`); every certificate name must be inside it.
    pub zone: String,
    /// The TSIG key's name, as the server knows it (`key "NAME" { … }`).
    pub key_name: String,
    /// The TSIG algorithm (default `hmac-sha256`).
    #[serde(default)]
    pub algorithm: TsigAlgorithm,
    /// A file holding the TSIG secret: base64 alone, or a BIND key file
    /// as `tsig-keygen` writes it. One of `secret_file`, `secret_env`.
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the TSIG secret (base64).
    pub secret_env: Option<String>,
    /// More authoritative servers (`host:port`, the zone's secondaries)
    /// that must serve the TXT record before the CA is asked to look.
    #[serde(default)]
    pub check_servers: Vec<String>,
    /// How long to wait for the TXT record to be visible (default 120 s).
    #[serde(default = "propagation_timeout", with = "humantime_serde")]
    pub propagation_timeout: Duration,
    /// TTL of the TXT records (default 60 s).
    #[serde(default = "txt_ttl")]
    pub ttl: u32,
}

fn propagation_timeout() -> Duration {
    DEFAULT_PROPAGATION_TIMEOUT
}

fn txt_ttl() -> u32 {
    DEFAULT_TXT_TTL
}

/// True for `host:port` with a port 1-65535 (an IPv6 host in brackets).
pub fn is_host_port(value: &str) -> bool {
    value.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

impl AcmeDns01 {
    /// Checks the table against the certificate names: `(key, message)`.
    pub fn check(&self, domains: &[String]) -> Result<(), (&'static str, &'static str)> {
        if !is_host_port(&self.server) {
            return Err((
                "tls.acme.dns01.server",
                "must be host:port of the zone's primary DNS server (e.g. ns1.example.com:53)",
            ));
        }
        if !self.check_servers.iter().all(|s| is_host_port(s)) {
            return Err((
                "tls.acme.dns01.check_servers",
                "must be host:port entries (the zone's other authoritative servers)",
            ));
        }
        let zone = self.zone.trim_end_matches('.').to_ascii_lowercase();
        if !crate::dns_name::is_dns_name(&zone) {
            return Err((
                "tls.acme.dns01.zone",
                "must be a DNS zone name such as example.com",
            ));
        }
        let inside = |d: &String| {
            let name = d.trim_start_matches("*.").to_ascii_lowercase();
            name == zone || name.ends_with(&format!(".{zone}"))
        };
        if !domains.iter().all(inside) {
            return Err((
                "tls.acme.domains",
                "with dns-01 every name must be inside tls.acme.dns01.zone (the _acme-challenge records are written there)",
            ));
        }
        if self.key_name.trim().is_empty() || self.key_name.contains(char::is_whitespace) {
            return Err((
                "tls.acme.dns01.key_name",
                "must be the TSIG key's name as the DNS server knows it",
            ));
        }
        match (&self.secret_file, &self.secret_env) {
            (Some(_), Some(_)) => Err((
                "tls.acme.dns01.secret_file",
                "conflicts with tls.acme.dns01.secret_env (set one)",
            )),
            (None, None) => Err((
                "tls.acme.dns01.secret_file",
                "or tls.acme.dns01.secret_env is required: where the TSIG secret is (never in this file)",
            )),
            (None, Some(env)) if env.trim().is_empty() => Err((
                "tls.acme.dns01.secret_env",
                "must name an environment variable",
            )),
            _ if self.propagation_timeout.is_zero() => Err((
                "tls.acme.dns01.propagation_timeout",
                "must be more than 0 s",
            )),
            _ => Ok(()),
        }
    }
}
