//! The listening sockets of one edge, bound before anything else happens:
//! a port that is taken fails the start before any file (certificates, the
//! JWT secret, the ACME cache) is written.

use crate::EdgeError;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use vibectl_config::{Config, TlsMode};

/// The listeners an edge serves on.
#[derive(Debug)]
pub struct Binds {
    /// TLS (or h2c): `edge.listen`.
    pub main: TcpListener,
    /// `/live`, `/ready`, `/metrics`: `edge.admin_listen`.
    pub admin: TcpListener,
    /// Plain HTTP (ACME HTTP-01 answers, redirects to https):
    /// `tls.acme.http_listen`, if configured (ACME mode only).
    pub http: Option<TcpListener>,
}

impl Binds {
    /// Binds the addresses `config` names.
    pub async fn from_config(config: &Config) -> Result<Self, EdgeError> {
        let http_listen = match config.tls.mode() {
            TlsMode::Acme(acme) => acme.http_listen,
            _ => None,
        };
        let http = match http_listen {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        Ok(Self {
            main: bind(config.edge.listen).await?,
            admin: bind(config.edge.admin_listen).await?,
            http,
        })
    }

    /// Every listener on `127.0.0.1:0` (a free port each), the plain HTTP
    /// one only if `http`: for tests and embedding.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn loopback(http: bool) -> Result<Self, EdgeError> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(Self {
            main: bind(any).await?,
            admin: bind(any).await?,
            http: if http { Some(bind(any).await?) } else { None },
        })
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, EdgeError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| EdgeError::Bind { address, source })
}
