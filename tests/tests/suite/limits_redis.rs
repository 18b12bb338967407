//! Limits shared through a real `redis-server` (on a Unix socket in a
//! temporary directory: no TCP port to race for): the Redis backend's GCRA
//! and leased concurrency slots shared by two replicas, a crashed replica's
//! lease expiring, and end to end two edges sharing one RPM budget; killing
//! Redis then gives each edge its configured fail-open or fail-closed
//! behaviour and counts `vibectl_limits_backend_errors_total`.
//!
//! Needs `redis-server` (Debian package `redis-server`; `scripts/test`
//! installs it).

use std::{
    num::NonZeroU32,
    time::{Duration, Instant},
};
use tonic::Code;
use vibectl_edge::limits::{Admission, RateQuota, RedisBackend, SlotOutcome};
use vibectl_tests::{
    harness::{Stack, WAIT, authed, execute_request},
    redis_server::RedisServer as Redis,
};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

/// Allowed calls of a GCRA from a full bucket within `elapsed`.
fn bucket(burst: usize, interval: Duration, elapsed: Duration) -> usize {
    burst + usize::try_from(elapsed.as_nanos() / interval.as_nanos()).expect("small")
}

#[tokio::test]
async fn two_replicas_share_one_rate_budget() {
    let redis = Redis::start().await;
    let a = RedisBackend::connect(&redis.url(), "t1:").await.expect("a");
    let b = RedisBackend::connect(&redis.url(), "t1:").await.expect("b");
    let quota = RateQuota {
        per_minute: nz(60),
        burst: nz(5),
    };
    let start = Instant::now();
    let mut allowed = 0;
    for i in 0..20 {
        let backend = if i % 2 == 0 { &a } else { &b };
        if backend.check_rate("alice", quota).await.expect("redis") == Admission::Allowed {
            allowed += 1;
        }
    }
    let most = bucket(5, Duration::from_secs(1), start.elapsed());
    assert!(
        (5..=most).contains(&allowed),
        "allowed {allowed} of 5..={most}"
    );
    match a.check_rate("alice", quota).await.expect("redis") {
        Admission::Denied { retry_after } => {
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
        }
        Admission::Allowed => panic!("denied expected"),
    }
    assert_eq!(
        b.check_rate("bob", quota).await.expect("redis"),
        Admission::Allowed,
        "another key has its own budget"
    );
}

#[tokio::test]
async fn concurrency_slots_are_shared_and_freed() {
    let redis = Redis::start().await;
    let a = RedisBackend::connect(&redis.url(), "t2:").await.expect("a");
    let b = RedisBackend::connect(&redis.url(), "t2:").await.expect("b");
    let g1 = a.acquire_slot("k", nz(2)).await.expect("redis");
    let g2 = b.acquire_slot("k", nz(2)).await.expect("redis");
    assert!(matches!(g1, SlotOutcome::Acquired(_)) && matches!(g2, SlotOutcome::Acquired(_)));
    match a.acquire_slot("k", nz(2)).await.expect("redis") {
        SlotOutcome::Full { oldest_age } => assert!(oldest_age < WAIT),
        SlotOutcome::Acquired(_) => panic!("full expected"),
    }
    drop(g1);
    // The release is sent in the background: wait for it, bounded.
    let deadline = Instant::now() + WAIT;
    loop {
        if let SlotOutcome::Acquired(_) = b.acquire_slot("k", nz(2)).await.expect("redis") {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_lease_of_a_crashed_replica_expires() {
    let redis = Redis::start().await;
    // A replica that takes a slot and then crashes: its runtime (and the
    // lease refresher) dies, and the slot is never released.
    let url = redis.url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            let a = RedisBackend::connect(&url, "t3:")
                .await
                .expect("a")
                .with_lease(Duration::from_millis(300));
            match a.acquire_slot("k", nz(1)).await.expect("redis") {
                SlotOutcome::Acquired(g) => std::mem::forget(g),
                SlotOutcome::Full { .. } => panic!("slot expected"),
            }
        });
    })
    .join()
    .expect("crashed replica thread");
    let b = RedisBackend::connect(&redis.url(), "t3:").await.expect("b");
    assert!(matches!(
        b.acquire_slot("k", nz(1)).await.expect("redis"),
        SlotOutcome::Full { .. }
    ));
    let deadline = Instant::now() + WAIT;
    loop {
        if let SlotOutcome::Acquired(_) = b.acquire_slot("k", nz(1)).await.expect("redis") {
            break;
        }
        assert!(Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_held_lease_is_refreshed_past_its_length() {
    let redis = Redis::start().await;
    let a = RedisBackend::connect(&redis.url(), "t5:")
        .await
        .expect("a")
        .with_lease(Duration::from_millis(300));
    let held = a.acquire_slot("k", nz(1)).await.expect("redis");
    assert!(matches!(held, SlotOutcome::Acquired(_)));
    // Three lease lengths later the live holder still has it.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(matches!(
        a.acquire_slot("k", nz(1)).await.expect("redis"),
        SlotOutcome::Full { .. }
    ));
}

