//! Token quotas shared through a real `redis-server`: two edge+core pairs
//! with one daily budget of 1,000 tokens and 50 calls fired at once
//! overspend by at most one call; the refusals say `limit-type: token`
//! and `retry-after-ms` until midnight; a crashed core's reservation
//! expires after `reservation_ttl`; a dead Redis fails open or closed as
//! configured.

use crate::support::{self, Core, with_header};
use std::time::{Duration, Instant};
use tonic::Code;
use vibectl_core::quota::{
    backend::{Line, QuotaBackend},
    policy::{Period, Unit, Window, counter_key},
    redis::RedisQuota,
};
use vibectl_proto::execute_response;
use vibectl_tests::{
    harness::{Stack, WAIT, authed, execute_request},
    redis_server::RedisServer,
};

fn today_key(sub: &str) -> String {
    let window = Window::of(
        Period::Day,
        jiff::Timestamp::now(),
        &jiff::tz::TimeZone::UTC,
    );
    counter_key(
        &format!("sub:{sub}"),
        Unit::Tokens,
        Period::Day,
        &window.label,
    )
}

fn ms_to_midnight() -> i64 {
    let now = jiff::Timestamp::now();
    Window::of(Period::Day, now, &jiff::tz::TimeZone::UTC)
        .resets
        .as_millisecond()
        - now.as_millisecond()
}

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
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                let md = status.metadata();
                assert_eq!(
                    md.get("limit-type").and_then(|v| v.to_str().ok()),
                    Some("token")
                );
                let retry: i64 = md
                    .get("retry-after-ms")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .expect("retry-after-ms");
                assert!(
                    (retry - ms_to_midnight()).abs() < 5_000,
                    "retry-after-ms {retry}"
                );
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
        key: today_key("bob"),
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
            "x-vibectl-sub",
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
