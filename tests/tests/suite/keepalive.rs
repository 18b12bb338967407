//! Keepalive PINGs toward clients (`connections.keepalive_interval` and
//! `keepalive_timeout`): a client that stops answering them is closed
//! after one interval plus the timeout; a client that answers keeps its
//! idle connection.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vibectl_tests::harness::{Stack, WAIT};

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(300);
/// PING frame type (RFC 9113 §6.7).
const PING: u8 = 0x6;

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed_one_that_answers_is_kept() {
    let stack = Stack::builder()
        .insecure()
        .config(&format!(
            "[connections]\nkeepalive_interval = \"{}ms\"\nkeepalive_timeout = \"{}ms\"\n\
             first_request_timeout = \"60s\"\n",
            INTERVAL.as_millis(),
            TIMEOUT.as_millis()
        ))
        .start()
        .await;

    // The answering client: h2's connection task answers every PING.
    let tcp = tokio::net::TcpStream::connect(stack.edge_addr)
        .await
        .expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let mut answering = tokio::spawn(conn);
    let opened = Instant::now();

    // The silent client: the preface, empty SETTINGS and the ACK of the
    // edge's, then it only reads (frames by type) and never answers.
    let mut silent = tokio::net::TcpStream::connect(stack.edge_addr)
        .await
        .expect("connect");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]);
    silent.write_all(&hello).await.expect("preface");
    let started = Instant::now();
    let read_until_closed = async {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => return bytes,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    };
    let bytes = tokio::time::timeout(WAIT, read_until_closed)
        .await
        .expect("the silent connection was never closed");
    let closed_after = started.elapsed();
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let length = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        types.push(bytes[at + 3]);
        at += 9 + length;
    }
    assert!(types.contains(&PING), "no PING before the close: {types:?}");
    assert!(
        closed_after >= INTERVAL + TIMEOUT - Duration::from_millis(50),
        "closed before the PING could time out: {closed_after:?}"
    );

    // The answering client outlived several PING rounds and still works.
    let rounds = (INTERVAL + TIMEOUT) * 3;
    if let Some(left) = rounds.checked_sub(opened.elapsed()) {
        assert!(
            tokio::time::timeout(left, &mut answering).await.is_err(),
            "a client answering every PING was closed"
        );
    }
    assert!(
        !answering.is_finished(),
        "a client answering every PING was closed"
    );
    client
        .ready()
        .await
        .expect("the answering connection still takes requests");
    stack.shutdown().await;
}