#[tokio::test]
async fn a_dead_redis_is_an_error_not_a_hang() {
    let mut redis = Redis::start().await;
    let a = RedisBackend::connect(&redis.url(), "t4:").await.expect("a");
    redis.kill();
    let start = Instant::now();
    let quota = RateQuota {
        per_minute: nz(60),
        burst: nz(5),
    };
    let error = a.check_rate("k", quota).await.expect_err("redis is gone");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(!error.to_string().contains(&redis.url()), "{error}");
}

async fn redis_stack(redis: &Redis, prefix: &str, failure: &str) -> Stack {
    let toml = format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"{prefix}\"\n\
         on_backend_failure = \"{failure}\"\n[limits.global]\nmax_requests_per_minute = 60\n\
         [metrics]\nenabled = true\ncore_listen = \"127.0.0.1:0\"\n",
        redis.url()
    );
    Stack::builder().config(&toml).start().await
}

fn backend_errors(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"vibectl_limits_backend_errors_total{backend="redis"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no redis backend errors in\n{metrics}"))
}

#[tokio::test]
async fn two_edges_share_one_budget_then_fail_open_or_closed_without_redis() {
    let mut redis = Redis::start().await;
    let open = redis_stack(&redis, "e2e:", "fail_open").await;
    let closed = redis_stack(&redis, "e2e:", "fail_closed").await;
    let mut clients = [open.client().await, closed.client().await];
    let token = open.token("alice");

    // 60/min, burst 60 (the default: a minute's worth), counted once for
    // both edges.
    let start = Instant::now();
    let mut passed = 0;
    for i in 0..80 {
        let call = clients[i % 2].execute(authed(execute_request(Some("echo"), "hi"), &token));
        match tokio::time::timeout(WAIT, call).await.expect("in time") {
            Ok(_) => passed += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(
                    status.metadata().get("limit-type").map(|v| v.to_str().ok()),
                    Some(Some("rpm"))
                );
            }
        }
    }
    let most = bucket(60, Duration::from_secs(1), start.elapsed());
    assert!(
        (60..=most).contains(&passed),
        "passed {passed} of 60..={most}"
    );
    for stack in [&open, &closed] {
        assert_eq!(backend_errors(&stack.admin_get("/metrics").await.1), 0.0);
    }

    redis.kill();
    let request = || authed(execute_request(Some("echo"), "hi"), &token);
    for _ in 0..3 {
        tokio::time::timeout(WAIT, clients[0].execute(request()))
            .await
            .expect("in time")
            .expect("fail_open: the call passes");
        let status = tokio::time::timeout(WAIT, clients[1].execute(request()))
            .await
            .expect("in time")
            .expect_err("fail_closed: refused");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("rate-limit backend unavailable"),
            "{}",
            status.message()
        );
    }
    for stack in [&open, &closed] {
        let errors = backend_errors(&stack.admin_get("/metrics").await.1);
        assert_eq!(errors, 3.0, "one per call");
    }
    open.shutdown().await;
    closed.shutdown().await;
}
