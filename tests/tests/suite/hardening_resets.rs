//! The premature-reset guard: a client that opens streams (authenticated,
//! forwarded) and resets them right away gets GOAWAY on that connection,
//! while other clients are served; the streams it left open are cancelled
//! at the core.

use crate::hardening_common::{EdgeClients, beside};
use bytes::Bytes;
use std::time::Duration;
use vibectl_tests::{
    fake_core::StubbornCore,
    harness::{Stack, WAIT, execute_request},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_resetting_most_of_its_streams_gets_goaway() {
    let stack = Stack::builder().insecure().start().await;
    let token = stack.token("resetter");
    let tcp = tokio::net::TcpStream::connect(stack.edge_addr)
        .await
        .expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let attack = async {
        let mut opened = 0;
        while opened < 1000 {
            let Some((_response, mut body)) =
                open_stream(&client, stack.edge_addr, &token, None).await
            else {
                break;
            };
            opened += 1;
            // Let the edge take the stream in (auth, limits, core), then reset it.
            tokio::time::sleep(Duration::from_millis(2)).await;
            body.send_reset(h2::Reason::CANCEL);
        }
        opened
    };
    // Another client is served while it runs.
    let clients = EdgeClients::h2c(stack.edge_addr);
    let name = "streams reset 2 ms after opening";
    let run = Duration::from_secs(1);
    let attack = tokio::time::timeout(Duration::from_secs(30), attack);
    let (opened, _) = beside(name, &clients, &stack.token("other"), run, attack).await;
    let opened = opened.expect("attack ended in time");
    assert!(
        opened < 1000,
        "the edge never closed the connection ({opened} streams)"
    );
    assert!(opened >= 100, "closed after only {opened} streams");
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("connection ended")
        .expect("task")
        .ok();
    stack.shutdown().await;
}

/// One request on `client`: `Execute` with its body left open (`None`),
/// or `StreamExecute` with `message` as its one message; the response and
/// the stream's send half.
async fn open_stream(
    client: &h2::client::SendRequest<Bytes>,
    edge: std::net::SocketAddr,
    token: &str,
    message: Option<&str>,
) -> Option<(h2::client::ResponseFuture, h2::SendStream<Bytes>)> {
    let mut ready = client.clone().ready().await.ok()?;
    let method = if message.is_some() {
        "StreamExecute"
    } else {
        "Execute"
    };
    let request = http::Request::post(format!(
        "http://{edge}/vibectl.llm_proxy.VibectlLLMProxy/{method}"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("authorization", format!("Bearer {token}"))
    .body(())
    .expect("request");
    let (response, mut body) = ready.send_request(request, false).ok()?;
    if let Some(text) = message {
        let message = prost::Message::encode_to_vec(&execute_request(None, text));
        let mut frame = vec![0u8];
        frame.extend_from_slice(&u32::try_from(message.len()).expect("len").to_be_bytes());
        frame.extend_from_slice(&message);
        body.send_data(Bytes::from(frame), true).ok()?;
    }
    Some((response, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_an_offender_left_open_are_cancelled_at_the_core() {
    let core = StubbornCore::default();
    let (addr, core_stop, core_task) = core.start().await;
    let stack = Stack::builder()
        .insecure()
        .external_core(&addr.to_string())
        .start()
        .await;
    let token = stack.token("resetter");
    let tcp = tokio::net::TcpStream::connect(stack.edge_addr)
        .await
        .expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    // Ten streams that reach the core and stay open there (its streams
    // never end), then streams reset right after they opened.
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(
            open_stream(&client, stack.edge_addr, &token, Some("hold"))
                .await
                .expect("held stream"),
        );
    }
    tokio::time::timeout(WAIT, async {
        while core.calls() < 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the held streams reached the core");
    assert_eq!(*core.dropped.borrow(), 0);
    let mut opened = 0;
    let attack = async {
        while opened < 1000 {
            let Some((_response, mut body)) =
                open_stream(&client, stack.edge_addr, &token, Some("hold")).await
            else {
                return;
            };
            opened += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
            body.send_reset(h2::Reason::CANCEL);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), attack)
        .await
        .expect("attack ended in time");
    assert!(opened < 1000, "the edge never closed the connection");
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("connection ended")
        .expect("task")
        .ok();
    // Every stream that reached the core was cancelled there, the ten the
    // client never reset included.
    let reached = core.calls();
    let mut dropped = core.dropped.subscribe();
    let all = tokio::time::timeout(WAIT, dropped.wait_for(|n| *n >= reached)).await;
    assert!(
        all.is_ok(),
        "{} of {reached} core streams cancelled ({} held open by the client)",
        *core.dropped.borrow(),
        held.len()
    );
    drop(held);
    stack.shutdown().await;
    core_stop.cancel();
    let _ = core_task.await;
}
