//! The accept loop: every connection is served as h2c by hyper with the
//! tonic routes (the proxy service, `grpc.health.v1`, server reflection v1
//! and v1alpha). On shutdown: stop accepting, report NOT_SERVING, send
//! GOAWAY, let in-flight calls finish for at most `core.shutdown_grace`,
//! then cancel what is left (each call's drop guard logs it). With metrics
//! on, `/metrics` is served on its own listener beside it.

use crate::{
    conn_batch::{AfterStreams, StreamExec},
    error::CoreError,
    listener::{Accepted, CoreListener},
    metrics::{Metrics, serve_metrics},
    service::ProxyService,
    shared::Shared,
};
use futures::future::Either;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::{ServingStatus, server::HealthReporter};
use vibectl_config::Config;
use vibectl_proto::{vibectl_llm_proxy_server::VibectlLlmProxyServer, wire::Method};

/// Pause after an accept error (e.g. out of file descriptors) so the loop
/// does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves until `shutdown` is cancelled, then drains in-flight calls for at
/// most `config.core.shutdown_grace`. With `[metrics] enabled`, binds
/// `[metrics] core_listen` first and serves `/metrics` there too.
pub async fn serve(
    listener: CoreListener,
    config: Arc<Config>,
    shutdown: CancellationToken,
) -> Result<(), CoreError> {
    let metrics = if config.metrics.enabled {
        Some(bind_metrics(config.metrics.core_listen).await?)
    } else {
        None
    };
    serve_with_metrics(listener, metrics, config, shutdown).await
}

/// Binds the `/metrics` listener.
pub async fn bind_metrics(address: SocketAddr) -> Result<TcpListener, CoreError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| CoreError::BindMetrics {
            address: address.to_string(),
            source,
        })
}

/// Like [`serve`], with `/metrics` on `metrics_listener` when one is given
/// (and no metrics at all without one, whatever `[metrics] enabled` says).
pub async fn serve_with_metrics(
    listener: CoreListener,
    metrics_listener: Option<TcpListener>,
    config: Arc<Config>,
    shutdown: CancellationToken,
) -> Result<(), CoreError> {
    let address = listener.local_addr_string();
    if !listener.is_local_only() {
        tracing::warn!(
            listen = %address,
            "THE CORE IS LISTENING ON A NON-LOOPBACK ADDRESS: it speaks plaintext h2c \
             without authentication and holds the provider keys; anyone who can reach \
             {address} can use them. Bind 127.0.0.1 or a unix: socket instead."
        );
    }
    let metrics = match &metrics_listener {
        Some(_) => Metrics::new(
            config.models.iter().map(|m| m.id.clone()),
            config.metrics.max_subjects,
        )?,
        None => Metrics::disabled(),
    };
    let usage = crate::quota::start(&config, &metrics).await?;
    let shared = Arc::new(Shared::new(&config, metrics.clone(), usage)?);
    let (health, routes) = routes(shared.clone(), config.edge.max_message_bytes.get()).await?;
    // Its own token: /metrics stays up while the calls drain.
    let metrics_stop = CancellationToken::new();
    let metrics_task =
        metrics_listener.map(|l| tokio::spawn(serve_metrics(l, metrics, metrics_stop.clone())));
    tracing::info!(
        listen = %address,
        models = shared.registry.models().len(),
        default_model = shared.registry.default_model().unwrap_or("(none)"),
        "vibectl-core serving"
    );
    if shared.registry.offline() {
        tracing::warn!("{}", crate::registry::OFFLINE_NOTE);
    }
    let unix_path = listener.unix_path();
    let result = accept_loop(
        listener,
        routes,
        &shutdown,
        health,
        config.core.shutdown_grace,
    )
    .await;
    if let Some(path) = unix_path {
        let _ = std::fs::remove_file(path);
    }
    // Every call has ended (its row is queued): write the ledger's queue.
    shared.usage.close().await;
    metrics_stop.cancel();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    result
}

