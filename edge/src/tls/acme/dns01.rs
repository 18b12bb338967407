//! DNS-01 (RFC 8555 §8.4) for an order: the TXT record
//! `_acme-challenge.<name>` (a wildcard's base name) holding the key
//! authorization's digest is added to the zone ([`DnsUpdater`]), the
//! challenge is responded to only once the zone's authoritative servers
//! serve it (asked directly, every [`VISIBLE_POLL`], at most
//! `propagation_timeout`), and it is removed once the authorizations are
//! final — also when the order fails. The TSIG secret is read at start
//! from a file or an environment variable and kept only inside the signer.

use super::{
    AcmeError,
    dns_update::{DnsError, DnsUpdater, fqdn, txt_values},
};
use base64::Engine;
use hickory_proto::rr::Name;
use instant_acme::{AuthorizationStatus, Order};
use std::time::{Duration, Instant};
use vibectl_config::AcmeDns01;

/// The pause between two looks for the TXT record.
const VISIBLE_POLL: Duration = Duration::from_millis(500);

/// One TXT record of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    /// The certificate name it proves (`*.example.com` for a wildcard).
    pub domain: String,
    /// `_acme-challenge.<name>.`
    pub name: Name,
    /// base64url(SHA-256(key authorization)).
    pub value: String,
}

/// The DNS-01 set-up of `[tls.acme.dns01]`.
#[derive(Debug)]
pub struct Dns01 {
    updater: DnsUpdater,
    /// The servers that must serve a record before the CA looks: the
    /// primary, then `check_servers`.
    servers: Vec<String>,
    ttl: u32,
    propagation_timeout: Duration,
}

fn invalid(key: &str, message: String) -> AcmeError {
    AcmeError::Invalid {
        key: key.to_owned(),
        message,
    }
}

/// The TSIG secret (decoded) from `secret_file` or `secret_env`. The
/// file holds the base64 secret alone, or a BIND key file (`tsig-keygen`'s
/// output, whose `secret "…";` is used). Errors never quote the content.
pub fn read_secret(opts: &AcmeDns01) -> Result<Vec<u8>, AcmeError> {
    let (key, text) = match (&opts.secret_file, &opts.secret_env) {
        (Some(path), _) => {
            let key = format!("tls.acme.dns01.secret_file ({})", path.display());
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(&key, format!("cannot be read: {e}")))?;
            (key, text)
        }
        (None, Some(var)) => {
            let key = format!("tls.acme.dns01.secret_env ({var})");
            let text = std::env::var(var)
                .map_err(|_| invalid(&key, "is not set (or not UTF-8)".to_owned()))?;
            (key, text)
        }
        (None, None) => {
            return Err(invalid(
                "tls.acme.dns01.secret_file",
                "or secret_env is required".to_owned(),
            ));
        }
    };
    let encoded = match text.split_once("secret") {
        Some((_, rest)) if text.contains('{') => rest.split('"').nth(1).unwrap_or_default(),
        _ => text.trim(),
    };
    let secret = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| {
            invalid(
                &key,
                "does not hold a base64 TSIG secret (the secret alone, or a key file as tsig-keygen writes it)".to_owned(),
            )
        })?;
    if secret.is_empty() {
        return Err(invalid(&key, "holds an empty TSIG secret".to_owned()));
    }
    Ok(secret)
}

impl Dns01 {
    /// From the configuration (reads the secret).
    pub fn from_config(opts: &AcmeDns01) -> Result<Self, AcmeError> {
        let secret = read_secret(opts)?;
        let updater = DnsUpdater::new(
            &opts.server,
            &opts.zone,
            &opts.key_name,
            opts.algorithm,
            secret,
        )
        .map_err(|e| invalid("tls.acme.dns01", e.to_string()))?;
        let mut servers = vec![opts.server.clone()];
        servers.extend(opts.check_servers.iter().cloned());
        Ok(Self {
            updater,
            servers,
            ttl: opts.ttl,
            propagation_timeout: opts.propagation_timeout,
        })
    }

    /// Checks that the server takes this key's updates of the zone.
    pub async fn check(&self) -> Result<(), DnsError> {
        self.updater.check_key().await
    }

    /// The record that proves `domain` with `value`.
    pub fn record(&self, domain: &str, value: String) -> Result<TxtRecord, DnsError> {
        let base = domain.trim_start_matches("*.");
        let name = fqdn(&format!("_acme-challenge.{base}"))?;
        if !self.updater.zone().zone_of(&name) {
            return Err(DnsError::Invalid(format!(
                "{domain} is not inside the zone {} (tls.acme.dns01.zone)",
                self.updater.zone()
            )));
        }
        Ok(TxtRecord {
            domain: domain.to_owned(),
            name,
            value,
        })
    }

