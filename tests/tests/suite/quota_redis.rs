//! Token quotas shared through a real `redis-server`: two edge+core pairs
//! with one daily budget of 1,000 tokens and 50 calls fired at once
//! overspend by at most one call; the refusals say `limit-type: token`
//! and `retry-after-ms` until midnight; a crashed core's reservation
//! expires after `reservation_ttl`, also when a real core process is
//! killed (`kill -9`) mid-call; a dead Redis fails open or closed as
//! configured; a restarted Redis is used again from the next call on.

use crate::{
    journey_support::{Home, start_core},
    quota_common::{assert_daily_token_refusal, provider_toml, today_key},
    support::{self, Core, with_header},
};
use std::time::{Duration, Instant};
use tonic::Code;
use vibectl_core::quota::{
    backend::{Line, QuotaBackend},
    redis::RedisQuota,
};
use vibectl_proto::execute_response;
use vibectl_tests::{
    fake_openai::{FakeOpenAi, Script},
    harness::{Stack, WAIT, authed, execute_request, next_chunk},
    redis_server::RedisServer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edge_core_pairs_share_one_daily_budget() {
    let redis = RedisServer::start().await;
    // Each call reserves its input estimate + 150 and uses ~75 tokens.
    let toml = format!(
        r#"
[limits]
backend = "redis"
redis_url = "{}"
redis_key_prefix = "shared:"
[limits.global]
max_tokens_per_day = 1000

[providers.echo]
kind = "echo"
answer_chars = 400

[[models]]
id = "big"
provider = "echo"
max_output_tokens = 150
"#,
        redis.url()
    );
    let a = Stack::builder().config(&toml).start().await;
    let b = Stack::builder().config(&toml).start().await;
    let token = a.token("alice");
    let clients = [a.client().await, b.client().await];
    let calls = (0..50).map(|i| {
        let mut client = clients[i % 2].clone();
        let request = authed(
            execute_request(Some("big"), "count these words please"),
            &token,
        );
        async move {
            tokio::time::timeout(WAIT, client.execute(request))
                .await
                .expect("in time")
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut charged = 0i64;
    let mut largest = 0i64;
    let mut refused = 0;
    for r in results {
        match r {
            Ok(answer) => {
                let Some(execute_response::Result::Success(ok)) = answer.into_inner().result else {
                    panic!("call failed in-band")
                };
                let used = i64::from(ok.metrics.expect("metrics").total_tokens.expect("total"));
                charged += used;
                largest = largest.max(used);
            }
            Err(status) => {
                refused += 1;
                assert_daily_token_refusal(&status);
            }
        }
    }
    assert!(refused > 0, "the budget must run out");
    assert!(
        charged <= 1000 + largest,
        "charged {charged} > 1000 + {largest}"
    );
    // Redis holds exactly what the calls were charged, nothing reserved.
    let backend = RedisQuota::new(&redis.url(), "shared:").expect("redis");
    let deadline = Instant::now() + WAIT;
    loop {
        let counts = backend.counts(&[today_key("alice")]).await.expect("counts");
        if counts[0].reserved == 0 && counts[0].used == u64::try_from(charged).expect("positive") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "settled {counts:?} vs charged {charged}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_crashed_cores_reservation_expires_after_the_ttl() {
    let redis = RedisServer::start().await;
    let backend = RedisQuota::new(&redis.url(), "crash:").expect("redis");
    let line = |amount| Line {
        key: today_key("bob").into(),
        limit: 100,
        amount,
        enforce: true,
    };
    let ttl = Duration::from_millis(800);
    // A core reserves 80, then dies without settling.
    let first = backend
        .reserve("dead-core-call", &[line(80)], ttl)
        .await
        .expect("reserve");
    assert_eq!(first.refused, None);
    let started = Instant::now();
    let held = backend
        .reserve("other", &[line(80)], ttl)
        .await
        .expect("reserve");
    assert_eq!(
        held.refused,
        Some(0),
        "the reservation counts while it lives"
    );
    assert_eq!(held.counts[0].reserved, 80);
    // Within the TTL (plus a bounded margin) it stops counting.
    loop {
        let again = backend
            .reserve("other", &[line(80)], ttl)
            .await
            .expect("reserve");
        if again.refused.is_none() {
            break;
        }
        assert!(
            started.elapsed() < ttl + Duration::from_secs(2),
            "never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() >= ttl - Duration::from_millis(100));
}

#[tokio::test]
async fn a_dead_redis_fails_open_or_closed_as_configured() {
    let mut redis = RedisServer::start().await;
    let core_for = |failure: &str| {
        support::config(&format!(
            "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\non_backend_failure = \"{failure}\"\n\
             [limits.global]\nmax_tokens_per_day = 100000\n",
            redis.url()
        ))
    };
    let open = Core::start(core_for("fail_open")).await;
    let closed = Core::start(core_for("fail_closed")).await;
    redis.kill();
    let request = || {
        with_header(
            tonic::Request::new(support::request(Some("echo"), &[], &["hi"], "r")),
            "x-vibectl-caller",
            "carol",
        )
    };
    tokio::time::timeout(WAIT, open.client().execute(request()))
        .await
        .expect("in time")
        .expect("fail_open lets the call through");
    let status = tokio::time::timeout(WAIT, closed.client().execute(request()))
        .await
        .expect("in time")
        .expect_err("fail_closed refuses");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        !status.message().contains("redis+unix"),
        "{}",
        status.message()
    );
    open.stop().await;
    closed.stop().await;
}

#[tokio::test]
async fn a_restarted_redis_costs_no_call() {
    let mut redis = RedisServer::start().await;
    // Every call goes to Redis (no lease), and a failed step refuses it.
    let core = Core::start(support::config(&format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"restart:\"\n\
         on_backend_failure = \"fail_closed\"\n[limits.global]\nmax_tokens_per_day = 100000\n\
         [quota]\nlease_calls = 0\n",
        redis.url()
    )))
    .await;
    let call = |id: &str| {
        let request = with_header(
            tonic::Request::new(support::request(Some("echo"), &[], &["hi"], id)),
            "x-vibectl-caller",
            "dana",
        );
        let mut client = core.client();
        async move {
            tokio::time::timeout(WAIT, client.execute(request))
                .await
                .expect("in time")
        }
    };
    call("before").await.expect("served");
    // The core's connections now lead to a dead process; the new Redis is
    // empty (no counters, no scripts loaded).
    redis.restart().await;
    for id in ["after-1", "after-2"] {
        call(id).await.expect("served right after the restart");
    }
    let backend = RedisQuota::new(&redis.url(), "restart:").expect("redis");
    let deadline = Instant::now() + WAIT;
    loop {
        let counts = backend.counts(&[today_key("dana")]).await.expect("counts");
        if counts[0].used > 0 && counts[0].reserved == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never settled: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    core.stop().await;
}

#[tokio::test]
async fn a_core_process_killed_mid_call_leaves_no_reservation_past_the_ttl() {
    let redis = RedisServer::start().await;
    // The provider holds the stream after its first chunk: the call is in
    // flight, its reservation open, when the core process is killed.
    let fake = FakeOpenAi::start(Script::text(["a", "b"]).usage(30, 2).gated()).await;
    let home = Home::new();
    let ttl = Duration::from_secs(2);
    home.write_config(&format!(
        r#"
[limits]
backend = "redis"
redis_url = "{redis}"
redis_key_prefix = "killed:"
[limits.global]
max_tokens_per_day = 1000

[quota]
reservation_ttl = "2s"

[ledger]
enabled = false
{provider}"#,
        redis = redis.url(),
        provider = provider_toml("openai", &fake.base_url(), home.path()),
    ));
    let (core, port) = start_core(&home, &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = vibectl_proto::vibectl_llm_proxy_client::VibectlLlmProxyClient::new(channel);
    let req = with_header(
        tonic::Request::new(support::request(Some("m"), &[], &["hello world"], "k")),
        "x-vibectl-caller",
        "kim",
    );
    let mut stream = tokio::time::timeout(WAIT, client.stream_execute(req))
        .await
        .expect("in time")
        .expect("OK")
        .into_inner();
    next_chunk(&mut stream).await;
    let backend = RedisQuota::new(&redis.url(), "killed:").expect("redis");
    let held = backend.counts(&[today_key("kim")]).await.expect("counts");
    assert_eq!(held[0].used, 0);
    assert!(held[0].reserved > 0, "the call holds a reservation");
    // kill -9: no settlement, no shutdown hook.
    core.kill().await;
    let killed = Instant::now();
    loop {
        let counts = backend.counts(&[today_key("kim")]).await.expect("counts");
        if counts[0].reserved == 0 {
            assert_eq!(counts[0].used, 0, "a killed call charges nothing");
            break;
        }
        assert!(
            killed.elapsed() < ttl + Duration::from_secs(3),
            "still reserved {:?} after the 2 s reservation_ttl: {counts:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.release_gate();
}
