//! The edge's `/metrics` on its admin listener, scraped after real calls
//! over TLS: every metric the edge exports, with the values the calls must
//! have produced — refusals counted (the metrics layer sits outside auth
//! and limits), subjects past `max_subjects` collapsed into `other`, the
//! TLS handshake failures and the served certificate's expiry.

use clap::Parser;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Request};
use vibectl_proto::{GetServerInfoRequest, StreamChunk};
use vibectl_tests::{
    fake_openai::{FakeOpenAi, Script},
    harness::{Stack, WAIT, authed, execute_request},
};

/// The value of the sample `series` (name and labels exactly as rendered),
/// or `None` when it is absent.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn must(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

async fn scrape(stack: &Stack) -> String {
    let (status, body) = stack.admin_get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_scrape_after_calls_shows_every_edge_metric() {
    let fake = FakeOpenAi::start(Script::text(["held", "open"]).gated()).await;
    let key_dir = tempfile::tempdir().expect("tempdir");
    let key_file = key_dir.path().join("key");
    std::fs::write(&key_file, "sk-metrics\n").expect("key");
    let toml = format!(
        "[metrics]\nenabled = true\ncore_listen = \"127.0.0.1:0\"\nmax_subjects = 3\n\
         [limits.per_token.alice]\nmax_requests_per_minute = 60\nburst = 2\n\
         [limits.per_token.carol]\nmax_input_length = 10\n\
         [providers.echo]\nkind = \"echo\"\n\
         [providers.openai]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_file = \"{}\"\n\
         [[models]]\nid = \"echo\"\nprovider = \"echo\"\n\
         [[models]]\nid = \"gpt-4o-mini\"\nprovider = \"openai\"\n",
        fake.base_url(),
        key_file.display()
    );
    let stack = Stack::builder().config(&toml).start().await;
    let mut client = stack.client().await;
    let execute =
        |sub: &str, text: &str| authed(execute_request(Some("echo"), text), &stack.token(sub));

    // alice: two pass, the third is refused by her rate (with HSTS: the
    // refusal went through the HSTS layer).
    for _ in 0..2 {
        client.execute(execute("alice", "hi")).await.expect("OK");
    }
    let refused = client
        .execute(execute("alice", "hi"))
        .await
        .expect_err("rpm");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused
            .metadata()
            .get("strict-transport-security")
            .is_some()
    );
    // Unauthenticated: counted as `anonymous`.
    let anonymous = client
        .get_server_info(Request::new(GetServerInfoRequest {}))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    // carol: refused by the core for her input length.
    let long = client
        .execute(execute("carol", "far more than ten characters"))
        .await
        .expect_err("input_length");
    assert_eq!(long.code(), Code::ResourceExhausted);
    // bob holds a stream open at the provider.
    let mut bob = client
        .stream_execute(authed(
            execute_request(Some("gpt-4o-mini"), "stream"),
            &stack.token("bob"),
        ))
        .await
        .expect("OK")
        .into_inner();
    let first: StreamChunk = tokio::time::timeout(WAIT, bob.next())
        .await
        .expect("in time")
        .expect("chunk")
        .expect("ok");
    assert!(first.chunk_type.is_some());
    // dave and erin: past max_subjects = 3 (alice, carol, bob).
    for sub in ["dave", "erin"] {
        client.execute(execute(sub, "hi")).await.expect("OK");
    }
    // A failed TLS handshake: plaintext on the TLS port.
    let mut tcp = tokio::net::TcpStream::connect(stack.edge_addr)
        .await
        .expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut sink)).await;

    let text = scrape(&stack).await;
    let requests = |code: &str, method: &str, sub: &str| {
        must(
            &text,
            &format!(r#"vibectl_requests_total{{code="{code}",method="{method}",sub="{sub}"}}"#),
        )
    };
    assert_eq!(requests("OK", "Execute", "alice"), 2.0);
    assert_eq!(requests("RESOURCE_EXHAUSTED", "Execute", "alice"), 1.0);
    assert_eq!(
        requests("UNAUTHENTICATED", "GetServerInfo", "anonymous"),
        1.0
    );
    assert_eq!(requests("RESOURCE_EXHAUSTED", "Execute", "carol"), 1.0);
    assert_eq!(requests("OK", "Execute", "other"), 2.0, "dave and erin");
    for sub in ["dave", "erin"] {
        assert!(
            !text.contains(&format!("sub=\"{sub}\"")),
            "{sub} is `other`"
        );
    }
    assert_eq!(
        must(
            &text,
            r#"vibectl_rate_limited_total{limit_type="rpm",sub="alice"}"#
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            r#"vibectl_rate_limited_total{limit_type="input_length",sub="carol"}"#
        ),
        1.0
    );
    assert_eq!(
        must(&text, r#"vibectl_concurrent_in_flight{sub="bob"}"#),
        1.0,
        "bob's stream is open"
    );
    assert_eq!(
        must(
            &text,
            r#"vibectl_request_duration_seconds_count{method="Execute"}"#
        ),
        6.0
    );
    assert!(
        must(
            &text,
            r#"vibectl_time_to_first_chunk_seconds_count{method="StreamExecute"}"#
        ) >= 1.0
    );
    assert_eq!(
        must(
            &text,
            r#"vibectl_limits_backend_errors_total{backend="memory"}"#
        ),
        0.0
    );
    assert!(
        must(
            &text,
            r#"vibectl_tls_handshake_failures_total{reason="other"}"#
        ) >= 1.0
    );
    let expiry = must(&text, "vibectl_certificate_expiry_seconds");
    let day = 86_400.0;
    assert!(
        (364.0 * day..=366.0 * day).contains(&expiry),
        "a fresh 365-day certificate: {expiry}"
    );
    assert!(!text.contains("otel_scope"), "no scope labels");

    // bob's stream ends: in flight goes back to 0, his request is counted.
    fake.release_gate();
    let rest: Vec<_> = tokio::time::timeout(WAIT, bob.collect::<Vec<_>>())
        .await
        .expect("ends");
    assert!(rest.iter().all(Result::is_ok));
    let text = scrape(&stack).await;
    assert_eq!(
        must(&text, r#"vibectl_concurrent_in_flight{sub="bob"}"#),
        0.0
    );
    assert_eq!(
        must(
            &text,
            r#"vibectl_requests_total{code="OK",method="StreamExecute",sub="bob"}"#
        ),
        1.0
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn without_metrics_there_is_no_endpoint_and_no_layer() {
    let stack = Stack::start().await;
    let mut client = stack.client().await;
    client
        .get_server_info(authed(GetServerInfoRequest {}, &stack.token("alice")))
        .await
        .expect("OK");
    let (status, body) = stack.admin_get("/metrics").await;
    assert_eq!(status, 404);
    assert!(body.contains("--enable-metrics"), "{body}");
    stack.shutdown().await;
}

#[test]
fn serve_flags_turn_metrics_on_and_move_the_admin_port() {
    let cli = vibectl_edge::cli::Cli::try_parse_from([
        "vibectl-edge",
        "serve",
        "--enable-metrics",
        "--metrics-port",
        "19095",
    ])
    .expect("flags parse");
    let vibectl_edge::cli::Command::Serve(args) = cli.command else {
        panic!("serve")
    };
    let mut config = vibectl_config::Config::default();
    args.apply(&mut config);
    assert!(config.metrics.enabled);
    assert_eq!(config.edge.admin_listen.port(), 19095);
    assert!(
        config.edge.admin_listen.ip().is_loopback(),
        "still loopback"
    );
}
