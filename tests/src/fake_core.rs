//! A stand-in core: any implementation of the generated
//! `VibectlLlmProxy` trait served with tonic on 127.0.0.1:0, for tests that
//! need to see exactly what the edge forwards (headers, deadlines).

use std::net::SocketAddr;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vibectl_proto::llm_proxy::vibectl_llm_proxy_server::{VibectlLlmProxy, VibectlLlmProxyServer};

/// Serves `service` on 127.0.0.1:0 (bound before spawning); cancel the
/// token to stop it, then await the task.
pub async fn serve<S: VibectlLlmProxy>(
    service: S,
) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let token = CancellationToken::new();
    let server = tonic::transport::Server::builder()
        .add_service(VibectlLlmProxyServer::new(service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            token.clone().cancelled_owned(),
        );
    let task = tokio::spawn(async move { server.await.expect("fake core") });
    (addr, token, task)
}
