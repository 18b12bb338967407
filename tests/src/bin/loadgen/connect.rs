//! Connections to the target: h2c or TLS (rustls, ALPN h2) with one shared
//! client config, so TLS sessions can be resumed across connections.

use crate::args::Args;
use anyhow::Context;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    endpoint: Endpoint,
    addr: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Target {
    /// Builds the target from the arguments (reads the CA file once).
    pub fn from_args(args: &Args) -> anyhow::Result<Self> {
        let uri: Uri = args.target.parse().context("--target is not a URL")?;
        let host = uri.host().context("--target has no host")?.to_owned();
        let tls = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let endpoint = Endpoint::from_shared(format!("http://{host}:{port}"))?
            .timeout(args.timeout)
            .tcp_nodelay(true);
        let tls = if tls {
            let mut roots = rustls::RootCertStore::empty();
            let ca = args
                .ca_file
                .as_ref()
                .context("TLS targets need --ca-file")?;
            for cert in CertificateDer::pem_file_iter(ca).context("reading --ca-file")? {
                roots.add(cert?)?;
            }
            let mut cfg = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            cfg.alpn_protocols = vec![b"h2".to_vec()];
            if args.no_resumption {
                cfg.resumption = rustls::client::Resumption::disabled();
            }
            let name = args.server_name.clone().unwrap_or_else(|| host.clone());
            let name = ServerName::try_from(name).context("--server-name")?;
            Some((TlsConnector::from(Arc::new(cfg)), name))
        } else {
            None
        };
        Ok(Self {
            endpoint,
            addr: format!("{host}:{port}"),
            tls,
        })
    }

    /// Opens one new HTTP/2 connection.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        let addr = self.addr.clone();
        let tls = self.tls.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let addr = addr.clone();
            let tls = tls.clone();
            async move {
                let tcp = TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let io: Box<dyn Io> = match tls {
                    Some((connector, name)) => Box::new(connector.connect(name, tcp).await?),
                    None => Box::new(tcp),
                };
                Ok::<_, std::io::Error>(TokioIo::new(io))
            }
        });
        Ok(self.endpoint.connect_with_connector(connector).await?)
    }
}

/// A byte stream: TCP or TLS over TCP.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}
