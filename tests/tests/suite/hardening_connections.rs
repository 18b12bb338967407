//! Connection lifecycle limits against an attacker with a laptop: silent TLS
//! connections (no HTTP/2 preface) are closed after
//! `connections.first_request_timeout`; at the connection cap the one idle
//! the longest is closed first, so a victim client beside the attack keeps
//! being served; a client dribbling its TLS handshake is cut at
//! `tls.handshake_timeout`.

use crate::{
    hardening_common::{EdgeClients, beside, closed_within, silent_tls, tls_client},
    support::sample,
};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use vibectl_tests::harness::Stack;

const LIMITS: &str = "[metrics]\nenabled = true\ncore_listen = \"127.0.0.1:0\"\n\
    [connections]\nfirst_request_timeout = \"1s\"\nmax_total = 40\n\
    [tls]\nhandshake_timeout = \"1s\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_the_cap_spares_the_victim() {
    let stack = Stack::builder().config(LIMITS).start().await;
    let ca = stack.ca_bundle.clone().expect("TLS stack");
    let ca_pem = std::fs::read_to_string(&ca).expect("ca");
    let tls = tls_client(&ca);
    let token = stack.token("victim");

    // 100 silent connections against a cap of 40, opened while the victim
    // makes calls (a new connection every 5 calls).
    let attack = async {
        let mut silent = Vec::new();
        for _ in 0..100 {
            if let Some(s) = silent_tls(stack.edge_addr, &tls).await {
                silent.push(s);
            }
        }
        silent
    };
    let clients = EdgeClients::tls(stack.edge_addr, &ca_pem);
    let name = "100 silent TLS connections, cap 40";
    let (mut silent, _) = beside(name, &clients, &token, Duration::from_secs(2), attack).await;

    // Every silent connection is closed: evicted at the cap, or after its
    // first-request timeout (1 s) at the latest.
    let started = Instant::now();
    for s in &mut silent {
        assert!(
            closed_within(s, Duration::from_secs(10)).await,
            "a silent connection stayed open"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed by {:?}",
        started.elapsed()
    );
    let text = stack.admin_get("/metrics").await.1;
    let closed = |reason| {
        sample(
            &text,
            "vibectl_connections_closed_total",
            &[("reason", reason)],
        )
    };
    assert!(
        closed("first_request_timeout").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    assert!(closed("evicted_total_cap").unwrap_or(0.0) >= 1.0, "{text}");
    assert_eq!(sample(&text, "vibectl_connections_max", &[]), Some(40.0));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbled_tls_handshake_is_cut_at_the_handshake_timeout() {
    let stack = Stack::builder().config(LIMITS).start().await;
    // A real ClientHello, sent one byte every 50 ms (it would take ~15 s).
    let config = {
        vibectl_edge::tls::install_crypto_provider();
        rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    };
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("client hello");
    let cut = async {
        let tcp = tokio::net::TcpStream::connect(stack.edge_addr)
            .await
            .expect("connect");
        let (mut read, mut write) = tcp.into_split();
        let started = Instant::now();
        let dribble = tokio::spawn(async move {
            for byte in hello {
                if write.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let closed = closed_within(&mut read, Duration::from_secs(8)).await;
        dribble.abort();
        (closed, started.elapsed())
    };
    let ca = std::fs::read_to_string(stack.ca_bundle.as_ref().expect("TLS")).expect("ca");
    let clients = EdgeClients::tls(stack.edge_addr, &ca);
    let name = "a TLS ClientHello dribbled a byte per 50 ms";
    let token = stack.token("victim");
    let ((closed, took), _) = beside(name, &clients, &token, Duration::from_secs(1), cut).await;
    assert!(closed, "the dribbling client was never cut");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "cut after {took:?} (handshake_timeout = 1s)"
    );
    let text = stack.admin_get("/metrics").await.1;
    assert_eq!(
        sample(
            &text,
            "vibectl_tls_handshake_failures_total",
            &[("reason", "timeout")]
        ),
        Some(1.0),
        "{text}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_counts_against_the_same_cap() {
    // One table for every listener: silent connections to the admin port
    // are capped and evicted like the TLS listener's (file descriptors are
    // one budget), so a TLS client is still served when they fill the cap.
    let stack = Stack::builder()
        .config(
            "[metrics]\nenabled = true\ncore_listen = \"127.0.0.1:0\"\n\
             [connections]\nfirst_request_timeout = \"60s\"\nmax_total = 6\n",
        )
        .start()
        .await;
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(
            tokio::net::TcpStream::connect(stack.admin_addr)
                .await
                .expect("connect to admin"),
        );
    }
    // The 4 oldest are closed once the edge admitted all 10 at its cap of
    // 6: only then does the TLS client connect (the admin accept loop may
    // lag behind the kernel's backlog under load).
    for s in &mut silent[..4] {
        assert!(
            closed_within(s, Duration::from_secs(10)).await,
            "an admin connection over the cap stayed open"
        );
    }
    let token = stack.token("victim");
    let mut client = stack.client().await;
    client
        .get_server_info(vibectl_tests::harness::authed(
            vibectl_proto::llm_proxy::GetServerInfoRequest {},
            &token,
        ))
        .await
        .expect("the TLS listener serves beside a full admin listener");
    // At most 6 - 1 (the TLS client) silent admin connections stay open;
    // the rest were evicted at once (first_request_timeout is 60 s).
    let mut closed = 0;
    for s in &mut silent {
        closed += usize::from(closed_within(s, Duration::from_millis(200)).await);
    }
    assert!(
        closed >= 5,
        "{closed} of 10 silent admin connections closed"
    );
    let text = stack.admin_get("/metrics").await.1;
    assert!(
        sample(
            &text,
            "vibectl_connections_closed_total",
            &[("reason", "evicted_total_cap")]
        )
        .unwrap_or(0.0)
            >= 5.0,
        "{text}"
    );
    stack.shutdown().await;
}
