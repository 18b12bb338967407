//! The premature-reset guard: a client that opens streams (authenticated,
//! forwarded) and resets them right away gets GOAWAY on that connection,
//! while other clients are served.

use std::time::Duration;
use vibectl_proto::llm_proxy::GetServerInfoRequest;
use vibectl_tests::harness::{Stack, authed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_resetting_most_of_its_streams_gets_goaway() {
    let stack = Stack::builder().insecure().start().await;
    let token = stack.token("resetter");
    let tcp = tokio::net::TcpStream::connect(stack.edge_addr)
        .await
        .expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut opened = 0;
    let attack = async {
        for _ in 0..1000 {
            let Ok(mut ready) = client.clone().ready().await else {
                return;
            };
            let request = http::Request::post(format!(
                "http://{}/vibectl.llm_proxy.VibectlLLMProxy/Execute",
                stack.edge_addr
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .expect("request");
            let Ok((_response, mut body)) = ready.send_request(request, false) else {
                return;
            };
            opened += 1;
            // Let the edge take the stream in (auth, limits, core), then reset it.
            tokio::time::sleep(Duration::from_millis(2)).await;
            body.send_reset(h2::Reason::CANCEL);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), attack)
        .await
        .expect("attack ended in time");
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
    // Others are served.
    let mut client = stack.client().await;
    client
        .get_server_info(authed(GetServerInfoRequest {}, &stack.token("other")))
        .await
        .expect("another client is served");
    stack.shutdown().await;
}
