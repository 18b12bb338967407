//! A fault-injecting HTTPS proxy in front of [`Pebble`]'s ACME API, on
//! 127.0.0.1:0, serving Pebble's own API certificate. It forwards every
//! request with its `Host` kept, so Pebble's directory and `Location`s
//! name the proxy and the client never bypasses it. What it adds:
//!
//! - `badNonce`: the first `bad_nonces` POSTs of each step (new-account,
//!   new-order, authorization, challenge, finalize, order poll,
//!   certificate) are answered `400 urn:ietf:params:acme:error:badNonce`
//!   without reaching Pebble; [`AcmeProxy::injected`] counts them by step.
//! - ARI (RFC 9773): with a [`RenewalInfo`], the directory gains
//!   `renewalInfo` and `GET /renewal-info/<id>` answers, for the first
//!   certificate asked about, the window and `Retry-After` set by
//!   [`AcmeProxy::set_renewal_info`] (for any later certificate: a window
//!   30–60 days ahead, `Retry-After` 1 h);
//!   [`AcmeProxy::renewal_info_requests`] counts the requests.
//! - `rateLimited`: after [`AcmeProxy::rate_limit_new_orders`], the next
//!   new-orders are answered `429 urn:ietf:params:acme:error:rateLimited`
//!   with a `Retry-After` without reaching Pebble;
//!   [`AcmeProxy::new_orders`] says when each new-order arrived and
//!   whether it was refused.

use crate::pebble::Pebble;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};
use tokio::net::TcpListener;

/// What `GET /renewal-info/<id>` answers.
#[derive(Debug, Clone)]
pub struct RenewalInfo {
    /// `suggestedWindow.start`, RFC 3339.
    pub start: String,
    /// `suggestedWindow.end`, RFC 3339.
    pub end: String,
    /// `Retry-After`, seconds.
    pub retry_after_secs: u64,
}

#[derive(Default)]
struct State {
    injected: BTreeMap<&'static str, u32>,
    renewal_info_requests: u32,
    renewal_info: Option<RenewalInfo>,
    first_certificate: Option<String>,
    /// New-orders still to refuse, and the `Retry-After` (seconds) to name.
    rate_limited: (u32, u64),
    new_orders: Vec<(std::time::SystemTime, bool)>,
    /// The `replaces` field of each new-order that created an order.
    replaces: Vec<Option<String>>,
}

/// The running proxy (stops when dropped).
pub struct AcmeProxy {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AcmeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The step of an ACME POST, by Pebble's paths.
fn step(path: &str) -> Option<&'static str> {
    [
        ("/sign-me-up", "new-account"),
        ("/order-plz", "new-order"),
        ("/authZ/", "authorization"),
        ("/chalZ/", "challenge"),
        ("/finalize-order/", "finalize"),
        ("/my-order/", "order poll"),
        ("/certZ/", "certificate"),
    ]
    .into_iter()
    .find(|(prefix, _)| path.starts_with(prefix))
    .map(|(_, step)| step)
}

impl AcmeProxy {
    /// Starts the proxy in front of `pebble`.
    pub async fn start(pebble: &Pebble, bad_nonces: u32, ari: Option<RenewalInfo>) -> Self {
        let (cert, key) = pebble.api_certificate_files();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
            .expect("cert")
            .map(|c| c.expect("pem"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(&key).expect("key");
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        let upstream = pebble.api_address();
        let client = pebble.api_client();
        let ari_on = ari.is_some();
        let state = Arc::new(Mutex::new(State {
            renewal_info: ari,
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let client = client.clone();
                let state = shared.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |request: Request<Incoming>| {
                        let client = client.clone();
                        let state = state.clone();
                        async move {
                            Ok::<_, hyper::Error>(
                                handle(request, upstream, &client, &state, bad_nonces, ari_on)
                                    .await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            address,
            state,
            task,
        }
    }

    /// `https://127.0.0.1:PORT/dir` through the proxy.
    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.address)
    }

    /// `badNonce` answers injected, by step.
    pub fn injected(&self) -> BTreeMap<&'static str, u32> {
        self.state.lock().expect("state").injected.clone()
    }

    /// What `GET /renewal-info/<first certificate>` answers from now on.
    pub fn set_renewal_info(&self, info: RenewalInfo) {
        self.state.lock().expect("state").renewal_info = Some(info);
    }

    /// Answers the next `count` new-orders `rateLimited` with
    /// `Retry-After: retry_after_secs`.
    pub fn rate_limit_new_orders(&self, count: u32, retry_after_secs: u64) {
        self.state.lock().expect("state").rate_limited = (count, retry_after_secs);
    }

    /// Each new-order that arrived: when, and whether it was refused
    /// `rateLimited`.
    pub fn new_orders(&self) -> Vec<(std::time::SystemTime, bool)> {
        self.state.lock().expect("state").new_orders.clone()
    }

    /// The `replaces` field (RFC 9773 §5) of each new-order that created
    /// an order at Pebble, in order.
    pub fn replaces(&self) -> Vec<Option<String>> {
        self.state.lock().expect("state").replaces.clone()
    }

    /// The certificate identifier of the first `GET /renewal-info/<id>`.
    pub fn first_renewal_info_id(&self) -> Option<String> {
        self.state.lock().expect("state").first_certificate.clone()
    }

    /// `GET /renewal-info/…` requests answered.
    pub fn renewal_info_requests(&self) -> u32 {
        self.state.lock().expect("state").renewal_info_requests
    }
}

type Client = hyper_util::client::legacy::Client<crate::pebble::PebbleConnector, Full<Bytes>>;

fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// The `replaces` field of a JWS-signed new-order body.
fn replaces_field(jws: &[u8]) -> Option<String> {
    use base64::Engine;
    let jws: serde_json::Value = serde_json::from_slice(jws).ok()?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jws["payload"].as_str()?)
        .ok()?;
    let payload: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    payload["replaces"].as_str().map(str::to_owned)
}

/// An RFC 7807 problem document of ACME error `kind`.
fn problem(status: StatusCode, kind: &str, detail: &str) -> Response<Full<Bytes>> {
    let mut response = answer(
        status,
        serde_json::json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": detail,
            "status": status.as_u16()
        })
        .to_string(),
    );
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/problem+json".parse().expect("value"),
    );
    response
}

