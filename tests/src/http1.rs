//! Plain HTTP/1.1 requests from tests (admin endpoints, ACME's HTTP-01
//! listener, Pebble's management API over TLS), each bounded by its
//! caller or by [`WAIT`].

use crate::WAIT;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// `GET http://addr/path` over HTTP/1.1, bounded by [`WAIT`].
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect admin");
        let (status, _, body) = http1_request(tcp, "GET", &addr.to_string(), path).await;
        (status, body)
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("admin answered in time")
}

/// `method path` (with `host`) over HTTP/1.1 on the open connection
/// `io` (TCP or TLS): the status, the headers and the body. Unbounded:
/// callers bound it.
pub async fn http1_request<T>(
    io: T,
    method: &str,
    host: &str,
    path: &str,
) -> (u16, http::HeaderMap, String)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}
