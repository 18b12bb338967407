//! `serve`, `serve-custom`, `serve-ca`, `serve-insecure`: apply the flags to
//! the configuration, bind the listeners, then [`EdgeApp::build`] (the one
//! composition root) and serve until the shutdown token fires, drain.

use crate::{
    EdgeError,
    app::{Binds, EdgeApp},
};
use clap::Args;
use std::{net::SocketAddr, path::PathBuf};
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
    /// Core address (host:port, http://host:port or unix:/path) instead of edge.core_address.
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
    match &mode {
        ServeMode::Tls | ServeMode::Insecure => {}
        ServeMode::Custom {
            cert_file,
            key_file,
        } => {
            config.tls.self_signed = None;
            config.tls.private_ca = None;
            config.tls.files = Some(FilesTls {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            });
        }
        ServeMode::PrivateCa { dir } => {
            config.tls.self_signed = None;
            config.tls.files = None;
            config.tls.private_ca = Some(PrivateCaTls { dir: dir.clone() });
        }
    }
    let binds = Binds::from_config(&config).await?;
    let mut app = EdgeApp::new(config);
    if matches!(mode, ServeMode::Insecure) {
        eprintln!("{INSECURE_BANNER}");
        app = app.plaintext();
    }
    app.build(binds, shutdown).await?.wait().await
}
