//! [`Edge`]: everything one running edge shares — configuration, transport,
//! token verifier, the pooled client to the core, readiness, the limiter
//! (limits in force and their state) and the metrics — behind one
//! `Arc`, cloned into every listener and connection.

use crate::{
    EdgeError,
    auth::{TokenVerifier, budget::FailureBudget},
    conn::{ConnTable, Limits, fd},
    http::CoreClient,
    limits::Limiter,
    metrics::Metrics,
    shared_redis::SharedRedis,
    tls::HandshakeStats,
};
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use vibectl_config::{Config, Secret};

/// How the main listener speaks.
#[derive(Debug, Clone)]
pub enum Transport {
    /// HTTP/2 over TLS with this configuration (build it with
    /// [`crate::tls::sources`] or [`crate::tls::server_config`]); HSTS on.
    Tls(Arc<rustls::ServerConfig>),
    /// Plaintext h2c (`serve-insecure`), for local use only; no HSTS.
    Insecure,
}

/// Whether the main listener is accepting connections, and whether the
/// certificate it should serve is there yet (for `/ready`).
#[derive(Debug, Default)]
pub struct Readiness {
    serving: AtomicBool,
    /// Why the wanted certificate is not served yet (ACME pending), if so.
    certificate_pending: std::sync::Mutex<Option<String>>,
}

impl Readiness {
    /// True while the main listener accepts connections.
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    pub(crate) fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
    }

    /// Why the certificate the edge should serve is not served yet (e.g.
    /// "waiting for ACME certificate … (last error: …)"), else `None`.
    pub fn certificate_pending(&self) -> Option<String> {
        self.certificate_pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets (or, with `None`, clears) why the certificate is not ready.
    pub fn set_certificate_pending(&self, reason: Option<String>) {
        *self
            .certificate_pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason;
    }
}

/// One edge: build it once, then pass clones to [`crate::serve`] and
/// [`crate::serve_admin`].
#[derive(Debug, Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    transport: Transport,
    verifier: Option<Arc<TokenVerifier>>,
    core: CoreClient,
    readiness: Readiness,
    handshake_stats: Arc<HandshakeStats>,
    limiter: Arc<Limiter>,
    metrics: Metrics,
    connections: Arc<ConnTable>,
    failure_budget: Arc<FailureBudget>,
    redis: Option<SharedRedis>,
}

impl Edge {
    /// Builds an edge. `jwt_secret` (the legacy HS256 secret) is required
    /// unless `edge.require_auth = false` (then it is ignored and a warning
    /// logged) or `jwt.default_kid` names a key of the key set. With auth on,
    /// the verifier's key set and revocation files are watched from now on.
    /// `redis` ([`SharedRedis::from_limits`]) holds limit state and token
    /// revocations.
    pub fn new(
        config: Arc<Config>,
        transport: Transport,
        jwt_secret: Option<Secret>,
        redis: Option<SharedRedis>,
    ) -> Result<Self, EdgeError> {
        crate::tls::install_crypto_provider();
        let verifier = if config.edge.require_auth {
            if jwt_secret.is_none() && config.jwt.default_kid.is_none() {
                return Err(EdgeError::JwtSecretMissing);
            }
            let verifier = TokenVerifier::from_config(&config, jwt_secret.as_ref(), redis.clone())?;
            verifier.spawn_background();
            Some(Arc::new(verifier))
        } else {
            tracing::warn!(
                "AUTHENTICATION IS DISABLED (edge.require_auth = false): anyone who can reach \
                 this edge can use its LLM credentials"
            );
            None
        };
        if config.jwt.max_lifetime().is_none() {
            tracing::warn!(
                "jwt.max_lifetime = 0: tokens of any lifetime are accepted (a leaked token \
                 signed with a far-future exp works until its key is retired)"
            );
        }
        let core = CoreClient::new(&config.edge)?;
        let connections = ConnTable::new(
            Limits::from_config(&config.connections),
            fd::connection_cap(fd::nofile()),
        );
        let failure_budget = Arc::new(
            FailureBudget::new(config.jwt.failure_budget, config.jwt.failure_window)
                .with_delay(crate::auth::budget::REFUSAL_DELAY),
        );
        let metrics = Metrics::from_config(&config.metrics)?;
        // `/metrics` reports the main listener's failed handshakes.
        let handshake_stats = Arc::<HandshakeStats>::default();
        metrics.watch_handshakes(handshake_stats.clone());
        metrics.watch_connections(connections.stats().clone(), failure_budget.clone());
        let limiter = Limiter::new(&config.limits, redis.clone(), metrics.clone())
            .map_err(|e| EdgeError::Limits(e.0))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                transport,
                verifier,
                core,
                readiness: Readiness::default(),
                handshake_stats,
                limiter: Arc::new(limiter),
                metrics,
                connections,
                failure_budget,
                redis,
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }

    /// TLS or plaintext.
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// The token verifier, `None` when auth is disabled.
    pub fn verifier(&self) -> Option<Arc<TokenVerifier>> {
        self.inner.verifier.clone()
    }

    /// The pooled client to the core.
    pub fn core(&self) -> &CoreClient {
        &self.inner.core
    }

    /// Whether the main listener is serving.
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    /// The limits in force (hot-reloaded) and their state.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.inner.limiter
    }

    /// The Prometheus metrics (a no-op when `[metrics]` is off).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Every client connection of every listener (TLS or h2c, admin,
    /// plain HTTP), and their caps.
    pub fn connections(&self) -> &Arc<ConnTable> {
        &self.inner.connections
    }

    /// The per-address budget of failed authentications.
    pub fn failure_budget(&self) -> &Arc<FailureBudget> {
        &self.inner.failure_budget
    }

    /// The one Redis of this edge (`[limits] backend = "redis"`), shared by
    /// limits, token revocations and whatever else the replicas share.
    pub fn redis(&self) -> Option<&SharedRedis> {
        self.inner.redis.as_ref()
    }

    /// Failed TLS handshakes by reason, counted by the accept loop.
    pub fn handshake_stats(&self) -> &Arc<HandshakeStats> {
        &self.inner.handshake_stats
    }
}
