//! A stand-in core: any implementation of the generated
//! `VibectlLlmProxy` trait served with tonic on 127.0.0.1:0, for tests that
//! need to see exactly what the edge forwards (headers, deadlines), and
//! [`StubbornCore`], whose streams never end, to see what the edge cancels.

use crate::harness::WAIT;
use futures::{Stream, StreamExt, stream};
use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
};
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, metadata::MetadataMap};
use vibectl_proto::{
    ExecuteRequest, ExecuteResponse, GetServerInfoRequest, GetServerInfoResponse, StreamChunk,
    llm_proxy::vibectl_llm_proxy_server::{VibectlLlmProxy, VibectlLlmProxyServer},
    stream_chunk::ChunkType,
};

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

/// A stand-in core served on 127.0.0.1:0 until [`Served::stop`].
pub struct Served {
    /// Where it listens (for `external_core`).
    pub addr: SocketAddr,
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl Served {
    /// Serves `service` (see [`serve`]).
    pub async fn start<S: VibectlLlmProxy>(service: S) -> Self {
        let (addr, token, task) = serve(service).await;
        Self { addr, token, task }
    }

    /// Stops it and waits, bounded, until it has exited cleanly.
    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("fake core stopped in time")
            .expect("fake core exited cleanly");
    }
}

/// A core that records the metadata of every call; its `StreamExecute`
/// sends one chunk and then never ends (it ignores deadlines), and counts
/// the streams dropped (cancelled by the edge, or the client) in `dropped`.
#[derive(Clone, Default)]
pub struct StubbornCore {
    /// The metadata of every call, in order.
    pub seen: Arc<Mutex<Vec<MetadataMap>>>,
    /// How many `StreamExecute` streams were dropped.
    pub dropped: Arc<watch::Sender<usize>>,
}

struct OnDrop(Arc<watch::Sender<usize>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n += 1);
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<StreamChunk, Status>> + Send>>;

#[tonic::async_trait]
impl VibectlLlmProxy for StubbornCore {
    type StreamExecuteStream = ChunkStream;

    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        self.record(&request);
        Ok(Response::new(ExecuteResponse::default()))
    }

    async fn stream_execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        self.record(&request);
        let guard = OnDrop(self.dropped.clone());
        let first = StreamChunk {
            request_id: "r".into(),
            chunk_type: Some(ChunkType::TextChunk("first".into())),
        };
        let chunks = stream::iter([Ok(first)])
            .chain(stream::pending())
            .map(move |chunk| {
                let _held = &guard;
                chunk
            });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn get_server_info(
        &self,
        request: Request<GetServerInfoRequest>,
    ) -> Result<Response<GetServerInfoResponse>, Status> {
        self.record(&request);
        Ok(Response::new(GetServerInfoResponse::default()))
    }
}

impl StubbornCore {
    /// Serves it (see [`serve`]).
    pub async fn start(&self) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
        serve(self.clone()).await
    }

    /// Serves it until [`Served::stop`].
    pub async fn served(&self) -> Served {
        Served::start(self.clone()).await
    }

    fn record<T>(&self, request: &Request<T>) {
        self.seen
            .lock()
            .expect("lock")
            .push(request.metadata().clone());
    }

    /// The metadata of the last call.
    pub fn last(&self) -> MetadataMap {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a call")
    }

    /// How many calls reached it.
    pub fn calls(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }
}