    /// Adds every record, then waits until every server serves each one.
    /// On an error the records added so far are removed again.
    pub async fn publish(&self, records: &[TxtRecord], order_url: &str) -> Result<(), DnsError> {
        let mut added = Vec::new();
        let mut result = Ok(());
        for record in records {
            match self
                .updater
                .add_txt(&record.name, &record.value, self.ttl)
                .await
            {
                Ok(()) => {
                    tracing::info!(order = order_url, name = %record.name, "ACME: DNS-01 TXT record added");
                    added.push(record.clone());
                }
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.wait_visible(records, order_url).await;
        }
        if result.is_err() {
            self.remove(&added, order_url).await;
        }
        result
    }

    /// Polls every server (directly, without recursion) until each serves
    /// every record's value; at most `propagation_timeout`.
    async fn wait_visible(&self, records: &[TxtRecord], order_url: &str) -> Result<(), DnsError> {
        let deadline = Instant::now() + self.propagation_timeout;
        for server in &self.servers {
            for record in records {
                loop {
                    let seen = txt_values(server, &record.name).await;
                    if matches!(&seen, Ok(values) if values.contains(&record.value)) {
                        break;
                    }
                    if Instant::now() + VISIBLE_POLL > deadline {
                        let why = match seen {
                            Ok(values) => format!("it serves {} other value(s)", values.len()),
                            Err(error) => error.to_string(),
                        };
                        return Err(DnsError::Invalid(format!(
                            "the TXT record {} was not visible on {server} within {:?} ({why}); raise tls.acme.dns01.propagation_timeout or check the zone's transfers",
                            record.name, self.propagation_timeout
                        )));
                    }
                    tokio::time::sleep(VISIBLE_POLL).await;
                }
            }
        }
        tracing::info!(
            order = order_url,
            servers = ?self.servers,
            "ACME: DNS-01 TXT records visible on the authoritative servers"
        );
        Ok(())
    }

    /// Removes the records (each value only); failures are logged.
    pub async fn remove(&self, records: &[TxtRecord], order_url: &str) {
        for record in records {
            match self.updater.remove_txt(&record.name, &record.value).await {
                Ok(()) => {
                    tracing::info!(order = order_url, name = %record.name, "ACME: DNS-01 TXT record removed")
                }
                Err(error) => {
                    tracing::warn!(order = order_url, name = %record.name, %error, "ACME: DNS-01 TXT record could not be removed; remove it by hand")
                }
            }
        }
    }
}

/// Deactivates the order's pending authorizations (the order becomes
/// invalid rather than left pending) when its TXT records cannot be put
/// in place.
pub async fn deactivate_pending(order: &mut Order, url: &str) {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let Ok(mut authorization) = authorization else {
            continue;
        };
        if authorization.status == AuthorizationStatus::Pending {
            let result = authorization.deactivate().await;
            tracing::info!(
                order = url,
                ok = result.is_ok(),
                "ACME: authorization deactivated: its TXT record could not be put in place"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(file: Option<std::path::PathBuf>, env: Option<&str>) -> AcmeDns01 {
        AcmeDns01 {
            server: "127.0.0.1:53".into(),
            zone: "example.test".into(),
            key_name: "acme".into(),
            algorithm: Default::default(),
            secret_file: file,
            secret_env: env.map(str::to_owned),
            check_servers: vec![],
            propagation_timeout: Duration::from_secs(5),
            ttl: 60,
        }
    }

    #[test]
    fn the_secret_comes_from_a_key_file_or_base64_and_errors_never_quote_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keyfile = dir.path().join("acme.key");
        std::fs::write(
            &keyfile,
            "key \"acme\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LWJ5dGVz\";\n};\n",
        )
        .expect("write");
        assert_eq!(
            read_secret(&opts(Some(keyfile), None)).expect("key file"),
            b"secret-bytes"
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "c2VjcmV0LWJ5dGVz\n").expect("write");
        assert_eq!(
            read_secret(&opts(Some(plain), None)).expect("base64"),
            b"secret-bytes"
        );
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not base64 at all: hunter2!").expect("write");
        let error = read_secret(&opts(Some(bad.clone()), None))
            .expect_err("not base64")
            .to_string();
        assert!(error.contains(&bad.display().to_string()), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let error = read_secret(&opts(None, Some("VIBECTL_TEST_UNSET_TSIG")))
            .expect_err("unset")
            .to_string();
        assert!(error.contains("VIBECTL_TEST_UNSET_TSIG"), "{error}");
    }

    #[test]
    fn wildcards_share_their_base_names_record_and_names_outside_the_zone_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("s");
        std::fs::write(&file, "c2VjcmV0").expect("write");
        let dns = Dns01::from_config(&opts(Some(file), None)).expect("dns01");
        let wild = dns.record("*.example.test", "v".into()).expect("inside");
        assert_eq!(wild.name.to_string(), "_acme-challenge.example.test.");
        let host = dns.record("a.example.test", "v".into()).expect("inside");
        assert_eq!(host.name.to_string(), "_acme-challenge.a.example.test.");
        assert!(dns.record("a.other.test", "v".into()).is_err());
    }
}
