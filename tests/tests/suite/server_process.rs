//! The start-up wait every external test server shares
//! (`vibectl_tests::server_process`): a port taken between "free a moment
//! ago" and the server's own bind is retried on a fresh port, and a server
//! that exits before it is ready fails the test at once with its log
//! (instead of a bare "port never opened" after the whole bound).

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Instant,
};
use vibectl_tests::server_process::{ServerProcess, accepting};

/// `redis-server` on 127.0.0.1:`port` (TCP; it exits when the port is taken).
fn redis_on(port: u16) -> Command {
    let mut redis = Command::new("redis-server");
    redis
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"]);
    redis
}

#[tokio::test]
async fn a_port_taken_before_the_server_binds_it_is_retried_on_a_fresh_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Another process holds this port when the first attempt binds it.
    let thief = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = thief.local_addr().expect("addr").port();
    let mut attempts = 0;
    let (server, ports) = ServerProcess::start(
        "redis-server",
        &dir.path().join("redis.log"),
        1,
        |ports| {
            attempts += 1;
            redis_on(if attempts == 1 { taken } else { ports[0] })
        },
        accepting,
    )
    .await;
    assert_eq!(attempts, 2, "started again after the lost race");
    assert_ne!(ports[0], taken);
    let mut redis = TcpStream::connect(("127.0.0.1", ports[0])).expect("connect");
    redis.write_all(b"PING\r\n").expect("write");
    let mut reply = [0u8; 7];
    redis.read_exact(&mut reply).expect("read");
    assert_eq!(&reply, b"+PONG\r\n", "the server on the fresh port answers");
    assert!(!server.log().contains("in use"), "{}", server.log());
}

#[tokio::test]
async fn a_server_that_exits_before_it_is_ready_fails_at_once_with_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("redis.log");
    let started = Instant::now();
    let start = tokio::spawn(async move {
        let mut command = Command::new("redis-server");
        command.args(["--no-such-directive", "1"]);
        ServerProcess::start_fixed("redis-server", &log, &mut command, || false).await;
    });
    let panic = start.await.expect_err("start fails").into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("redis-server exited") && message.contains("Bad directive"),
        "{message}"
    );
    // Not after the start-up bound (30 s): as soon as the process is gone.
    assert!(
        started.elapsed() < vibectl_tests::harness::WAIT,
        "{:?}",
        started.elapsed()
    );
}
