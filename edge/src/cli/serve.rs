//! `serve`, `serve-custom`, `serve-ca`, `serve-insecure`: apply the flags to the
//! configuration, build the [`Edge`], bind the main and admin listeners, serve
//! until the shutdown token fires, drain.

use crate::{
    Edge, EdgeError, Transport,
    jwt::{SecretEnv, lookup_secret},
    tls,
};
use clap::Args;
use std::{net::SocketAddr, path::PathBuf, sync::Arc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use vibectl_config::{Config, FilesTls, PrivateCaTls};

/// Flags that override the configuration file for one run.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Listen on this address instead of edge.listen.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin listener (/live, /ready, /metrics) on this address instead of edge.admin_listen.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Serve Prometheus /metrics on the admin listener (as `[metrics] enabled = true`).
    #[arg(long)]
    pub enable_metrics: bool,
    /// The admin listener's port (where /metrics is), on edge.admin_listen's address.
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// Core address (host:port or unix:/path) instead of edge.core_address.
    #[arg(long, value_name = "ADDR")]
    pub core: Option<String>,
    /// Host name for the certificate (repeatable; replaces edge.hostnames).
    #[arg(long = "hostname", value_name = "NAME")]
    pub hostnames: Vec<String>,
}

impl ServeArgs {
    /// Writes the given flags over `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(listen) = self.listen {
            config.edge.listen = listen;
        }
        if let Some(admin) = self.admin_listen {
            config.edge.admin_listen = admin;
        }
        if self.enable_metrics {
            config.metrics.enabled = true;
        }
        if let Some(port) = self.metrics_port {
            config.edge.admin_listen.set_port(port);
        }
        if let Some(core) = &self.core {
            config.edge.core_address = core.clone();
        }
        if !self.hostnames.is_empty() {
            config.edge.hostnames = self.hostnames.clone();
        }
    }
}

/// Which transport a serving command uses.
#[derive(Debug, Clone)]
pub enum ServeMode {
    /// TLS from the configuration (self-signed unless `[tls.files]`).
    Tls,
    /// TLS from these PEM files.
    Custom {
        /// Certificate chain.
        cert_file: PathBuf,
        /// Private key.
        key_file: PathBuf,
    },
    /// TLS from a private CA directory's `server.crt` and `server.key`.
    PrivateCa {
        /// The CA directory.
        dir: PathBuf,
    },
    /// Plaintext h2c.
    Insecure,
}

const INSECURE_BANNER: &str = "\n\
################################################################################\n\
#  WARNING: serve-insecure: NO TLS. Tokens and prompts cross the network in    #\n\
#  PLAIN TEXT and anyone on the path can read or replay them. Use it only on   #\n\
#  loopback for local development; use `serve` (TLS) everywhere else.          #\n\
################################################################################\n";

/// Serves until `shutdown` fires, then drains; see the module doc.
pub async fn serve(
    mode: ServeMode,
    args: &ServeArgs,
    mut config: Config,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    args.apply(&mut config);
    if let ServeMode::Custom {
        cert_file,
        key_file,
    } = &mode
    {
        config.tls.self_signed = None;
        config.tls.private_ca = None;
        config.tls.files = Some(FilesTls {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        });
    }
    if let ServeMode::PrivateCa { dir } = &mode {
        config.tls.self_signed = None;
        config.tls.files = None;
        config.tls.private_ca = Some(PrivateCaTls { dir: dir.clone() });
    }
    let config = Arc::new(config);
    let mut rotation = None;
    let mut resolver = None;
    let transport = match mode {
        ServeMode::Insecure => {
            eprintln!("{INSECURE_BANNER}");
            tracing::warn!(listen = %config.edge.listen, "serving plaintext h2c WITHOUT TLS: local development only");
            Transport::Insecure
        }
        ServeMode::Tls | ServeMode::Custom { .. } | ServeMode::PrivateCa { .. } => {
            let setup = tls::load(&config)?;
            resolver = Some(setup.resolver.clone());
            // Files and private CA: swap renewed certificates in as they land.
            rotation = setup.start_rotation(shutdown.clone())?;
            if let Some(made) = &setup.self_signed {
                tracing::info!(
                    ca_bundle = %made.ca_bundle_path.display(),
                    sha256 = %made.ca_fingerprint,
                    "self-signed TLS: give clients the CA bundle (--ca-bundle)"
                );
            }
            Transport::Tls(setup.server_config)
        }
    };
    // With a default key id, tokens without `kid` verify against the key
    // set: no legacy HS256 secret is looked up (or generated).
    let secret = if config.edge.require_auth && config.jwt.default_kid.is_none() {
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
    let edge = Edge::new(config.clone(), transport, secret)?;
    if let Some(resolver) = resolver {
        edge.metrics().watch_certificate(resolver);
    }
    // Limits hot reload (from the file this config came from) and upkeep.
    let upkeep = tokio::spawn(crate::maintain(
        edge.clone(),
        config.source.clone(),
        shutdown.clone(),
    ));
    let main = bind(config.edge.listen).await?;
    let admin = bind(config.edge.admin_listen).await?;
    let main = tokio::spawn(stop_all_on_error(
        crate::serve(main, edge.clone(), shutdown.clone()),
        shutdown.clone(),
    ));
    let admin = tokio::spawn(stop_all_on_error(
        crate::serve_admin(admin, edge, shutdown.clone()),
        shutdown.clone(),
    ));
    let (main, admin) = tokio::join!(main, admin);
    // Both listeners stopped, so `shutdown` has fired: the upkeep ends too.
    if let Err(error) = upkeep.await {
        tracing::warn!(%error, "the limits upkeep task failed");
    }
    if let Some(rotation) = rotation {
        shutdown.cancel();
        rotation.stopped().await;
    }
    for result in [main, admin] {
        result.map_err(|e| EdgeError::Listener(std::io::Error::other(e.to_string())))??;
    }
    Ok(())
}

pub(super) async fn bind(address: SocketAddr) -> Result<TcpListener, EdgeError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| EdgeError::Bind { address, source })
}

/// If one listener fails, stop the other too.
pub(super) async fn stop_all_on_error(
    task: impl Future<Output = Result<(), EdgeError>>,
    shutdown: CancellationToken,
) -> Result<(), EdgeError> {
    let result = task.await;
    if result.is_err() {
        shutdown.cancel();
    }
    result
}
