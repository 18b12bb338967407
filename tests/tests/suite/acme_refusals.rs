//! What the CA refuses, against a real Pebble: a name its policy forbids
//! (`domainBlocklist` → `rejectedIdentifier` at new-order) is a clear
//! error naming the name, with no order created, no busy loop and the
//! fallback certificate kept; a `rateLimited` answer (injected by the
//! loopback proxy in front of Pebble) makes the edge wait until the time
//! the CA named — said in `/ready` and in the metric — and then order.

use super::acme_common::{DOMAIN, listeners_and_pebble, ready_saying, start_edge, try_served_leaf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vibectl_tests::{acme_proxy::AcmeProxy, harness::http_get, pebble::PebbleOptions};

const REFUSED: &str = "refused.vibectl.test";
const METRICS: &str = "[metrics]\nenabled = true\ncore_listen = \"127.0.0.1:0\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_ca_refuses_is_named_and_nothing_is_ordered_again_at_once() {
    let options = PebbleOptions {
        domain_blocklist: &[REFUSED],
        ..PebbleOptions::without_waits()
    };
    let (listeners, pebble) = listeners_and_pebble(false, options).await;
    let (edge, core, _state) = start_edge(
        listeners,
        &pebble,
        &pebble.directory_url(),
        &[REFUSED],
        METRICS,
    )
    .await;
    edge.wait_for("a refused order", &pebble, |s| s.failed_orders >= 1)
        .await;
    let status = edge.status().borrow().clone();
    let error = status.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("new-order")
            && error.contains("rejectedIdentifier")
            && error.contains(REFUSED),
        "names the step, the CA's reason and the name: {error}"
    );
    assert_eq!(pebble.orders_added(), 0, "Pebble created no order");
    // The fallback is still served: a client trusting only Pebble's root
    // does not accept it.
    let root = pebble.issuing_root().await;
    assert!(try_served_leaf(edge.tls, &root).await.is_err());
    // No busy loop: the next try waits 30 s (doubling).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = edge.status().borrow().clone();
    assert_eq!(
        (status.orders_started, status.failed_orders),
        (1, 1),
        "{status:?}"
    );
    let (code, body) = ready_saying(&edge, "rejectedIdentifier", Duration::from_secs(5)).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(REFUSED), "{body}");
    let (_, metrics) = http_get(edge.admin, "/metrics").await;
    assert!(
        metrics.contains("vibectl_acme_orders_failed_total{reason=\"refused\"} 1"),
        "{metrics}"
    );
    edge.stop().await;
    core.stop().await;
}

fn unix(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_waits_until_the_named_time_shown_in_ready_and_the_metric() {
    let (listeners, pebble) = listeners_and_pebble(false, PebbleOptions::without_waits()).await;
    let proxy = AcmeProxy::start(&pebble, 0, None).await;
    const RETRY_AFTER: u64 = 4;
    proxy.rate_limit_new_orders(1, RETRY_AFTER);
    let (edge, core, _state) = start_edge(
        listeners,
        &pebble,
        &proxy.directory_url(),
        &[DOMAIN],
        METRICS,
    )
    .await;
    edge.wait_for("rate limited", &pebble, |s| s.rate_limited_until.is_some())
        .await;
    let until = edge
        .status()
        .borrow()
        .rate_limited_until
        .expect("rate limited");
    let refused_at = proxy.new_orders()[0].0;
    assert!(
        (unix(refused_at) + RETRY_AFTER as i64 - until).abs() <= 1,
        "waits until the time named: {until} vs {refused_at:?} + {RETRY_AFTER} s"
    );
    let named = vibectl_edge::tls::files::unix_to_rfc3339(until);
    let said = format!("rate limited by the CA until {named}");
    let (code, body) = ready_saying(&edge, &said, Duration::from_secs(5)).await;
    assert_eq!(code, 503, "{body}");
    let (_, metrics) = http_get(edge.admin, "/metrics").await;
    assert!(
        metrics.contains(&format!("vibectl_acme_rate_limited_until_seconds {until}"))
            && metrics.contains("vibectl_acme_orders_failed_total{reason=\"rate_limited\"} 1"),
        "{metrics}"
    );
    // Then it orders again, not before the time named, and is served.
    edge.wait_for("issued after the wait", &pebble, |s| s.issued >= 1)
        .await;
    // One refused new-order, then the ones after the wait: Pebble refuses
    // 5 % of nonces (`badNonce`), and the edge rightly sends that
    // new-order again, so a second POST may reach the proxy; Pebble still
    // creates exactly one order.
    let orders = proxy.new_orders();
    let refused: Vec<bool> = orders.iter().map(|(_, refused)| *refused).collect();
    assert!(
        refused.len() >= 2 && refused[0] && !refused[1..].contains(&true),
        "one refused new-order, then ones that went through: {refused:?}"
    );
    for (at, _) in &orders[1..] {
        assert!(
            unix(*at) >= until,
            "ordered again at {at:?}, before {until}"
        );
    }
    assert_eq!(pebble.orders_added(), 1);
    assert_eq!(edge.status().borrow().rate_limited_until, None);
    edge.stop().await;
    core.stop().await;
}
