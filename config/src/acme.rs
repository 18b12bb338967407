//! `[tls.acme]`: certificates from an ACME CA (Let's Encrypt by default),
//! the keys `vibectl-edge serve-acme` sets from its flags. Validated with
//! the rest of `[tls]` by [`crate::TlsConfig::check`].

use crate::defaults;
use serde::Deserialize;
use std::{net::SocketAddr, path::PathBuf};

/// How the CA checks that this edge answers for the domains.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
pub enum AcmeChallenge {
    /// On the TLS listener, ALPN `acme-tls/1` (the CA connects to port 443).
    #[default]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// `/.well-known/acme-challenge/<token>` on the plain HTTP listener
    /// (`http_listen`; the CA connects to port 80).
    #[serde(rename = "http-01")]
    Http01,
    /// A TXT record `_acme-challenge.<name>` written to the zone by RFC
    /// 2136 dynamic update (`[tls.acme.dns01]`); the only one that proves
    /// wildcard names and hosts the CA cannot reach.
    #[serde(rename = "dns-01")]
    Dns01,
}

/// Where the ACME account, certificate and pending challenge answers live.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum AcmeStorage {
    /// The cache directory (`cache_dir`): one replica per directory.
    #[serde(rename = "directory")]
    Directory,
    /// Redis (`limits.redis_url`): replicas share one ACME state, and one
    /// of them orders at a time (a lock with a lease).
    #[serde(rename = "redis")]
    Redis,
}

/// `[tls.acme]` (`serve-acme` flags in brackets).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeTls {
    /// Contact address of the ACME account (`--email`), without `mailto:`.
    pub email: String,
    /// Names on the certificate (`--domain`, repeatable): DNS names, no IP
    /// addresses; wildcards (`*.example.com`) only with `dns-01`.
    pub domains: Vec<String>,
    /// The CA's directory URL (`--directory-url`, https only). Default: Let's
    /// Encrypt production, or staging with `staging = true`.
    pub directory_url: Option<String>,
    /// Let's Encrypt staging (`--staging`): untrusted certificates, generous
    /// rate limits, for trying a setup out.
    pub staging: bool,
    /// `"tls-alpn-01"` (default), `"http-01"` (`--challenge`) or
    /// `"dns-01"` (needs `[tls.acme.dns01]`).
    pub challenge: AcmeChallenge,
    /// `[tls.acme.dns01]`: the DNS server, zone and TSIG key of `dns-01`.
    pub dns01: Option<Box<crate::acme_dns::AcmeDns01>>,
    /// PEM roots trusted for the CA's own HTTPS API besides the public
    /// (webpki) roots (`--acme-ca-file`), e.g. Pebble's test CA. Not used
    /// for client connections.
    pub ca_file: Option<PathBuf>,
    /// Where the account key and certificates are kept (`--cache-dir`; 0700,
    /// files 0600). Default `<state_dir>/acme`.
    pub cache_dir: Option<PathBuf>,
    /// Keep the cache in a temporary directory (`--ephemeral-cache`): every
    /// start orders a new certificate and may hit the CA's rate limits.
    pub ephemeral_cache: bool,
    /// Plain HTTP listener (`--http-listen`): answers HTTP-01 challenges and
    /// redirects everything else to https. Not started when unset; required
    /// with `challenge = "http-01"`.
    pub http_listen: Option<SocketAddr>,
    /// The port in the https URLs that the plain HTTP listener redirects to
    /// (`--https-port`), when clients reach the TLS listener on another port
    /// than it binds (a Service mapping 443 to 8443). Default: the TLS
    /// listener's port (none in the URL when it is 443).
    pub https_port: Option<u16>,
    /// `"directory"` or `"redis"`. Default: `"redis"` with `[limits]
    /// backend = "redis"`, else `"directory"`.
    pub storage: Option<AcmeStorage>,
    /// Prefix of the ACME keys in Redis. Default: `limits.redis_key_prefix`
    /// followed by `acme:`.
    pub redis_key_prefix: Option<String>,
    /// How long the ordering lock lives without a renewal (a crashed
    /// holder's lock frees itself after this). Default 30 s.
    #[serde(with = "humantime_serde")]
    pub lock_lease: Option<std::time::Duration>,
}

impl AcmeTls {
    /// The directory URL in force: `directory_url`, else Let's Encrypt
    /// staging or production.
    pub fn directory(&self) -> &str {
        match (&self.directory_url, self.staging) {
            (Some(url), _) => url,
            (None, true) => defaults::ACME_LETS_ENCRYPT_STAGING,
            (None, false) => defaults::ACME_LETS_ENCRYPT_PRODUCTION,
        }
    }

