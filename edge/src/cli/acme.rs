//! `serve-acme` (and `serve` with `[tls.acme]`): TLS with certificates from
//! an ACME CA ([`crate::tls::acme`]). Applies the flags to `[tls.acme]` and
//! validates (errors name the flag and the key); the rest is
//! [`EdgeApp::build`], as for every serving command: the main, admin and —
//! with `--http-listen` — plain HTTP ([`crate::http01`]) listeners until
//! the shutdown token fires. `/ready` answers 503 "waiting for ACME
//! certificate …" until an ACME certificate is served.

use super::serve::ServeArgs;
use crate::{
    EdgeError,
    app::{Binds, EdgeApp},
    tls::{TlsError, acme::AcmeError},
};
use clap::{Args, ValueEnum};
use std::{net::SocketAddr, path::PathBuf};
use tokio_util::sync::CancellationToken;
use vibectl_config::{AcmeChallenge, Config};

/// `serve-acme` flags; each overrides its `[tls.acme]` key.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeAcmeArgs {
    /// Listener and core overrides.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Contact e-mail of the ACME account (tls.acme.email).
    #[arg(long, value_name = "ADDRESS")]
    pub email: Option<String>,
    /// Name on the certificate; repeat for more (tls.acme.domains).
    #[arg(long = "domain", value_name = "NAME")]
    pub domains: Vec<String>,
    /// ACME directory URL (tls.acme.directory_url). Default: Let's Encrypt production.
    #[arg(long, value_name = "URL")]
    pub directory_url: Option<String>,
    /// Let's Encrypt staging instead of production (tls.acme.staging).
    #[arg(long)]
    pub staging: bool,
    /// How the CA validates: on the TLS port, or over plain HTTP (tls.acme.challenge).
    #[arg(long, value_enum, value_name = "TYPE")]
    pub challenge: Option<ChallengeArg>,
    /// Extra PEM roots to trust for the CA's API, e.g. Pebble's (tls.acme.ca_file).
    #[arg(long, value_name = "FILE")]
    pub acme_ca_file: Option<PathBuf>,
    /// Account key and certificate cache (tls.acme.cache_dir). Default: <state dir>/acme.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Cache in a temporary directory: every restart orders a new certificate (tls.acme.ephemeral_cache).
    #[arg(long)]
    pub ephemeral_cache: bool,
    /// Plain HTTP listener: HTTP-01 answers, redirects to https (tls.acme.http_listen).
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Port of the https URLs redirected to, when not the TLS listener's (tls.acme.https_port).
    #[arg(long, value_name = "PORT")]
    pub https_port: Option<u16>,
}

/// `--challenge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChallengeArg {
    /// TLS-ALPN-01, on the TLS listener (the CA connects to port 443).
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
    /// HTTP-01, on the plain HTTP listener (the CA connects to port 80).
    #[value(name = "http-01")]
    Http01,
}

/// The flag of each `[tls.acme]` key, for error messages.
const FLAGS: [(&str, &str); 10] = [
    ("tls.acme.email", "--email"),
    ("tls.acme.domains", "--domain"),
    ("tls.acme.directory_url", "--directory-url"),
    ("tls.acme.staging", "--staging"),
    ("tls.acme.challenge", "--challenge"),
    ("tls.acme.ca_file", "--acme-ca-file"),
    ("tls.acme.cache_dir", "--cache-dir"),
    ("tls.acme.ephemeral_cache", "--ephemeral-cache"),
    ("tls.acme.http_listen", "--http-listen"),
    ("tls.acme.https_port", "--https-port"),
];

impl ServeAcmeArgs {
    /// Writes the flags over `config` (`[tls.acme]` becomes the only
    /// certificate source) and validates `[tls]`; an error names the flag
    /// and the key.
    pub fn apply(&self, config: &mut Config) -> Result<(), AcmeError> {
        self.serve.apply(config);
        let mut acme = config.tls.acme.take().unwrap_or_default();
        if let Some(email) = &self.email {
            acme.email = email.clone();
        }
        if !self.domains.is_empty() {
            acme.domains = self.domains.clone();
        }
        if let Some(url) = &self.directory_url {
            acme.directory_url = Some(url.clone());
        }
        acme.staging |= self.staging;
        if let Some(challenge) = self.challenge {
            acme.challenge = match challenge {
                ChallengeArg::TlsAlpn01 => AcmeChallenge::TlsAlpn01,
                ChallengeArg::Http01 => AcmeChallenge::Http01,
            };
        }
        if let Some(file) = &self.acme_ca_file {
            acme.ca_file = Some(file.clone());
        }
        if let Some(dir) = &self.cache_dir {
            acme.cache_dir = Some(dir.clone());
        }
        acme.ephemeral_cache |= self.ephemeral_cache;
        if let Some(listen) = self.http_listen {
            acme.http_listen = Some(listen);
        }
        if let Some(port) = self.https_port {
            acme.https_port = Some(port);
        }
        config.tls.files = None;
        config.tls.private_ca = None;
        config.tls.self_signed = None;
        config.tls.acme = Some(acme);
        check(config)
    }
}

/// `TlsConfig::check`, with the flag beside the key.
fn check(config: &Config) -> Result<(), AcmeError> {
    config.tls.check().map_err(|(key, message)| {
        let key = match FLAGS.iter().find(|(k, _)| *k == key) {
            Some((key, flag)) => format!("{flag} ({key})"),
            None => key.to_owned(),
        };
        AcmeError::Invalid {
            key,
            message: message.to_owned(),
        }
    })
}

/// `serve-acme`: applies the flags, binds, then [`EdgeApp::build`]; serves
/// until `shutdown`, drains.
pub async fn serve_acme(
    args: &ServeAcmeArgs,
    mut config: Config,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    args.apply(&mut config).map_err(TlsError::from)?;
    let binds = Binds::from_config(&config).await?;
    EdgeApp::new(config)
        .build(binds, shutdown)
        .await?
        .wait()
        .await
}