async fn handle(
    request: Request<Incoming>,
    upstream: SocketAddr,
    client: &Client,
    state: &Mutex<State>,
    bad_nonces: u32,
    ari: bool,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let (true, Some(id)) = (ari, path.strip_prefix("/renewal-info/")) {
        let id = id.trim_start_matches('/').to_owned();
        let info = {
            let mut state = state.lock().expect("state");
            state.renewal_info_requests += 1;
            let first = state.first_certificate.get_or_insert_with(|| id.clone());
            match (*first == id, state.renewal_info.clone()) {
                (true, Some(info)) => info,
                _ => RenewalInfo {
                    start: rfc3339_in(30 * 86_400),
                    end: rfc3339_in(60 * 86_400),
                    retry_after_secs: 3600,
                },
            }
        };
        let body = serde_json::json!({
            "suggestedWindow": { "start": info.start, "end": info.end }
        });
        let mut response = answer(StatusCode::OK, body.to_string());
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            info.retry_after_secs.to_string().parse().expect("value"),
        );
        return response;
    }
    if let (&http::Method::POST, Some("new-order")) = (request.method(), step(&path)) {
        let mut state = state.lock().expect("state");
        let (left, retry_after) = state.rate_limited;
        state
            .new_orders
            .push((std::time::SystemTime::now(), left > 0));
        if left > 0 {
            state.rate_limited.0 -= 1;
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "rateLimited",
                "too many new orders recently (injected by the test)",
            );
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                retry_after.to_string().parse().expect("value"),
            );
            return response;
        }
    }
    if let (&http::Method::POST, Some(step)) = (request.method(), step(&path)) {
        let mut state = state.lock().expect("state");
        let count = state.injected.entry(step).or_default();
        if *count < bad_nonces {
            *count += 1;
            return problem(
                StatusCode::BAD_REQUEST,
                "badNonce",
                "JWS has an invalid anti-replay nonce (injected by the test)",
            );
        }
    }
    let new_order = request.method() == http::Method::POST && step(&path) == Some("new-order");
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    // ARI: the `replaces` of a new-order (Pebble 2.4 ignores it; a CA with
    // ARI echoes it in the order, RFC 9773 §5, which instant-acme checks).
    let replaces = new_order.then(|| replaces_field(&body)).flatten();
    let target = format!(
        "https://{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    parts.uri = target.parse().expect("uri");
    parts.version = http::Version::HTTP_11;
    parts
        .headers
        .insert(http::header::HOST, host.parse().expect("host"));
    let response = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .expect("Pebble answered the proxy");
    let (parts, body) = response.into_parts();
    let mut body = body.collect().await.expect("body").to_bytes();
    if let (true, "/dir") = (ari, path.as_str()) {
        let mut directory: serde_json::Value = serde_json::from_slice(&body).expect("json");
        directory["renewalInfo"] = format!("https://{host}/renewal-info").into();
        body = Bytes::from(directory.to_string());
    }
    if new_order && parts.status == StatusCode::CREATED {
        state.lock().expect("state").replaces.push(replaces.clone());
    }
    if let (Some(replaces), StatusCode::CREATED) = (&replaces, parts.status) {
        let mut order: serde_json::Value = serde_json::from_slice(&body).expect("json");
        order["replaces"] = replaces.clone().into();
        body = Bytes::from(order.to_string());
    }
    let mut response = Response::from_parts(parts, Full::new(body.clone()));
    response.headers_mut().remove(http::header::CONTENT_LENGTH);
    response
        .headers_mut()
        .remove(http::header::TRANSFER_ENCODING);
    response
}

/// RFC 3339 (UTC) for `seconds` from now (negative: ago).
pub fn rfc3339_in(seconds: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    vibectl_edge::tls::files::unix_to_rfc3339(now + seconds)
}
