//! ACME against a real ACME server (Pebble, on 127.0.0.1): the real edge
//! in ACME mode (`EdgeApp::build`, what `serve-acme` runs) in front of the real
//! core. Certificates issued through TLS-ALPN-01 and HTTP-01 verify against
//! Pebble's issuing root only; `/ready` is 503 until then; a short-lived
//! certificate is renewed and swapped in while clients keep calling; a
//! restart with the CA gone serves the cached certificate at once; the
//! plain HTTP listener answers challenges and redirects everything else.

use super::acme_common::{
    Core, DOMAIN, Edge, ISSUE_WAIT, assert_private, bind_listeners, challenge_config, channel,
    config, listeners_and_pebble, pebble_client_config, port, ready, served_leaf, server_info,
    start_edge, wait_ready,
};
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::net::TcpListener;
use vibectl_tests::{
    harness::{WAIT, http_get, http1_request},
    pebble::{Pebble, PebbleOptions},
};
/// Issues through `challenge`, checks `/ready` before and after and a
/// gRPC call trusting only Pebble's root; returns what the plain HTTP
/// checks need.
async fn issue(challenge: &str) -> (Edge, Pebble, Core, tempfile::TempDir) {
    let http = challenge == "http-01";
    let (listeners, pebble) = listeners_and_pebble(http, PebbleOptions::without_waits()).await;
    let url = pebble.directory_url();
    let acme = challenge_config(challenge, &listeners);
    let (edge, core, state) = start_edge(listeners, &pebble, &url, &[DOMAIN], &acme).await;

    // Nothing issued yet: the self-signed fallback, and not ready.
    let (status, body) = ready(&edge).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("waiting for ACME certificate for edge.vibectl.test"),
        "{body}"
    );
    assert!(
        edge.server.resolver().expect("TLS").served().is_some(),
        "the fallback is served"
    );

    edge.wait_issued(&pebble).await;
    assert_private(edge.server.acme_cache_dir().expect("ACME mode"));
    wait_ready(&edge, Duration::from_secs(1)).await;

    // A client that trusts ONLY Pebble's issuing root, SNI = the domain.
    let root = pebble.issuing_root().await;
    let leaf = served_leaf(edge.tls, &root).await;
    let served = edge.status().borrow().served.clone().expect("served");
    assert_eq!(leaf, served.sha256);
    assert_eq!(
        edge.server.resolver().expect("TLS").served(),
        Some(served),
        "served() reports ACME"
    );
    let name = server_info(channel(edge.tls, &root).await.expect("TLS to the edge"))
        .await
        .expect("GetServerInfo");
    assert!(!name.is_empty());
    (edge, pebble, core, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_issues_a_certificate_clients_verify_with_pebbles_root() {
    let (edge, pebble, core, _state) = issue("tls-alpn-01").await;
    // Validation is over: a hello offering only acme-tls/1 is refused.
    let root = pebble.issuing_root().await;
    let config = pebble_client_config(&root, b"acme-tls/1");
    let tcp = tokio::net::TcpStream::connect(edge.tls)
        .await
        .expect("connect");
    let handshake = tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(DOMAIN).expect("name"), tcp),
    )
    .await
    .expect("in time");
    assert!(
        handshake.is_err(),
        "no challenge pending: no acme-tls/1 handshake"
    );
    edge.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_issues_and_the_plain_listener_answers_challenges_and_redirects() {
    let (edge, _pebble, core, _state) = issue("http-01").await;
    let http = edge.http.expect("plain HTTP listener");
    let tls_port = edge.tls.port();

    let (status, headers, body) = plain_http(
        http,
        "GET",
        "/.well-known/acme-challenge/no-such-token",
        &format!("{DOMAIN}:{}", http.port()),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        headers.get("location").is_none(),
        "the challenge path is never redirected"
    );

    for (method, path) in [
        (
            "GET",
            "/vibectl.llm_proxy.VibectlLLMProxy/GetServerInfo?x=1&y=2",
        ),
        ("POST", "/"),
    ] {
        let (status, headers, body) =
            plain_http(http, method, path, &format!("{DOMAIN}:{}", http.port())).await;
        assert_eq!(status, 308, "{method} {path}: {body}");
        assert_eq!(
            headers["location"],
            format!("https://{DOMAIN}:{tls_port}{path}").as_str()
        );
        assert!(
            headers.get("strict-transport-security").is_none(),
            "no HSTS over plain HTTP"
        );
    }
    edge.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_validation_keeps_the_fallback_and_ready_names_the_error() {
    let listeners = bind_listeners(false).await;
    // Pebble validates TLS-ALPN-01 on a port where nothing listens.
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_port = port(&dead);
    drop(dead);
    let pebble = Pebble::start(PebbleOptions {
        tls_port: dead_port,
        ..PebbleOptions::without_waits()
    })
    .await;
    let (edge, core, _state) = start_edge(
        listeners,
        &pebble,
        &pebble.directory_url(),
        &[DOMAIN],
        "[metrics]\nenabled = true\ncore_listen = \"127.0.0.1:0\"\n",
    )
    .await;
    edge.wait_for("a failed order", &pebble, |s| s.failed_orders >= 1)
        .await;
    // `/ready` follows the status a moment later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let (status, body) = ready(&edge).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("waiting for ACME certificate"), "{body}");
        if body.contains("last error: order failed") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = edge.status().borrow().clone();
    assert!(!status.serving());
    let error = status.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("validation failed") && error.contains(DOMAIN),
        "the error names the cause and the domain: {error}"
    );
    // One order, then a pause (30 s, doubling): no busy loop.
    assert_eq!(status.orders_started, 1, "{status:?}");
    let (_, metrics) = http_get(edge.admin, "/metrics").await;
    for line in [
        "vibectl_acme_orders_started_total 1",
        "vibectl_acme_orders_failed_total{reason=\"validation\"} 1",
        "vibectl_acme_orders_completed_total 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    // Every ACME series the renewal alert uses (the ARI window needs a
    // served certificate: acme_renewal checks it).
    for name in crate::alerts_rules::acme_alert_series(&["vibectl_acme_ari_window_start_seconds"]) {
        assert!(
            crate::support::sample(&metrics, &name, &[]).is_some(),
            "{name} (used by an alert) in\n{metrics}"
        );
    }
    edge.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_swaps_while_clients_call_then_a_restart_serves_the_cache_without_the_ca() {
    let started = Instant::now();
    let validity = Duration::from_secs(45);
    let options = PebbleOptions {
        validity: Some(validity),
        ..PebbleOptions::without_waits()
    };
    let (listeners, pebble) = listeners_and_pebble(false, options).await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut core = Core::bind().await;
    let config = config(state.path(), &core.address, &pebble, "");
    core.serve(&config);
    let edge = Edge::start(listeners, config.clone()).await;
    edge.wait_issued(&pebble).await;
    let root = pebble.issuing_root().await;
    let first = served_leaf(edge.tls, &root).await;
    let issued_at = Instant::now();
    let first_not_after = edge
        .status()
        .borrow()
        .served
        .as_ref()
        .expect("served")
        .not_after_unix;

    // Renewal at 2/3 of the lifetime, while one connection keeps calling
    // and new connections keep coming: not one call may fail.
    let existing = channel(edge.tls, &root).await.expect("TLS to the edge");
    let mut status = edge.status();
    let renewed = status.wait_for(|s| s.issued >= 2);
    tokio::pin!(renewed);
    let deadline = tokio::time::Instant::now() + validity + ISSUE_WAIT;
    let mut calls = 0;
    loop {
        tokio::select! {
            result = &mut renewed => { result.expect("status"); break; }
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no renewal; status {:?}\nPebble log:\n{}",
                    edge.status().borrow(),
                    pebble.log()
                );
                server_info(existing.clone()).await.unwrap_or_else(|e| panic!("existing connection, call {calls}: {e}"));
                let fresh = channel(edge.tls, &root).await.unwrap_or_else(|e| panic!("new connection, call {calls}: {e:?}"));
                server_info(fresh).await.unwrap_or_else(|e| panic!("new connection, call {calls}: {e}"));
                calls += 2;
            }
        }
    }
    let renewed_after = issued_at.elapsed();
    // The renewal order started when a third of the lifetime was left.
    let status = edge.status().borrow().clone();
    let ordered_at_ms = status.downloaded_at_unix_ms.expect("downloaded") as i64
        - status.issue_millis.expect("took") as i64;
    let third_left_ms = (first_not_after - validity.as_secs() as i64 / 3) * 1000;
    assert!(
        (third_left_ms - 2000..=third_left_ms + 2000).contains(&ordered_at_ms),
        "renewal ordered at {ordered_at_ms} ms, a third of the lifetime left at {third_left_ms} ms"
    );
    let second = served_leaf(edge.tls, &root).await;
    assert_ne!(
        first, second,
        "the renewed certificate is served to new connections"
    );
    server_info(existing.clone())
        .await
        .expect("the existing connection still works");
    server_info(channel(edge.tls, &root).await.expect("TLS"))
        .await
        .expect("new connection");
    assert!(calls > 20, "{calls} calls");
    eprintln!(
        "renewed {renewed_after:?} after issuance ({validity:?} certificates); {calls} calls, 0 failed; {} failed orders",
        edge.status().borrow().failed_orders
    );
    drop(existing);
    edge.stop().await;

    // Restart with the same cache and directory URL while the CA is gone:
    // the cached certificate, at once, without asking the CA (a directory
    // check would fail and stop the start).
    drop(pebble);
    let restarted_at = Instant::now();
    let edge = Edge::start(bind_listeners(false).await, config).await;
    wait_ready(&edge, Duration::from_secs(2)).await;
    eprintln!("ready {:?} after the restart", restarted_at.elapsed());
    let status = edge.status().borrow().clone();
    assert_eq!(
        (status.deployed, status.issued, status.orders),
        (1, 0, 0),
        "{status:?}"
    );
    assert_eq!(served_leaf(edge.tls, &root).await, second);
    server_info(channel(edge.tls, &root).await.expect("TLS"))
        .await
        .expect("GetServerInfo on the cached certificate");
    edge.stop().await;
    core.stop().await;
    eprintln!("renewal + restart took {:?}", started.elapsed());
}

/// An HTTP/1.1 request with a chosen `Host`: status, headers, body.
async fn plain_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
) -> (u16, http::HeaderMap, String) {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        http1_request(tcp, method, host, path).await
    };
    tokio::time::timeout(WAIT, exchange)
        .await
        .expect("answered in time")
}
