//! The order flow (TLS-ALPN-01, HTTP-01, and DNS-01 through a real BIND)
//! against a real Pebble with its defaults — a random
//! 0–15 s wait before each validation and 5 % of nonces refused — never
//! wastes an order: each issuance is exactly one order (counted from
//! Pebble's own log), no order fails, and the edge serves the new
//! certificate to a client that trusts only Pebble's root within 1 s of
//! its download. A `badNonce` at every step of the flow is retried with a
//! fresh nonce, never answered with a new order.
//!
//! `ACME_ISSUANCES` (default 3) sets the issuances per challenge type;
//! each runs against its own Pebble, `ACME_CONCURRENCY` (default 5) at
//! once. `scripts/acme-soak` runs 20 per type.

use super::acme_common::{
    DOMAIN, challenge_config, listeners_and_pebble, start_edge, try_served_leaf,
};
use super::acme_dns::{WILDCARD, ZONE, dns_acme};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vibectl_edge::tls::acme::AcmeStatus;
use vibectl_tests::{acme_proxy::AcmeProxy, bind::Bind, harness::WAIT, pebble::PebbleOptions};

/// What one issuance showed.
#[derive(Debug)]
struct Run {
    /// Orders Pebble created.
    orders: usize,
    /// The edge's ACME status after it.
    status: AcmeStatus,
    /// From the download to the first handshake that verified against
    /// Pebble's root.
    serve_lag: Duration,
    /// From start to the download.
    took: Duration,
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// One edge, one Pebble with its defaults, one certificate.
async fn issue_once(challenge: &'static str) -> Run {
    let started = SystemTime::now();
    let http = challenge == "http-01";
    let bind = match challenge {
        "dns-01" => Some(Bind::start(ZONE).await),
        _ => None,
    };
    // Pebble with its defaults: waits before validations, refused nonces.
    let options = PebbleOptions {
        dns_server: bind.as_ref().map(Bind::address),
        ..PebbleOptions::default()
    };
    let (listeners, pebble) = listeners_and_pebble(http, options).await;
    let (acme, domain) = match &bind {
        Some(bind) => (dns_acme(bind, &bind.key_file()), WILDCARD),
        None => (challenge_config(challenge, &listeners), DOMAIN),
    };
    let url = pebble.directory_url();
    let (edge, core, _state) = start_edge(listeners, &pebble, &url, &[domain], &acme).await;
    let root = pebble.issuing_root().await;

    // A client that keeps connecting, trusting only Pebble's root: the
    // first handshake it verifies.
    let tls = edge.tls;
    let prober = tokio::spawn(async move {
        loop {
            if try_served_leaf(tls, &root).await.is_ok() {
                return SystemTime::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    edge.wait_issued(&pebble).await;
    let verified = tokio::time::timeout(WAIT, prober)
        .await
        .expect("a verified handshake")
        .expect("prober");
    let status = edge.status().borrow().clone();
    let downloaded =
        UNIX_EPOCH + Duration::from_millis(status.downloaded_at_unix_ms.expect("downloaded"));
    let run = Run {
        orders: pebble.orders_added(),
        serve_lag: verified.duration_since(downloaded).unwrap_or_default(),
        took: downloaded.duration_since(started).unwrap_or_default(),
        status,
    };
    edge.stop().await;
    core.stop().await;
    run
}

async fn every_issuance_is_one_order(challenge: &'static str) {
    use futures::StreamExt;
    let runs: Vec<Run> =
        futures::stream::iter((0..env_count("ACME_ISSUANCES", 3)).map(|_| issue_once(challenge)))
            .buffer_unordered(env_count("ACME_CONCURRENCY", 5))
            .collect()
            .await;
    let mut took: Vec<_> = runs.iter().map(|r| r.took.as_secs_f64()).collect();
    took.sort_by(f64::total_cmp);
    let lag = runs.iter().map(|r| r.serve_lag).max().unwrap_or_default();
    let one_order = runs
        .iter()
        .filter(|r| r.orders == 1 && r.status.failed_orders == 0)
        .count();
    eprintln!(
        "{challenge}: {one_order}/{} issuances with exactly one order (Pebble's log) and none failed; orders {:?}, issuance s {took:.1?}, worst serve lag {lag:?}",
        runs.len(),
        runs.iter().map(|r| r.orders).collect::<Vec<_>>(),
    );
    for run in &runs {
        assert_eq!(run.orders, 1, "one order per issuance: {run:?}");
        assert_eq!(
            (
                run.status.orders,
                run.status.failed_orders,
                run.status.issued
            ),
            (1, 0, 1),
            "the one order issued, none failed or was left invalid: {run:?}"
        );
        assert!(
            run.serve_lag < Duration::from_secs(1),
            "served within 1 s of the download: {run:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_each_issuance_is_one_order_with_pebbles_defaults() {
    every_issuance_is_one_order("tls-alpn-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_each_issuance_is_one_order_with_pebbles_defaults() {
    every_issuance_is_one_order("http-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_01_each_issuance_is_one_order_with_pebbles_defaults() {
    every_issuance_is_one_order("dns-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_nonce_at_every_step_is_retried_not_reordered() {
    let (listeners, pebble) = listeners_and_pebble(false, PebbleOptions::without_waits()).await;
    // Three in a row at each step: more than instant-acme re-sends by itself.
    let proxy = AcmeProxy::start(&pebble, 3, None).await;
    let url = proxy.directory_url();
    let (edge, core, _state) = start_edge(listeners, &pebble, &url, &[DOMAIN], "").await;
    edge.wait_issued(&pebble).await;
    let injected = proxy.injected();
    eprintln!("badNonce injected: {injected:?}");
    for step in [
        "new-account",
        "new-order",
        "authorization",
        "challenge",
        "finalize",
        "order poll",
        "certificate",
    ] {
        assert_eq!(injected.get(step), Some(&3), "{step}: {injected:?}");
    }
    assert_eq!(pebble.orders_added(), 1, "retried, not re-ordered");
    let status = edge.status().borrow().clone();
    assert_eq!((status.orders, status.failed_orders), (1, 0), "{status:?}");
    edge.stop().await;
    core.stop().await;
}
