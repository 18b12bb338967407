//! The composition root: the one place an edge is assembled. Every `serve*`
//! command maps its flags onto a [`Config`] and calls [`EdgeApp::build`];
//! the end-to-end harness and the ACME and rotation tests call the same
//! function with listeners on `127.0.0.1:0` ([`Binds::loopback`]).
//!
//! [`EdgeApp::build`] takes listeners that are already bound ([`Binds`]:
//! nothing is written before the ports are ours), then, in order:
//!
//! 0. the one Redis handle ([`crate::shared_redis`], `[limits] backend =
//!    "redis"`), shared by limits, token revocations and ACME state,
//! 1. the legacy JWT secret ([`secret`]: none with `jwt.default_kid`),
//! 2. the certificate source ([`certs`]: h2c, files / private CA / self-signed
//!    with rotation of watched files, or ACME),
//! 3. the [`Edge`] (verifier, core client, limiter, metrics),
//! 4. readiness (ACME: `/ready` is 503 until an ACME certificate is served),
//! 5. upkeep ([`crate::maintain`]: limits hot reload, idle state),
//! 6. every listener: main ([`crate::serve`]), admin
//!    ([`crate::serve_admin`]) and, in ACME mode, plain HTTP
//!    ([`crate::http01`]).
//!
//! The result is a [`Running`] edge: its addresses, its certificate state,
//! and [`Running::wait`], which returns once every task ended (after the
//! shutdown token fired, or after one listener failed, which stops the rest).

mod binds;
mod certs;
mod running;
mod secret;

pub use binds::Binds;
pub use running::Running;

use crate::{
    Edge, EdgeError,
    auth::SecretEnv,
    http01::{Http01, serve_http01},
    shared_redis::SharedRedis,
    tls::{TlsError, acme::AcmeError},
};
use certs::Certificates;
use running::Tasks;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use vibectl_config::{AcmeChallenge, Config, TlsMode};

/// What to build: a configuration and how to serve it.
#[derive(Debug)]
pub struct EdgeApp {
    config: Config,
    plaintext: bool,
    watch_config: bool,
    secret_env: SecretEnv,
}

impl EdgeApp {
    /// An edge serving `config` over TLS, watching the file it came from
    /// (`config.source`) for `[limits]` changes, with the JWT secret
    /// sources of this process's environment.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            plaintext: false,
            watch_config: true,
            secret_env: SecretEnv::from_process(),
        }
    }

    /// Serves plaintext h2c instead of TLS (`serve-insecure`).
    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// Where the JWT secret may come from besides the configuration
    /// (default: this process's `VIBECTL_JWT_SECRET[_FILE]`).
    #[cfg(any(test, feature = "test-support"))]
    pub fn secret_env(mut self, env: SecretEnv) -> Self {
        self.secret_env = env;
        self
    }

    /// Whether to watch `config.source` for `[limits]` changes (default yes).
    #[cfg(any(test, feature = "test-support"))]
    pub fn watch_config(mut self, watch: bool) -> Self {
        self.watch_config = watch;
        self
    }

    /// Builds and starts the edge on `binds`; see the module doc. Stops
    /// when `shutdown` fires.
    pub async fn build(
        self,
        binds: Binds,
        shutdown: CancellationToken,
    ) -> Result<Running, EdgeError> {
        crate::tls::install_crypto_provider();
        let Self {
            config,
            plaintext,
            watch_config,
            secret_env,
        } = self;
        // One listener failing stops this edge (not the caller's token).
        let shutdown = shutdown.child_token();
        let acme = match (plaintext, config.tls.mode()) {
            (false, TlsMode::Acme(opts)) => Some(opts),
            _ => None,
        };
        if let Some(opts) = &acme
            && opts.challenge == AcmeChallenge::Http01
            && binds.http.is_none()
        {
            return Err(invalid(
                "--http-listen (tls.acme.http_listen)",
                "is required with the http-01 challenge",
            ));
        }
        let main_addr = binds.main.local_addr().map_err(EdgeError::Listener)?;
        let config = Arc::new(config);
        // The one Redis (`[limits] backend = "redis"`) every part shares.
        let redis = SharedRedis::from_limits(&config.limits)
            .map_err(|e| EdgeError::Limits(e.to_string()))?;
        let certs = if plaintext {
            tracing::warn!(listen = %main_addr, "serving plaintext h2c WITHOUT TLS: local development only");
            Certificates::none()
        } else {
            Certificates::load(&config, redis.as_ref(), &shutdown).await?
        };
        let secret = secret::jwt_secret(&config, &secret_env)?;
        let edge = Edge::new(config.clone(), certs.transport.clone(), secret, redis)?;
        if let Some(resolver) = &certs.resolver {
            edge.metrics().watch_certificate(resolver.clone());
        }
        let mut tasks = Tasks::new(shutdown.clone());
        if let Some(acme) = &certs.acme {
            let status = acme.status();
            edge.metrics().watch_acme(status.clone());
            // Before any listener runs, so `/ready` is never 200 too early.
            let pending = acme.waiting_reason(&status.borrow());
            if let Some(reason) = &pending {
                tracing::warn!("not ready: {reason}");
            }
            edge.readiness().set_certificate_pending(pending);
            tasks.background(running::track_readiness(
                edge.clone(),
                status,
                acme.waiting_reasons(),
                shutdown.clone(),
            ));
        }
        let config_file = watch_config.then(|| config.source.clone()).flatten();
        tasks.background(crate::maintain(edge.clone(), config_file, shutdown.clone()));
        let http_addr = match (binds.http, &certs.acme, &acme) {
            (Some(http), Some(running_acme), Some(opts)) => {
                let addr = http.local_addr().map_err(EdgeError::Listener)?;
                let http01 = Http01 {
                    answers: running_acme.key_authorizations(),
                    https_port: opts.https_port.unwrap_or(main_addr.port()),
                    default_host: opts.domains[0].to_ascii_lowercase(),
                };
                let table = edge.connections().clone();
                tasks.listener(serve_http01(http, http01, table, shutdown.clone()));
                Some(addr)
            }
            _ => None,
        };
        let admin_addr = binds.admin.local_addr().map_err(EdgeError::Listener)?;
        tasks.listener(crate::serve(binds.main, edge.clone(), shutdown.clone()));
        tasks.listener(crate::serve_admin(
            binds.admin,
            edge.clone(),
            shutdown.clone(),
        ));
        Ok(Running {
            #[cfg(any(test, feature = "test-support"))]
            edge,
            main_addr,
            admin_addr,
            http_addr,
            #[cfg(any(test, feature = "test-support"))]
            resolver: certs.resolver,
            #[cfg(any(test, feature = "test-support"))]
            self_signed: certs.self_signed,
            rotation: certs.rotation,
            acme: certs.acme,
            tasks,
        })
    }
}

fn invalid(key: &str, message: &str) -> EdgeError {
    TlsError::from(AcmeError::Invalid {
        key: key.to_owned(),
        message: message.to_owned(),
    })
    .into()
}
