//! Sections read by the edge: `[edge]`, `[tls]`, `[hsts]`, `[jwt]`.

use crate::{defaults, secret::Secret};
use serde::Deserialize;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// `[edge]`: the internet-facing process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Address of the TLS (or, in `serve-insecure`, h2c) listener.
    pub listen: SocketAddr,
    /// Where the core listens: `host:port` (h2c over TCP) or `unix:/path`.
    pub core_address: String,
    /// Host names this edge answers for; they go into generated certificates
    /// (beside `localhost` and `127.0.0.1`).
    pub hostnames: Vec<String>,
    /// Directory for generated state (self-signed certificates, JWT secret).
    /// Default: `$VIBECTL_PROXY_HOME` or `~/.config/vibectl-proxy`.
    pub state_dir: Option<PathBuf>,
    /// Verify `authorization: Bearer <jwt>` on every call. On by default.
    pub require_auth: bool,
    /// Time allowed to connect to the core.
    #[serde(with = "humantime_serde")]
    pub core_connect_timeout: Duration,
    /// Longest wait for the core's response headers.
    #[serde(with = "humantime_serde")]
    pub core_response_timeout: Duration,
    /// Longest silence between two frames of a forwarded stream.
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// Grace period for in-flight streams at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Address of the plain HTTP/1.1 admin listener (`/live`, `/ready`).
    /// Loopback by default: it is unauthenticated.
    pub admin_listen: SocketAddr,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            listen: defaults::EDGE_LISTEN
                .parse()
                .expect("valid default address"),
            core_address: defaults::CORE_LISTEN.to_owned(),
            hostnames: Vec::new(),
            state_dir: None,
            require_auth: true,
            core_connect_timeout: defaults::CORE_CONNECT_TIMEOUT,
            core_response_timeout: defaults::CORE_RESPONSE_TIMEOUT,
            stream_idle_timeout: defaults::STREAM_IDLE_TIMEOUT,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            admin_listen: defaults::EDGE_ADMIN_LISTEN
                .parse()
                .expect("valid default address"),
        }
    }
}

impl EdgeConfig {
    /// The state directory in force (config, then environment, then default).
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(defaults::state_dir)
    }
}

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
    /// `[tls.self_signed]`: generated once with rcgen and persisted.
    pub self_signed: Option<SelfSignedTls>,
    /// `[tls.files]`: operator-supplied PEM certificate chain and key.
    pub files: Option<FilesTls>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            min_version: TlsVersion::default(),
            handshake_timeout: defaults::TLS_HANDSHAKE_TIMEOUT,
            self_signed: None,
            files: None,
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

/// The certificate source in force, one variant per mode.
#[derive(Debug, Clone)]
pub enum TlsMode {
    /// Generated with rcgen on first run and persisted.
    SelfSigned(SelfSignedTls),
    /// Operator-supplied PEM files.
    Files(FilesTls),
}

impl TlsConfig {
    /// The certificate source: `files` if given, else self-signed.
    pub fn mode(&self) -> TlsMode {
        match (&self.files, &self.self_signed) {
            (Some(files), _) => TlsMode::Files(files.clone()),
            (None, self_signed) => TlsMode::SelfSigned(self_signed.clone().unwrap_or_default()),
        }
    }
}

/// `[hsts]`: `Strict-Transport-Security` on every response over TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HstsConfig {
    /// Send the header (on by default).
    pub enabled: bool,
    /// `max-age`, in seconds.
    pub max_age: u64,
    /// Add `includeSubDomains`.
    pub include_subdomains: bool,
    /// Add `preload` (only after submitting the domain to the preload list).
    pub preload: bool,
}

impl Default for HstsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: defaults::HSTS_MAX_AGE,
            include_subdomains: false,
            preload: false,
        }
    }
}

impl HstsConfig {
    /// The header value, or `None` when disabled.
    pub fn header_value(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        Some(v)
    }
}

/// `[jwt]`: how tokens are made and verified. The secret is looked up in
/// vibectl's order: `VIBECTL_JWT_SECRET`, `VIBECTL_JWT_SECRET_FILE`,
/// `secret_key`, `secret_key_file`, else generated once and saved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// `iss` put into and required on tokens; empty string: not checked.
    pub issuer: String,
    /// The HS256 secret itself (prefer `secret_key_file`).
    pub secret_key: Option<Secret>,
    /// A file holding the HS256 secret.
    pub secret_key_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Lifetime of tokens from `generate-token` without `--expires-in`.
    #[serde(with = "humantime_serde")]
    pub default_expiry: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: defaults::JWT_ISSUER.to_owned(),
            secret_key: None,
            secret_key_file: None,
            leeway: defaults::JWT_LEEWAY,
            default_expiry: defaults::JWT_DEFAULT_EXPIRY,
        }
    }
}