    /// Checks across keys: `(key, message)` of the first problem.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.domains.is_empty() {
            return Err((
                "tls.acme.domains",
                "needs at least one domain (the name clients connect to)",
            ));
        }
        let dns01 = self.challenge == AcmeChallenge::Dns01;
        let wildcard = |d: &String| d.strip_prefix("*.").is_some_and(is_dns_name);
        if !dns01 && self.domains.iter().any(wildcard) {
            return Err((
                "tls.acme.domains",
                "wildcard names (*.example.com) can only be proven with challenge = \"dns-01\" (and a [tls.acme.dns01] table)",
            ));
        }
        if !self.domains.iter().all(|d| is_dns_name(d) || wildcard(d)) {
            return Err((
                "tls.acme.domains",
                "must be DNS names such as proxy.example.com (no IP addresses, ports or schemes; *.example.com only with dns-01)",
            ));
        }
        match (&self.dns01, dns01) {
            (Some(table), true) => table.check(&self.domains)?,
            (None, true) => {
                return Err((
                    "tls.acme.dns01",
                    "is required with challenge = \"dns-01\": server, zone, key_name and secret_file or secret_env of the TSIG key",
                ));
            }
            (Some(_), false) => {
                return Err(("tls.acme.dns01", "is only used with challenge = \"dns-01\""));
            }
            (None, false) => {}
        }
        if self.email.trim().is_empty() {
            return Err((
                "tls.acme.email",
                "is required: the contact address of the ACME account",
            ));
        }
        if !is_email(&self.email) {
            return Err((
                "tls.acme.email",
                "is not an e-mail address (expected name@example.com, without mailto:)",
            ));
        }
        if self.challenge == AcmeChallenge::Http01 && self.http_listen.is_none() {
            return Err((
                "tls.acme.http_listen",
                "is required with the http-01 challenge: the CA fetches the challenge from this plain HTTP listener (port 80 as the CA sees it)",
            ));
        }
        if self.staging && self.directory_url.is_some() {
            return Err((
                "tls.acme.staging",
                "conflicts with tls.acme.directory_url (staging means the Let's Encrypt staging directory)",
            ));
        }
        if self
            .directory_url
            .as_deref()
            .is_some_and(|url| !url.starts_with("https://") || url.len() <= "https://".len())
        {
            return Err((
                "tls.acme.directory_url",
                "must be an https:// URL (ACME runs over HTTPS only)",
            ));
        }
        if self.ephemeral_cache && self.cache_dir.is_some() {
            return Err((
                "tls.acme.ephemeral_cache",
                "conflicts with tls.acme.cache_dir (choose a kept or a temporary cache)",
            ));
        }
        if self
            .lock_lease
            .is_some_and(|l| l < std::time::Duration::from_secs(1))
        {
            return Err(("tls.acme.lock_lease", "must be at least 1s"));
        }
        if self.https_port == Some(0) {
            return Err(("tls.acme.https_port", "must be a port number (1-65535)"));
        }
        Ok(())
    }
}

pub use crate::dns_name::is_dns_name;