/// `max_message` is the edge's `max_message_bytes` (the core accepts what
/// the edge lets through; the same file configures both).
async fn routes(
    shared: Arc<Shared>,
    max_message: u32,
) -> Result<(HealthReporter, Dispatch), CoreError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<VibectlLlmProxyServer<ProxyService>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(vibectl_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| CoreError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| CoreError::Reflection(e.to_string()))?;
    let proxy = VibectlLlmProxyServer::new(ProxyService::new(shared))
        .max_decoding_message_size(usize::try_from(max_message).unwrap_or(usize::MAX));
    let routes = Routes::new(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(proxy.clone())
        .prepare();
    Ok((reporter, Dispatch { proxy, routes }))
}

/// The proxy's three RPCs go straight to its service; every other path
/// (health, reflection, an unknown one) through tonic's router. The
/// router's path match, body conversion and boxed route cost some 4,000
/// instructions per call (callgrind, issue 17), on every `Execute`.
#[derive(Clone)]
struct Dispatch {
    proxy: VibectlLlmProxyServer<ProxyService>,
    routes: Routes,
}

impl tower::Service<http::Request<Incoming>> for Dispatch {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Either<
        <VibectlLlmProxyServer<ProxyService> as tower::Service<http::Request<Incoming>>>::Future,
        <Routes as tower::Service<http::Request<Incoming>>>::Future,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both are always ready (tonic's generated server and its router).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Incoming>) -> Self::Future {
        if Method::from_path(request.uri().path()).is_some() {
            Either::Left(self.proxy.call(request))
        } else {
            Either::Right(self.routes.call(request))
        }
    }
}

/// Concurrent streams (and pending resets) allowed on one connection from the edge.
const MAX_STREAMS_PER_CONNECTION: u32 = 100_000;

/// The connection window offered to the edge. h2 (since 0.4.20) closes a
/// connection with GOAWAY `ENHANCE_YOUR_CALM` ("too_many_data_frames") once
/// the small DATA frames received and not yet read by the service exceed a
/// framing-overhead budget of half this window: with hyper's 1 MiB default, a burst of a few
/// thousand calls opened at once (each a small request message) killed every
/// stream on the edge's one connection, and only ~1,200 of 8,000 long streams
/// were held. 32 MiB allows some 80,000 calls' first messages to wait.
const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// The HTTP/2 server for one connection, its streams run on `exec`.
fn http2(exec: StreamExec) -> hyper::server::conn::http2::Builder<StreamExec> {
    let mut http2 = hyper::server::conn::http2::Builder::new(exec);
    // The core's only client is the edge (loopback), which multiplexes every
    // client's stream over one connection: hyper's per-connection defaults
    // (200 streams; GOAWAY after 20 resets of not-yet-accepted streams, a
    // rapid-reset guard meant for untrusted peers) would cap the whole edge
    // at 200 calls in flight and kill every stream when many clients cancel
    // at once. The edge enforces the per-client limits.
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_pending_accept_reset_streams(MAX_STREAMS_PER_CONNECTION as usize);
    http2
}

async fn accept_loop(
    listener: CoreListener,
    routes: Dispatch,
    shutdown: &CancellationToken,
    health: HealthReporter,
    grace: Duration,
) -> Result<(), CoreError> {
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let service = TowerToHyperService::new(routes.clone());
        let exec = StreamExec::default();
        match accepted {
            Ok(Accepted::Tcp(stream, peer)) => {
                let conn = http2(exec.clone()).serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                connections.spawn(async move {
                    if let Err(e) = AfterStreams::new(pin!(conn), &exec).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Ok(Accepted::Unix(stream)) => {
                let conn = http2(exec.clone()).serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                connections.spawn(async move {
                    if let Err(e) = AfterStreams::new(pin!(conn), &exec).await {
                        tracing::debug!(error = %e, "unix connection ended with an error");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    drop(listener);
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_not_serving::<VibectlLlmProxyServer<ProxyService>>()
        .await;
    let in_flight = graceful.count();
    tracing::info!(
        connections = in_flight,
        ?grace,
        "shutting down: draining in-flight calls"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "grace period elapsed; cancelling the calls still running"
        );
    }
    connections.shutdown().await;
    tracing::info!("vibectl-core stopped");
    Ok(())
}
