//! A running edge: what it serves, where, and its tasks.

#[cfg(any(test, feature = "test-support"))]
use crate::tls::{CertResolver, RotationStatus, SelfSigned};
use crate::{
    Edge, EdgeError,
    tls::{
        Rotation,
        acme::{Acme, AcmeStatus},
    },
};
use std::{future::Future, net::SocketAddr};
#[cfg(any(test, feature = "test-support"))]
use std::{path::Path, sync::Arc};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// An edge started by [`super::EdgeApp::build`].
pub struct Running {
    #[cfg(any(test, feature = "test-support"))]
    pub(super) edge: Edge,
    pub(super) main_addr: SocketAddr,
    pub(super) admin_addr: SocketAddr,
    pub(super) http_addr: Option<SocketAddr>,
    #[cfg(any(test, feature = "test-support"))]
    pub(super) resolver: Option<Arc<CertResolver>>,
    #[cfg(any(test, feature = "test-support"))]
    pub(super) self_signed: Option<SelfSigned>,
    pub(super) rotation: Option<Rotation>,
    pub(super) acme: Option<Acme>,
    pub(super) tasks: Tasks,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("main_addr", &self.main_addr)
            .field("admin_addr", &self.admin_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The running edge (configuration, limiter, metrics, readiness).
    #[cfg(any(test, feature = "test-support"))]
    pub fn edge(&self) -> &Edge {
        &self.edge
    }

    /// Where the main (TLS or h2c) listener is.
    #[cfg(any(test, feature = "test-support"))]
    pub fn main_addr(&self) -> SocketAddr {
        self.main_addr
    }

    /// Where `/live`, `/ready` and `/metrics` are.
    #[cfg(any(test, feature = "test-support"))]
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the plain HTTP listener is (ACME mode with one).
    #[cfg(any(test, feature = "test-support"))]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// What the TLS listener serves (`None` over h2c).
    #[cfg(any(test, feature = "test-support"))]
    pub fn resolver(&self) -> Option<&Arc<CertResolver>> {
        self.resolver.as_ref()
    }

    /// The generated CA and certificate, in self-signed mode.
    #[cfg(any(test, feature = "test-support"))]
    pub fn self_signed(&self) -> Option<&SelfSigned> {
        self.self_signed.as_ref()
    }

    /// What the certificate rotation did (files and private-CA modes).
    #[cfg(any(test, feature = "test-support"))]
    pub fn rotation_status(&self) -> Option<watch::Receiver<RotationStatus>> {
        self.rotation.as_ref().map(Rotation::status)
    }

    /// The ACME status (served certificate, orders, last error), in ACME mode.
    #[cfg(any(test, feature = "test-support"))]
    pub fn acme_status(&self) -> Option<watch::Receiver<AcmeStatus>> {
        self.acme.as_ref().map(Acme::status)
    }

    /// The ACME cache directory in use, in ACME mode.
    #[cfg(any(test, feature = "test-support"))]
    pub fn acme_cache_dir(&self) -> Option<&Path> {
        self.acme.as_ref().map(Acme::cache_dir)
    }

    /// Waits until every listener and task has ended (after the shutdown
    /// token fired, or after one listener failed, which stops the others);
    /// the first error, if any.
    pub async fn wait(self) -> Result<(), EdgeError> {
        let result = self.tasks.join().await;
        if let Some(rotation) = self.rotation {
            rotation.stopped().await;
        }
        if let Some(acme) = self.acme {
            acme.stopped().await;
        }
        result
    }
}

/// The tasks of one edge: listeners (one failing stops all) and
/// background work (ends at shutdown).
pub(super) struct Tasks {
    shutdown: CancellationToken,
    listeners: Vec<JoinHandle<Result<(), EdgeError>>>,
    background: Vec<JoinHandle<Result<(), EdgeError>>>,
}

impl Tasks {
    pub(super) fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            listeners: Vec::new(),
            background: Vec::new(),
        }
    }

    /// Spawns a listener; if it fails, every task is told to stop.
    pub(super) fn listener(
        &mut self,
        task: impl Future<Output = Result<(), EdgeError>> + Send + 'static,
    ) {
        let shutdown = self.shutdown.clone();
        self.listeners.push(tokio::spawn(async move {
            let result = task.await;
            if result.is_err() {
                shutdown.cancel();
            }
            result
        }));
    }

    /// Spawns background work that ends when the shutdown token fires.
    pub(super) fn background(
        &mut self,
        task: impl Future<Output = Result<(), EdgeError>> + Send + 'static,
    ) {
        self.background.push(tokio::spawn(task));
    }

    /// Waits for the listeners, then (the shutdown token has fired, or is
    /// fired now) for the background work; the first error.
    async fn join(self) -> Result<(), EdgeError> {
        let mut first_error = None;
        for task in self.listeners {
            if let Err(error) = joined(task).await {
                first_error.get_or_insert(error);
            }
        }
        // Every listener ended: stop what serves them.
        self.shutdown.cancel();
        for task in self.background {
            if let Err(error) = joined(task).await {
                tracing::warn!(%error, "an edge background task failed");
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

async fn joined(task: JoinHandle<Result<(), EdgeError>>) -> Result<(), EdgeError> {
    task.await
        .map_err(|e| EdgeError::Listener(std::io::Error::other(e.to_string())))
        .and_then(|r| r)
}

/// Mirrors the ACME status into `/ready` until `shutdown`.
pub(super) async fn track_readiness(
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