/// A plausible e-mail address: `local@domain`, one `@`, a dotted domain,
/// no spaces or characters that would break the `mailto:` URL.
pub fn is_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !email.starts_with("mailto:")
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;:\"()[]\\".contains(c))
        && !domain.contains('@')
        && domain.contains('.')
        && is_dns_name(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("acme.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn acme_table_parses_and_defaults_to_lets_encrypt() {
        let cfg = parse(
            "[tls.acme]\nemail = \"ops@example.com\"\ndomains = [\"proxy.example.com\"]\n\
             challenge = \"http-01\"\nhttp_listen = \"0.0.0.0:8080\"\nhttps_port = 443\n",
        )
        .expect("valid");
        let crate::TlsMode::Acme(acme) = cfg.tls.mode() else {
            panic!("acme mode")
        };
        assert_eq!(acme.challenge, AcmeChallenge::Http01);
        assert_eq!(acme.directory(), defaults::ACME_LETS_ENCRYPT_PRODUCTION);
        let staging = AcmeTls {
            staging: true,
            ..acme
        };
        assert_eq!(staging.directory(), defaults::ACME_LETS_ENCRYPT_STAGING);
    }

    #[test]
    fn impossible_acme_setups_name_the_key() {
        let base = "[tls.acme]\nemail = \"ops@example.com\"\ndomains = [\"proxy.example.com\"]\n";
        for (extra, key) in [
            ("", ""),
            ("[tls.self_signed]\n", "tls"),
            ("challenge = \"http-01\"\n", "tls.acme.http_listen"),
            (
                "staging = true\ndirectory_url = \"https://ca/dir\"\n",
                "tls.acme.staging",
            ),
            (
                "directory_url = \"http://ca/dir\"\n",
                "tls.acme.directory_url",
            ),
            (
                "ephemeral_cache = true\ncache_dir = \"/x\"\n",
                "tls.acme.ephemeral_cache",
            ),
            ("challenge = \"dns-01\"\n", "tls.acme.dns01"),
            ("challenge = \"dns-02\"\n", "tls.acme.challenge"),
            ("storage = \"redis\"\n", "tls.acme.storage"),
            ("storage = \"s3\"\n", "tls.acme.storage"),
            ("lock_lease = \"10ms\"\n", "tls.acme.lock_lease"),
        ] {
            let result = parse(&format!("{base}{extra}"));
            if key.is_empty() {
                result.expect("valid");
                continue;
            }
            let err = result.expect_err(extra);
            assert!(err.contains(&format!("`{key}`")), "{extra}: {err}");
        }
        for (toml, key) in [
            (
                "[tls.acme]\nemail = \"ops@example.com\"\n",
                "tls.acme.domains",
            ),
            (
                "[tls.acme]\nemail = \"ops@example.com\"\ndomains = [\"*.example.com\"]\n",
                "tls.acme.domains",
            ),
            (
                "[tls.acme]\ndomains = [\"a.example.com\"]\n",
                "tls.acme.email",
            ),
            (
                "[tls.acme]\nemail = \"not-an-address\"\ndomains = [\"a.example.com\"]\n",
                "tls.acme.email",
            ),
        ] {
            let err = parse(toml).expect_err(toml);
            assert!(err.contains(&format!("`{key}`")), "{toml}: {err}");
        }
    }

    #[test]
    fn dns_01_allows_wildcards_inside_its_zone_and_needs_a_secret_source() {
        let base = "[tls.acme]\nemail = \"ops@example.com\"\nchallenge = \"dns-01\"\n";
        let table = "[tls.acme.dns01]\nserver = \"127.0.0.1:53\"\nzone = \"example.com\"\nkey_name = \"acme\"\n";
        let ok = parse(&format!(
            "{base}domains = [\"*.example.com\", \"example.com\"]\n{table}secret_env = \"TSIG\"\n"
        ))
        .expect("valid");
        let crate::TlsMode::Acme(acme) = ok.tls.mode() else {
            panic!("acme mode")
        };
        let dns01 = acme.dns01.expect("table");
        assert_eq!(dns01.algorithm, crate::acme_dns::TsigAlgorithm::HmacSha256);
        assert_eq!(dns01.ttl, crate::acme_dns::DEFAULT_TXT_TTL);
        for (domains, extra, key) in [
            ("*.example.com", "", "tls.acme.dns01.secret_file"),
            (
                "*.example.com",
                "secret_env = \"A\"\nsecret_file = \"/s\"\n",
                "tls.acme.dns01.secret_file",
            ),
            ("*.other.org", "secret_env = \"A\"\n", "tls.acme.domains"),
            (
                "a.example.com",
                "secret_env = \"A\"\nalgorithm = \"hmac-md5\"\n",
                "tls.acme.dns01.algorithm",
            ),
        ] {
            let err = parse(&format!("{base}domains = [\"{domains}\"]\n{table}{extra}"))
                .expect_err(extra);
            assert!(err.contains(&format!("`{key}`")), "{extra}: {err}");
        }
        let err = parse(&format!(
            "{base}domains = [\"a.example.com\"]\n[tls.acme.dns01]\nserver = \"ns1\"\nzone = \"example.com\"\nkey_name = \"k\"\nsecret_env = \"A\"\n"
        ))
        .expect_err("no port");
        assert!(err.contains("`tls.acme.dns01.server`"), "{err}");
    }

    #[test]
    fn names_and_addresses() {
        for good in [
            "proxy.example.com",
            "a-b.c.test",
            "localhost",
            "xn--bcher-kva.example",
        ] {
            assert!(is_dns_name(good), "{good}");
        }
        for bad in [
            "",
            "*.example.com",
            "10.0.0.1",
            "a..b",
            "-a.b",
            "a.b:443",
            "https://a.b",
            "a b",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
        for good in ["ops@example.com", "first.last+tag@sub.example.org"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "ops",
            "@example.com",
            "ops@",
            "ops@localhost",
            "mailto:ops@example.com",
            "a b@example.com",
            "a@b@example.com",
            "ops@example.com,x@y.z",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }
}
