//! Starting ACME: the checks that refuse an impossible setup (client
//! certificates with TLS-ALPN-01, a DNS-01 key the server refuses, a cache
//! that cannot be used, a directory URL that does not answer), then the
//! fallback, the storage, the follower of other replicas and the task.

use super::{
    ACME_TLS_ALPN, Acme, AcmeError, AcmeResolver, AcmeSetup, AcmeStatus, Answers, ProbePolicy,
    account, directory, dns_update, dns01, driver, follow, prepare, resolver::Deployer, steps,
    storage,
};
use crate::tls::{CertResolver, TlsError, files, server_config};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vibectl_config::{AcmeChallenge, AcmeTls, ClientAuth, Config, TlsMode};

/// Starts ACME as `config.tls` (`[tls.acme]`) says: prepares the fallback
/// and the cache, checks the directory URL (unless a valid certificate is
/// cached), then orders and renews in the background until `shutdown`.
/// Must run inside a tokio runtime.
pub async fn start(
    config: &Config,
    probe: &ProbePolicy,
    redis: Option<&crate::shared_redis::SharedRedis>,
    shutdown: CancellationToken,
) -> Result<AcmeSetup, TlsError> {
    crate::tls::install_crypto_provider();
    let TlsMode::Acme(opts) = config.tls.mode() else {
        return Err(invalid("tls.acme", "is not configured").into());
    };
    check_client_auth(config, &opts)?;
    let domains: Vec<String> = opts
        .domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    let directory_url = opts.directory().to_owned();

    let fallback = prepare::fallback(config, &domains)?;
    let (cache_dir, ephemeral) = prepare::prepare_cache(config, &opts)?;
    let client = directory::client_config(opts.ca_file.as_deref())?;
    let storage = storage::open(
        config,
        &opts,
        redis,
        cache_dir.clone(),
        &domains,
        &directory_url,
    )?;
    let cached = storage.cert_location();
    let stored = storage.certificate().await.ok().flatten();
    match stored.map(|pem| files::parse(&pem, &pem, &cached, &cached)) {
        Some(Ok(_)) => tracing::info!(
            storage = %storage.describe(),
            "ACME: a valid certificate is stored; the CA is not contacted at start"
        ),
        _ => directory::probe(&client, &directory_url, probe).await?,
    }

    let dns01 = dns01_setup(&opts).await?;
    let served = Arc::new(CertResolver::new(fallback));
    let (status_tx, status) = watch::channel(AcmeStatus::default());
    let deployer = Arc::new(Deployer {
        served: served.clone(),
        status: status_tx.clone(),
    });
    let (answers, remote) = (Answers::default(), Answers::default());
    let steps = steps::Steps::default();
    let served_pem = Arc::default();
    let (followed_tx, followed) = tokio::sync::mpsc::unbounded_channel();
    if storage.shared() {
        let follower = follow::Follower {
            storage: storage.clone(),
            replica: uuid::Uuid::new_v4().to_string(),
            remote: remote.clone(),
            deployer: deployer.clone(),
            served_pem: Arc::clone(&served_pem),
            deployed: followed_tx,
            status: status_tx.clone(),
        };
        tokio::spawn(follower.run(shutdown.clone()));
    }
    tracing::info!(storage = %storage.describe(), "ACME: state storage");
    let driver = driver::Driver {
        source: account::AccountSource {
            tls: client,
            retry_after: steps.retry_after.clone(),
            contact: format!("mailto:{}", opts.email),
            directory_url: directory_url.clone(),
            storage: storage.clone(),
        },
        domains: domains.clone(),
        challenge: opts.challenge,
        answers: answers.clone(),
        dns01,
        steps,
        lease: opts.lock_lease.unwrap_or(storage::DEFAULT_LEASE),
        storage,
        served_pem,
        followed: Some(followed),
        deployer,
        status: status_tx,
    };
    let resolver = Arc::new(AcmeResolver {
        answers: answers.clone(),
        remote: remote.clone(),
        served: served.clone(),
    });
    let mut server_config = server_config(&config.tls, resolver)?;
    if opts.challenge == AcmeChallenge::TlsAlpn01 {
        server_config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    tracing::info!(
        domains = ?domains,
        directory = %directory_url,
        challenge = ?opts.challenge,
        cache = %cache_dir.display(),
        "ACME: serving the self-signed fallback until the ACME certificate is deployed"
    );
    let task = tokio::spawn(driver.drive(ephemeral, shutdown));
    Ok(AcmeSetup {
        server_config: Arc::new(server_config),
        resolver: served,
        acme: Acme {
            status,
            answers,
            remote,
            domains,
            directory_url,
            cache_dir,
            task,
        },
    })
}

/// DNS-01's updater, its TSIG key checked against the server: a key the
/// server refuses stops the start; a server that does not answer is
/// logged (each order checks again before it starts).
async fn dns01_setup(opts: &AcmeTls) -> Result<Option<Arc<dns01::Dns01>>, AcmeError> {
    let (AcmeChallenge::Dns01, Some(table)) = (opts.challenge, &opts.dns01) else {
        return Ok(None);
    };
    let dns = dns01::Dns01::from_config(table)?;
    match dns.check().await {
        Ok(()) => {
            tracing::info!(server = %table.server, zone = %table.zone, key = %table.key_name, "ACME: DNS-01 server takes this key's updates")
        }
        Err(error @ dns_update::DnsError::Unreachable { .. }) => {
            tracing::warn!(%error, "ACME: DNS-01 server not reachable at start; each order checks again");
        }
        Err(error) => return Err(invalid("tls.acme.dns01", &error.to_string())),
    }
    Ok(Some(Arc::new(dns)))
}

fn invalid(key: &str, message: &str) -> AcmeError {
    AcmeError::Invalid {
        key: key.to_owned(),
        message: message.to_owned(),
    }
}

/// TLS-ALPN-01 validation connections carry no client certificate.
fn check_client_auth(config: &Config, opts: &AcmeTls) -> Result<(), AcmeError> {
    let required = config.tls.client_ca_file.is_some()
        && config.tls.client_auth.unwrap_or_default() == ClientAuth::Required;
    if required && opts.challenge == AcmeChallenge::TlsAlpn01 {
        return Err(invalid(
            "tls.client_auth",
            "mutual TLS is required, but the CA's TLS-ALPN-01 validation presents no client certificate: use the http-01 challenge, or client_auth = \"optional\"",
        ));
    }
    Ok(())
}
