//! The request path against misuse: non-gRPC requests get 405 / 415 before
//! any auth work (no audit line), reflection is not forwarded, a storm of
//! bad tokens from one address (a NAT) never locks out a valid token from
//! the same address, and a hung core gives a clear DEADLINE_EXCEEDED to a
//! call without a deadline; so does a core stream that never ends, at
//! `edge.max_call_duration`, and the core's call is cancelled.

use crate::{
    hardening_common::{EdgeClients, attacker_runtime, victim},
    support::sample,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::{sync::Arc, time::Duration};
use vibectl_proto::llm_proxy::GetServerInfoRequest;
use vibectl_tests::{
    harness::{Stack, authed, claims, mint},
    logs::Captured,
};

/// `(HTTP status, grpc-status)` of one raw HTTP/2 request to an h2c edge.
async fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    token: Option<&str>,
) -> (u16, Option<String>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    // An empty GetServerInfoRequest as one gRPC message.
    let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        send.send_request(request.body(body).expect("request")),
    )
    .await
    .expect("answered in time")
    .expect("response");
    let status = response.status().as_u16();
    let in_headers = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    let collected = response.into_body().collect().await.expect("body");
    let in_trailers = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    (status, in_headers.or(in_trailers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_grpc_requests_are_refused_before_auth_and_reflection_is_not_forwarded() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("vibectl_edge::audit=info")
        .with_writer(move || writer.clone())
        .try_init();
    let stack = Stack::builder().insecure().start().await;
    let token = stack.token("policy");
    let info = "/vibectl.llm_proxy.VibectlLLMProxy/GetServerInfo";
    for ct in [
        Some("application/json"),
        Some("text/plain"),
        None,
        Some("application/grpc-web"),
    ] {
        let (status, grpc) = raw(stack.edge_addr, "POST", info, ct, None).await;
        assert_eq!(status, 415, "content-type {ct:?}");
        assert_eq!(grpc.as_deref(), Some("12"));
    }
    for method in ["GET", "PUT"] {
        let (status, _) = raw(
            stack.edge_addr,
            method,
            info,
            Some("application/grpc"),
            None,
        )
        .await;
        assert_eq!(status, 405, "{method}");
    }
    let audit = logs.text();
    assert!(
        !audit.contains("authentication"),
        "no auth work for refused requests:\n{audit}"
    );
    // Reflection, even with a valid token: UNIMPLEMENTED, never the core's.
    for path in [
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/vibectl.llm_proxy.VibectlLLMProxy/Unknown",
    ] {
        let (status, grpc) = raw(
            stack.edge_addr,
            "POST",
            path,
            Some("application/grpc"),
            Some(&token),
        )
        .await;
        assert_eq!((status, grpc.as_deref()), (200, Some("12")), "{path}");
    }
    // A real gRPC call passes (and is audited).
    let (status, grpc) = raw(
        stack.edge_addr,
        "POST",
        info,
        Some("application/grpc+proto"),
        Some(&token),
    )
    .await;
    assert_eq!((status, grpc.as_deref()), (200, Some("0")));
    let audit = logs.text();
    assert!(audit.contains("authentication"), "{audit}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_bad_tokens_from_one_address_never_refuses_a_valid_token() {
    let stack = Stack::builder()
        .config(
            "[metrics]\nenabled = true\ncore_listen = \"127.0.0.1:0\"\n[jwt]\nfailure_budget = 3\n",
        )
        .start()
        .await;
    let ca_pem = std::fs::read_to_string(stack.ca_bundle.as_ref().expect("TLS")).expect("ca");
    let token = stack.token("alice");
    let clients = EdgeClients::tls(stack.edge_addr, &ca_pem);
    let connect = async || clients.connect().await;
    let baseline = victim(&connect, &token, Duration::from_secs(1), 10).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Four clients behind the same address (127.0.0.1) with bad tokens, on
    // the attacker's own runtime.
    let attack = attacker_runtime();
    let mut storm = Vec::new();
    for i in 0..4 {
        let (clients, stop) = (clients.clone(), stop.clone());
        let bad = match i {
            0 => "garbage".to_owned(),
            1 => mint("not-the-secret", &claims("mallory", 3600)),
            2 => mint(
                vibectl_tests::harness::JWT_SECRET,
                &claims("expired", -3600),
            ),
            _ => "a.b.c".to_owned(),
        };
        storm.push(attack.spawn(async move {
            let mut client = clients.connect().await.expect("storm client");
            let mut refused = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .get_server_info(authed(GetServerInfoRequest {}, &bad))
                    .await;
                assert_eq!(
                    r.expect_err("bad token").code(),
                    tonic::Code::Unauthenticated
                );
                refused += 1;
            }
            refused
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = victim(&connect, &token, Duration::from_secs(3), 10).await;
    report.print("bad-token storm from the victim's address (NAT)", &baseline);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut bad_calls = 0;
    for s in storm {
        bad_calls += s.await.expect("storm task");
    }
    attack.shutdown_background();
    eprintln!("edge: bad-token storm (NAT): {bad_calls} bad calls beside the victim's");
    // Past the budget (3) each bad call is answered after the tarpit's 1 s:
    // four clients retrying in a loop make a few calls a second, not
    // thousands (2,000 in 3 s without it).
    assert!(
        (8..=60).contains(&bad_calls),
        "the storm made {bad_calls} calls"
    );
    assert_eq!(
        report.ok, report.calls,
        "every valid call is served during the storm: {:?}",
        report.errors
    );
    let text = stack.admin_get("/metrics").await.1;
    let cheap = sample(&text, "vibectl_auth_budget_refusals_total", &[]).unwrap_or(0.0);
    assert!(
        cheap >= 4.0,
        "bad tokens past the budget are refused cheaply: {cheap}"
    );
    stack.shutdown().await;
}

/// A core that accepts calls and never answers.
async fn hung_core() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    std::future::pending::<
                        Result<http::Response<Full<Bytes>>, std::convert::Infallible>,
                    >()
                    .await
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_core_gives_a_call_without_deadline_a_clear_deadline_exceeded() {
    let core = hung_core().await;
    let stack = Stack::builder()
        .config("[edge]\ncore_response_timeout = \"1s\"\n")
        .external_core(&core.to_string())
        .start()
        .await;
    let mut client = stack.client().await;
    let call = client.get_server_info(authed(GetServerInfoRequest {}, &stack.token("bob")));
    let status = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("answered well before the old 10-minute default")
        .expect_err("the core never answers");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("core_response_timeout"),
        "{}",
        status.message()
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_deadline_ends_at_max_call_duration_and_the_core_call_is_cancelled() {
    use futures::StreamExt;
    let core = vibectl_tests::fake_core::StubbornCore::default();
    let (addr, core_stop, core_task) = core.start().await;
    let stack = Stack::builder()
        .config("[edge]\nmax_call_duration = \"1s\"\n")
        .external_core(&addr.to_string())
        .start()
        .await;
    let mut client = stack.client().await;
    let started = std::time::Instant::now();
    let request = vibectl_tests::harness::execute_request(None, "never ends");
    let mut stream = client
        .stream_execute(authed(request, &stack.token("carol")))
        .await
        .expect("admitted")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the core's first chunk: {first:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("ended well before the default 30 min")
        .expect("a status")
        .expect_err("DEADLINE_EXCEEDED");
    let took = started.elapsed();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("edge.max_call_duration"),
        "{}",
        status.message()
    );
    // 1 s of max_call_duration, then the backstop's grace second.
    assert!(took < Duration::from_secs(6), "{took:?}");
    // The core's stream is cancelled, not left running.
    let mut dropped = core.dropped.subscribe();
    tokio::time::timeout(Duration::from_secs(10), dropped.wait_for(|n| *n >= 1))
        .await
        .expect("the core's call was cancelled")
        .expect("watch");
    stack.shutdown().await;
    core_stop.cancel();
    let _ = core_task.await;
}
