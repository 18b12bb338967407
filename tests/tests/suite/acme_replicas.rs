//! Edge replicas sharing one ACME state in a real Redis, behind ONE
//! address (a TCP balancer in the test that Pebble's validation ports
//! point at), each the real edge (`EdgeApp::build`) on its own listeners:
//! exactly one order at Pebble (counted from Pebble's own log), the CA's
//! validation answered by a replica that did not order, and every replica
//! serving the certificate (a client trusting only Pebble's root connects
//! to each directly) within seconds of the download.

use super::acme_common::{Core, Edge, ISSUE_WAIT, bind_listeners, config, port, try_served_leaf};
use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use vibectl_tests::{
    pebble::{Pebble, PebbleOptions},
    redis_server::RedisServer,
    tcp_balancer::TcpBalancer,
};

/// What every replica's `[tls.acme]` and `[limits]` add.
pub(crate) fn replica_extra(challenge: &str, http: Option<SocketAddr>, redis: &str) -> String {
    let http = http.map_or_else(String::new, |a| format!("http_listen = \"{a}\"\n"));
    format!(
        "challenge = \"{challenge}\"\n{http}lock_lease = \"3s\"\n\
         [limits]\nbackend = \"redis\"\nredis_url = \"{redis}\"\n"
    )
}

/// Starts `n` replicas behind one balancer; checks one order, validation
/// answered by a replica that did not order, every replica serving.
async fn replicas(n: usize, challenge: &str, nosleep: bool) {
    let http = challenge == "http-01";
    let redis = RedisServer::start().await;
    let (tls_lb, http_lb) = (TcpBalancer::start().await, TcpBalancer::start().await);
    let pebble = Pebble::start(PebbleOptions {
        http_port: http_lb.address().port(),
        tls_port: tls_lb.address().port(),
        nosleep,
        ..Default::default()
    })
    .await;
    let mut core = Core::bind().await;
    let mut edges = Vec::new();
    let mut states = Vec::new();
    for _ in 0..n {
        let binds = bind_listeners(http).await;
        let state = tempfile::tempdir().expect("tempdir");
        let http_addr = binds.http.as_ref().map(|l| l.local_addr().expect("addr"));
        let extra = replica_extra(challenge, http_addr, &redis.url());
        let config = config(state.path(), &core.address, &pebble, &extra);
        if edges.is_empty() {
            core.serve(&config);
        }
        assert!(port(&binds.main) > 0);
        edges.push(Edge::start(binds, config).await);
        states.push(state);
    }
    // The replica that took the lock goes last in the balancer's turn, so
    // the CA's first validation reaches one that did not order.
    let holder = wait_until(ISSUE_WAIT, || {
        edges.iter().position(|e| e.status().borrow().lock_held)
    })
    .await
    .expect("one replica takes the ordering lock");
    let mut order: Vec<usize> = (0..n).filter(|i| *i != holder).collect();
    order.push(holder);
    tls_lb.set_backends(&order.iter().map(|i| edges[*i].tls).collect::<Vec<_>>());
    if http {
        let plain: Vec<_> = order
            .iter()
            .map(|i| edges[*i].http.expect("http"))
            .collect();
        http_lb.set_backends(&plain);
    }

    edges[holder]
        .wait_for("issued", &pebble, |s| s.issued >= 1)
        .await;
    let status = edges[holder].status().borrow().clone();
    let downloaded =
        UNIX_EPOCH + Duration::from_millis(status.downloaded_at_unix_ms.expect("downloaded"));
    let want = status.served.expect("served").sha256;
    let root = pebble.issuing_root().await;
    let mut slowest = Duration::ZERO;
    for (i, edge) in edges.iter().enumerate() {
        let after = serves(edge.tls, &root, &want, downloaded).await;
        assert!(
            after.is_some(),
            "replica {i} never served the new certificate"
        );
        slowest = slowest.max(after.unwrap_or_default());
    }
    println!(
        "replicas={n} challenge={challenge} every replica served the certificate {slowest:?} after the download"
    );
    let relayed = if http {
        http_lb.relayed()
    } else {
        tls_lb.relayed()
    };
    println!("validation connections per replica (holder last): {relayed:?}");
    assert!(
        relayed[0] >= 1,
        "a replica that did not order answered the CA: {relayed:?}"
    );
    for (i, edge) in edges.iter().enumerate() {
        let s = edge.status().borrow().clone();
        assert_eq!(s.issued, u64::from(i == holder), "replica {i}: {s:?}");
        assert!(s.serving(), "replica {i}: {s:?}");
    }
    assert_eq!(
        pebble.orders_added(),
        1,
        "exactly one order at Pebble:\n{}",
        pebble.log()
    );
    for edge in edges {
        edge.stop().await;
    }
    core.stop().await;
}

/// Polls (every 20 ms, at most 10 s) until `tls` serves the leaf `want`
/// to a client trusting only `root`; returns how long after `since`.
pub(crate) async fn serves(
    tls: SocketAddr,
    root: &str,
    want: &str,
    since: SystemTime,
) -> Option<Duration> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if try_served_leaf(tls, root).await.ok().as_deref() == Some(want) {
            return Some(SystemTime::now().duration_since(since).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Polls `probe` every 20 ms until it gives a value, at most `bound`.
pub(crate) async fn wait_until<T>(
    bound: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_one_address_one_tls_alpn_01_order_every_replica_serves() {
    replicas(3, "tls-alpn-01", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_one_address_one_http_01_order_every_replica_serves() {
    replicas(2, "http-01", true).await;
}
