//! The usage ledger in a real PostgreSQL (Debian's `postgresql`, started
//! by the test on a loopback port as a non-root user): 10,000 calls across
//! a graceful restart with no row lost and `usage` equal to the calls'
//! sums; the URL read from a file; an unreachable database stops the start
//! with an error naming the key, never the password.

use crate::ledger_sqlite::ten_thousand_calls;
use std::sync::Arc;
use vibectl_core::CoreListener;
use vibectl_tests::postgres::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_across_a_graceful_restart_lose_no_row() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = dir.path().join("ledger-url");
    std::fs::write(&url_file, pg.url()).expect("write url");
    ten_thousand_calls(&format!(
        "[ledger]\nurl_file = \"{}\"\n",
        url_file.display()
    ))
    .await;
}

#[tokio::test]
async fn an_unreachable_database_stops_the_start_naming_the_key() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let text =
        format!("[ledger]\nurl = \"postgres://ledger:hunter2-secret@127.0.0.1:{port}/usage\"\n");
    let config = vibectl_config::Config::from_toml(&text, std::path::Path::new("core.toml"))
        .expect("config");
    let listener = CoreListener::bind("127.0.0.1:0").await.expect("bind");
    let started = std::time::Instant::now();
    let error = vibectl_core::serve(listener, Arc::new(config), Default::default())
        .await
        .expect_err("no database");
    let message = error.to_string();
    assert!(
        message.contains("ledger.url") && message.contains("PostgreSQL at 127.0.0.1"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
