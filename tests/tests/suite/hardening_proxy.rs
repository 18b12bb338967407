//! PROXY protocol on the TLS listener: from a trusted network the header
//! is required and read (v1 and v2); a header from any other source is
//! refused, while that source's plain TLS clients are served.

use crate::{
    hardening_common::{ATTACKER, EdgeClients, beside, closed_within, connect_from, tls_client},
    support::sample,
};
use std::time::Duration;
use tokio::{io::AsyncWriteExt, net::TcpStream};
use vibectl_tests::harness::Stack;

const METRICS: &str = "[metrics]\nenabled = true\ncore_listen = \"127.0.0.1:0\"\n";

/// TLS over `tcp` after `header`; whether the handshake completed.
async fn handshake_after(stack: &Stack, header: &[u8]) -> bool {
    let tls = tls_client(stack.ca_bundle.as_ref().expect("TLS"));
    let mut tcp = TcpStream::connect(stack.edge_addr).await.expect("connect");
    tcp.write_all(header).await.expect("header");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    matches!(
        tokio::time::timeout(Duration::from_secs(10), tls.connect(name, tcp)).await,
        Ok(Ok(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_from_an_untrusted_source_is_refused() {
    let config = format!(
        "{METRICS}[connections]\nproxy_protocol = true\nproxy_protocol_trusted = [\"10.0.0.0/8\"]\n"
    );
    let stack = Stack::builder().config(&config).start().await;
    // 127.0.0.2 is not trusted: its claims to be 203.0.113.9 are refused,
    // one after the other for a second, while a client is served.
    let attack = async {
        let started = std::time::Instant::now();
        let mut refused = 0;
        while started.elapsed() < Duration::from_secs(1) {
            let mut tcp = connect_from(stack.edge_addr, ATTACKER)
                .await
                .expect("connect");
            tcp.write_all(b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 443\r\n")
                .await
                .expect("header");
            assert!(
                closed_within(&mut tcp, Duration::from_secs(10)).await,
                "closed"
            );
            refused += 1;
        }
        refused
    };
    let ca = std::fs::read_to_string(stack.ca_bundle.as_ref().expect("TLS")).expect("ca");
    let clients = EdgeClients::tls(stack.edge_addr, &ca);
    let (token, run) = (stack.token("victim"), Duration::from_secs(1));
    let name = "PROXY headers from an untrusted source";
    let (refused, _) = beside(name, &clients, &token, run, attack).await;
    // Its direct TLS clients are served.
    assert!(
        handshake_after(&stack, b"").await,
        "direct TLS from an untrusted source"
    );
    let text = stack.admin_get("/metrics").await.1;
    // Each was refused for its header, or (past 200 at once, 50 a second)
    // at accept for its address's rate of new connections.
    let header = sample(&text, "vibectl_proxy_protocol_refused_total", &[]).unwrap_or(0.0);
    let rate = sample(
        &text,
        "vibectl_connections_refused_total",
        &[("reason", "address_rate")],
    );
    assert!(header >= 1.0, "{text}");
    assert_eq!(header + rate.unwrap_or(0.0), f64::from(refused), "{text}");
    stack.shutdown().await;
}

#[tokio::test]
async fn a_trusted_load_balancer_must_send_the_header_v1_or_v2() {
    let config = format!(
        "{METRICS}[connections]\nproxy_protocol = true\nproxy_protocol_trusted = [\"127.0.0.0/8\"]\n"
    );
    let stack = Stack::builder().config(&config).start().await;
    assert!(
        handshake_after(&stack, b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 443\r\n").await,
        "v1"
    );
    let src: std::net::SocketAddr = "198.51.100.9:40000".parse().expect("addr");
    let dst: std::net::SocketAddr = "10.0.0.1:443".parse().expect("addr");
    let v2 = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (src, dst),
    )
    .build()
    .expect("v2 header");
    assert!(handshake_after(&stack, &v2).await, "v2");
    assert!(
        !handshake_after(&stack, b"").await,
        "no header from the load balancer: refused"
    );
    stack.shutdown().await;
}
