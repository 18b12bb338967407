//! `serve-acme` (and `serve` with `[tls.acme]`): TLS with certificates from
//! an ACME CA ([`crate::tls::acme`]). Applies the flags to `[tls.acme]`,
//! validates (errors name the flag and the key), then runs the main, admin
//! and — with `--http-listen` — plain HTTP ([`crate::http01`]) listeners
//! until the shutdown token fires. `/ready` answers 503 "waiting for ACME
//! certificate …" until an ACME certificate is served.
//!
//! [`AcmeServer`] is the same program on listeners bound by the caller, for
//! tests: bind on 127.0.0.1:0, tell the CA the ports, then start.

use super::serve::{ServeArgs, bind, stop_all_on_error};
use crate::{
    Edge, EdgeError, Transport,
    http01::{Http01, serve_http01},
    jwt::{SecretEnv, lookup_secret},
    tls::{
        CertResolver,
        acme::{self, Acme, AcmeError, AcmeStatus, ProbePolicy},
    },
};
use clap::{Args, ValueEnum};
use std::{net::SocketAddr, path::PathBuf, sync::Arc};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use vibectl_config::{AcmeChallenge, Config, TlsMode};

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

/// `serve-acme`: applies the flags, binds, serves until `shutdown`, drains.
pub async fn serve_acme(
    args: &ServeAcmeArgs,
    mut config: Config,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    args.apply(&mut config)
        .map_err(crate::tls::TlsError::from)?;
    serve_acme_config(config, shutdown).await
}

/// Serves an already validated configuration with `[tls.acme]` (what
/// `serve` does when the file has one).
pub async fn serve_acme_config(
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let listeners = AcmeListeners::bind(&config).await?;
    AcmeServer::start(listeners, config, &ProbePolicy::default(), shutdown)
        .await?
        .wait()
        .await
}

/// The listeners of ACME mode, bound before anything starts.
#[derive(Debug)]
pub struct AcmeListeners {
    /// TLS (`edge.listen`).
    pub main: TcpListener,
    /// `/live`, `/ready`, `/metrics` (`edge.admin_listen`).
    pub admin: TcpListener,
    /// Plain HTTP (`tls.acme.http_listen`), if configured.
    pub http: Option<TcpListener>,
}

impl AcmeListeners {
    /// Binds the addresses of `config`.
    pub async fn bind(config: &Config) -> Result<Self, EdgeError> {
        let http = match config.tls.acme.as_ref().and_then(|a| a.http_listen) {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        Ok(Self {
            main: bind(config.edge.listen).await?,
            admin: bind(config.edge.admin_listen).await?,
            http,
        })
    }
}

/// A running ACME-mode edge.
pub struct AcmeServer {
    edge: Edge,
    resolver: Arc<CertResolver>,
    status: watch::Receiver<AcmeStatus>,
    acme: Acme,
    tasks: Vec<JoinHandle<Result<(), EdgeError>>>,
}

impl AcmeServer {
    /// Starts ACME ([`acme::start`]: fallback, cache, directory check), the
    /// edge on `listeners`, `/ready` tracking, and the limits upkeep.
    pub async fn start(
        listeners: AcmeListeners,
        config: Config,
        probe: &ProbePolicy,
        shutdown: CancellationToken,
    ) -> Result<Self, EdgeError> {
        let TlsMode::Acme(opts) = config.tls.mode() else {
            return Err(invalid("tls.acme", "is not configured"));
        };
        if opts.challenge == AcmeChallenge::Http01 && listeners.http.is_none() {
            return Err(invalid(
                "--http-listen (tls.acme.http_listen)",
                "is required with the http-01 challenge",
            ));
        }
        let https_port = match opts.https_port {
            Some(port) => port,
            None => listeners
                .main
                .local_addr()
                .map_err(EdgeError::Listener)?
                .port(),
        };
        let config = Arc::new(config);
        let setup = acme::start(&config, probe, shutdown.clone()).await?;
        let secret = if config.edge.require_auth {
            let (secret, source) = lookup_secret(
                &SecretEnv::from_process(),
                &config.jwt,
                &config.edge.state_dir(),
            )?;
            tracing::info!(%source, "JWT secret");
            Some(secret)
        } else {
            None
        };
        let edge = Edge::new(
            config.clone(),
            Transport::Tls(setup.server_config.clone()),
            secret,
        )?;
        edge.metrics().watch_certificate(setup.resolver.clone());
        let acme = setup.acme;
        let status = acme.status();
        // Before any listener runs, so `/ready` is never 200 too early.
        let pending = acme.waiting_reason(&status.borrow());
        if let Some(reason) = &pending {
            tracing::warn!("not ready: {reason}");
        }
        edge.readiness().set_certificate_pending(pending);

        let mut tasks = vec![tokio::spawn(track_readiness(
            edge.clone(),
            status.clone(),
            acme.waiting_reasons(),
            shutdown.clone(),
        ))];
        tasks.push(tokio::spawn(crate::maintain(
            edge.clone(),
            config.source.clone(),
            shutdown.clone(),
        )));
        if let Some(http) = listeners.http {
            let http01 = Http01 {
                answers: acme.key_authorizations(),
                https_port,
                default_host: opts.domains[0].to_ascii_lowercase(),
            };
            tasks.push(tokio::spawn(stop_all_on_error(
                serve_http01(http, http01, shutdown.clone()),
                shutdown.clone(),
            )));
        }
        tasks.push(tokio::spawn(stop_all_on_error(
            crate::serve(listeners.main, edge.clone(), shutdown.clone()),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(stop_all_on_error(
            crate::serve_admin(listeners.admin, edge.clone(), shutdown.clone()),
            shutdown.clone(),
        )));
        Ok(Self {
            edge,
            resolver: setup.resolver,
            status,
            acme,
            tasks,
        })
    }

    /// The running edge.
    pub fn edge(&self) -> &Edge {
        &self.edge
    }

    /// What the TLS listener serves (fallback, then the ACME certificate).
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// The ACME status (served certificate, orders, last error).
    pub fn status(&self) -> watch::Receiver<AcmeStatus> {
        self.status.clone()
    }

    /// The cache directory in use.
    pub fn cache_dir(&self) -> PathBuf {
        self.acme.cache_dir().to_owned()
    }

    /// Waits until every listener and task has ended (after the shutdown
    /// token fires, or after one listener failed, which stops the others).
    pub async fn wait(self) -> Result<(), EdgeError> {
        let mut first_error = None;
        for task in self.tasks {
            let result = task
                .await
                .map_err(|e| EdgeError::Listener(std::io::Error::other(e.to_string())))
                .and_then(|r| r);
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        self.acme.stopped().await;
        first_error.map_or(Ok(()), Err)
    }
}

fn invalid(key: &str, message: &str) -> EdgeError {
    crate::tls::TlsError::from(AcmeError::Invalid {
        key: key.to_owned(),
        message: message.to_owned(),
    })
    .into()
}

/// Mirrors the ACME status into `/ready` until `shutdown`.
async fn track_readiness(
    edge: Edge,
    mut status: watch::Receiver<AcmeStatus>,
    reason_of: impl Fn(&AcmeStatus) -> Option<String> + Send,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            changed = status.changed() => if changed.is_err() { return Ok(()) },
        }
        let reason = reason_of(&status.borrow_and_update());
        let was = edge.readiness().certificate_pending();
        match (&was, &reason) {
            (Some(_), None) => tracing::info!("ACME certificate served: ready"),
            (None, Some(reason)) => tracing::warn!("not ready: {reason}"),
            _ => {}
        }
        edge.readiness().set_certificate_pending(reason);
    }
}
