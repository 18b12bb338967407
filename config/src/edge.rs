//! Sections read by the edge: `[edge]`, `[tls]`, `[hsts]`, `[jwt]`.

use crate::{defaults, secret::Secret};
use serde::Deserialize;
use std::{net::SocketAddr, num::NonZeroU32, path::PathBuf, time::Duration};

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
    /// Longest wait for the core's response headers (the first response
    /// bytes) on a call without a deadline; a call with one (client
    /// `grpc-timeout`, token timeout) waits up to its deadline.
    #[serde(with = "humantime_serde")]
    pub core_response_timeout: Duration,
    /// Longest a call without a deadline may stream in total; it then ends
    /// with `DEADLINE_EXCEEDED`.
    #[serde(with = "humantime_serde")]
    pub max_call_duration: Duration,
    /// Forward gRPC server reflection to the core (off: only the vibectl
    /// service and gRPC health are forwarded; reflection stays on the
    /// core's loopback port).
    pub forward_reflection: bool,
    /// Longest silence between two frames of a forwarded stream.
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// Grace period for in-flight streams at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Largest request message, in bytes: a larger one is refused at the
    /// edge, before forwarding, with `RESOURCE_EXHAUSTED` and `limit-type:
    /// message_size` (the core accepts up to the same size).
    pub max_message_bytes: NonZeroU32,
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
            max_call_duration: defaults::MAX_CALL_DURATION,
            forward_reflection: false,
            stream_idle_timeout: defaults::STREAM_IDLE_TIMEOUT,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            max_message_bytes: defaults::MAX_MESSAGE_BYTES,
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

/// `[jwt]`: how tokens are made and verified. The HS256 secret is looked up
/// in vibectl's order: `VIBECTL_JWT_SECRET`, `VIBECTL_JWT_SECRET_FILE`,
/// `secret_key`, `secret_key_file`, else generated once and saved. Beside it,
/// a key set (JWKS) holds asymmetric (ES256, RS256, EdDSA) and HS256 keys by
/// `kid`, each pinned to its algorithm, and a revocation list.
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
    /// `aud` put into and required on tokens; absent: not checked.
    pub audience: Option<String>,
    /// Longest lifetime (`exp - iat`, or `exp` - now without `iat`) a token
    /// may have, enforced when one is generated and when one is verified.
    /// Default one year; `"0s"` turns the bound off (a warning at start).
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// The verification key set (JWKS: public keys, and HS256 `oct` keys,
    /// each with `kid` and a pinned `alg`), re-read when it changes. Default
    /// `<state_dir>/jwks.json`; a missing file is an empty set.
    pub jwks_file: Option<PathBuf>,
    /// Where `keys generate` writes private keys (0600), one file per `kid`.
    /// Default `<state_dir>/jwt-keys`. Only the host that signs tokens needs them.
    pub keys_dir: Option<PathBuf>,
    /// The key (by `kid`, in `jwks_file`) for tokens without a `kid`, and the
    /// one `generate-token` signs with. Absent: such tokens are HS256 with the
    /// secret above (Python-minted tokens keep working).
    pub default_kid: Option<String>,
    /// Revoked tokens (`vibectl-edge revoke-token`), one JSON object per
    /// line, re-read when it changes. Default `<state_dir>/revoked-tokens.jsonl`.
    pub revocation_file: Option<PathBuf>,
    /// How often the key set and revocation files are re-checked (changes
    /// are also picked up at once when the file system reports them).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Failed authentications one client address may make per
    /// `failure_window`; past it, its calls are refused at once without
    /// verification work. 0 turns the budget off.
    pub failure_budget: u32,
    /// The window of `failure_budget`.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: defaults::JWT_ISSUER.to_owned(),
            secret_key: None,
            secret_key_file: None,
            leeway: defaults::JWT_LEEWAY,
            default_expiry: defaults::JWT_DEFAULT_EXPIRY,
            audience: None,
            max_lifetime: defaults::JWT_MAX_LIFETIME,
            jwks_file: None,
            keys_dir: None,
            default_kid: None,
            revocation_file: None,
            reload_interval: defaults::JWT_RELOAD_INTERVAL,
            failure_budget: defaults::JWT_FAILURE_BUDGET,
            failure_window: defaults::JWT_FAILURE_WINDOW,
        }
    }
}

impl JwtConfig {
    /// `max_lifetime` in force: `None` when set to 0 (no bound).
    pub fn max_lifetime(&self) -> Option<Duration> {
        Some(self.max_lifetime).filter(|d| !d.is_zero())
    }

    /// The key set file in force (`jwks_file`, else `<state_dir>/jwks.json`).
    pub fn jwks_path(&self, state_dir: &std::path::Path) -> PathBuf {
        self.jwks_file
            .clone()
            .unwrap_or_else(|| state_dir.join(defaults::JWKS_FILE_NAME))
    }

    /// The private key directory in force (`keys_dir`, else `<state_dir>/jwt-keys`).
    pub fn keys_path(&self, state_dir: &std::path::Path) -> PathBuf {
        self.keys_dir
            .clone()
            .unwrap_or_else(|| state_dir.join(defaults::JWT_KEYS_DIR_NAME))
    }

    /// The revocation file in force (`revocation_file`, else
    /// `<state_dir>/revoked-tokens.jsonl`).
    pub fn revocation_path(&self, state_dir: &std::path::Path) -> PathBuf {
        self.revocation_file
            .clone()
            .unwrap_or_else(|| state_dir.join(defaults::REVOCATION_FILE_NAME))
    }
}

#[cfg(test)]
mod jwt_tests {
    use crate::Config;
    use std::{path::Path, time::Duration};

    #[test]
    fn jwt_keys_parse_and_paths_default_to_the_state_dir() {
        let text = "[jwt]\naudience = \"llm-proxy\"\nmax_lifetime = \"90d\"\n\
                    default_kid = \"k1\"\nreload_interval = \"250ms\"\nfailure_budget = 0\n";
        let cfg = Config::from_toml(text, Path::new("t.toml")).expect("parse");
        assert_eq!(cfg.jwt.audience.as_deref(), Some("llm-proxy"));
        assert_eq!(cfg.jwt.max_lifetime, Duration::from_secs(90 * 86_400));
        assert_eq!(cfg.jwt.reload_interval, Duration::from_millis(250));
        let state = Path::new("/state");
        assert_eq!(cfg.jwt.jwks_path(state), state.join("jwks.json"));
        assert_eq!(cfg.jwt.keys_path(state), state.join("jwt-keys"));
        assert_eq!(
            cfg.jwt.revocation_path(state),
            state.join("revoked-tokens.jsonl")
        );
        let typo = Config::from_toml("[jwt]\nmax_lifetme = \"1d\"\n", Path::new("t.toml"))
            .expect_err("typo");
        assert!(typo.to_string().contains("max_lifetme"), "{typo}");
    }
}
