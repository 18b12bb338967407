//! Per-replica quota leases over a real `redis-server` (`[quota]
//! lease_calls`): far from the limit a core leases calls' worth of a
//! budget and reserves later calls from it in memory, every use still
//! charged in Redis; near the limit every call goes to Redis, so two cores
//! sharing a budget admit exactly what fits; a core that dies holding a
//! lease loses it after `reservation_ttl` + the lease window; calls
//! served from a lease show in the core's `vibectl_quota_used` gauge and
//! in `quota status`.

use crate::{
    quota_common::{assert_daily_token_refusal, call, provider_toml, today_key},
    support::{self, Core},
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use vibectl_config::Config;
use vibectl_core::{
    ledger::report::Format,
    quota::{
        Caller, QuotaMetrics, Quotas, Reservation,
        backend::{Counts, QuotaBackend},
        lease::LEASE_WINDOW,
        redis::RedisQuota,
    },
    registry::{ModelEntry, Registry},
    usage_cli::{QuotaStatusArgs, quota_status},
};
use vibectl_tests::{
    fake_openai::{FakeOpenAi, Script},
    harness::WAIT,
    redis_server::RedisServer,
};

/// A core's quota engine over `redis` (prefix `prefix`), with a daily
/// token budget of `limit` and leases of `lease_calls` calls.
fn core(redis: &RedisServer, prefix: &str, limit: u64, lease_calls: u32, ttl: &str) -> Arc<Quotas> {
    let config = Config::from_toml(
        &format!(
            "[limits.global]\nmax_tokens_per_day = {limit}\n\
             [quota]\nlease_calls = {lease_calls}\nreservation_ttl = \"{ttl}\"\n"
        ),
        std::path::Path::new("lease.toml"),
    )
    .expect("config");
    let backend = RedisQuota::new(&redis.url(), prefix).expect("redis");
    Arc::new(Quotas::new(
        &config,
        Arc::new(backend),
        QuotaMetrics::default(),
    ))
}

fn echo() -> Arc<ModelEntry> {
    let config = Config::from_toml("", std::path::Path::new("lease.toml")).expect("config");
    Registry::from_config(&config)
        .resolve(Some("echo"))
        .expect("echo")
}

/// What one call of `echo` reserves (its input estimate 20, plus its
/// maximum output).
fn amount(model: &ModelEntry) -> u64 {
    20 + u64::from(
        model
            .max_output_tokens
            .unwrap_or(vibectl_config::defaults::MAX_OUTPUT_TOKENS),
    )
}

async fn reserve(
    q: &Arc<Quotas>,
    sub: &str,
    model: &ModelEntry,
) -> Result<Reservation, tonic::Status> {
    let caller = Caller { sub, kid: None };
    let r = tokio::time::timeout(WAIT, q.reserve(caller, model, 20))
        .await
        .expect("in time")?;
    Ok(r.expect("a budget applies"))
}

/// Waits until `sub`'s counts in Redis satisfy `done`, at most `bound`.
async fn until(
    backend: &dyn QuotaBackend,
    sub: &str,
    bound: Duration,
    done: impl Fn(Counts) -> bool,
) {
    let started = Instant::now();
    loop {
        let got = backend.counts(&[today_key(sub)]).await.expect("counts")[0];
        if done(got) {
            return;
        }
        assert!(started.elapsed() < bound, "still {got:?} after {bound:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (bounded) until `sub`'s counts in Redis are `used`, `reserved`.
async fn settles_to(backend: &dyn QuotaBackend, sub: &str, used: u64, reserved: u64) {
    until(backend, sub, WAIT, |c| c == Counts { used, reserved }).await;
}

#[tokio::test]
async fn a_lease_is_carved_then_serves_calls_locally_and_every_use_is_charged() {
    let redis = RedisServer::start().await;
    let q = core(&redis, "lease:", 1_000_000_000, 4, "10m");
    let model = echo();
    let a = amount(&model);
    let key = today_key("ann");
    // The first call goes to Redis and carves a lease of 4 more calls.
    let first = reserve(&q, "ann", &model).await.expect("fits");
    assert!(!first.is_local());
    assert_eq!(q.leases().free(&key), Some(4 * a));
    let backend = q.backend().clone();
    settles_to(backend.as_ref(), "ann", 0, 5 * a).await;
    // The next 4 are taken from it in memory: Redis sees no reservation.
    let mut held = Vec::new();
    for _ in 0..4 {
        let r = reserve(&q, "ann", &model).await.expect("fits");
        assert!(r.is_local());
        held.push(r);
    }
    assert_eq!(q.leases().free(&key), Some(0));
    settles_to(backend.as_ref(), "ann", 0, 5 * a).await;
    // Each settlement charges its use and shrinks the lease by its part.
    first.settle(100, 0);
    for r in held {
        r.settle(10, 0);
    }
    settles_to(backend.as_ref(), "ann", 140, 0).await;
    // The lease is used up: the next call goes to Redis (and leases anew).
    let sixth = reserve(&q, "ann", &model).await.expect("fits");
    assert!(!sixth.is_local());
    sixth.settle(1, 0);
    // At shutdown the lease's unused part goes back: nothing stays reserved.
    q.give_back_leases(true).await;
    settles_to(backend.as_ref(), "ann", 141, 0).await;
    assert_eq!(q.leases().free(&key), None);
}

#[tokio::test]
async fn near_the_limit_two_cores_admit_exactly_what_fits() {
    let redis = RedisServer::start().await;
    let model = echo();
    let a = amount(&model);
    // Room for exactly 60 calls; leases of 2 more calls are carved only
    // while 8 more leases' worth stay free after them.
    let limit = 60 * a;
    let cores = [
        core(&redis, "near:", limit, 2, "10m"),
        core(&redis, "near:", limit, 2, "10m"),
    ];
    let backend = cores[0].backend().clone();
    let (mut admitted, mut leased, mut last_leased) = (0u64, 0, 0);
    let refusal = loop {
        let i = usize::try_from(admitted % 2).expect("index");
        let r = match reserve(&cores[i], "bo", &model).await {
            Ok(r) => r,
            Err(status) => break status,
        };
        admitted += 1;
        if r.is_local() {
            leased += 1;
            last_leased = admitted;
        }
        // Each call uses all it reserved, and is settled before the next.
        r.settle(a, 0);
        until(backend.as_ref(), "bo", WAIT, |c| c.used == admitted * a).await;
        assert!(admitted <= 60, "admitted more than the budget holds");
    };
    assert_eq!(admitted, 60, "exactly what fits is admitted");
    assert_daily_token_refusal(&refusal);
    assert!(leased > 0, "far from the limit the cores use leases");
    // No lease is carved once fewer than 9 leases' worth (18 calls) would
    // stay free: the last calls all went to Redis.
    assert!(last_leased <= 48, "a lease served call {last_leased} of 60");
    for q in &cores {
        assert_eq!(q.leases().free(&today_key("bo")), None);
    }
    settles_to(backend.as_ref(), "bo", limit, 0).await;
}

#[tokio::test]
async fn a_dead_cores_lease_expires_after_the_ttl_and_the_window() {
    let redis = RedisServer::start().await;
    let model = echo();
    let a = amount(&model);
    let dead = core(&redis, "dead:", 1_000_000_000, 4, "1s");
    let r = reserve(&dead, "cy", &model).await.expect("fits");
    assert_eq!(dead.leases().free(&today_key("cy")), Some(4 * a));
    // The core dies: no settlement, no lease given back.
    let died = Instant::now();
    std::mem::forget(r);
    drop(dead);
    let other = core(&redis, "dead:", 1_000_000_000, 4, "1s");
    let backend = other.backend().clone();
    assert_eq!(
        backend.counts(&[today_key("cy")]).await.expect("counts")[0].reserved,
        5 * a,
        "the lease counts while it lives"
    );
    // After reservation_ttl (1 s) + the lease window it no longer counts.
    let bound = Duration::from_secs(1) + LEASE_WINDOW;
    until(
        backend.as_ref(),
        "cy",
        bound + Duration::from_secs(2),
        |c| c == Counts::default(),
    )
    .await;
    assert!(
        died.elapsed() >= bound - Duration::from_millis(200),
        "expired early: {:?}",
        died.elapsed()
    );
}

/// Redis' count of `EVALSHA` commands so far.
async fn evalsha_calls(redis: &RedisServer) -> u64 {
    let mut conn = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn calls_served_from_a_lease_show_in_the_used_gauge_and_quota_status() {
    let redis = RedisServer::start().await;
    // Each call is charged the provider's 30 + 2 tokens.
    let fake = FakeOpenAi::start(Script::text(["a", "b"]).usage(30, 2)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"gauge:\"\n\
         [limits.global]\nmax_tokens_per_day = 1000000\n[ledger]\nenabled = false\n{}",
        redis.url(),
        provider_toml("openai", &fake.base_url(), dir.path())
    );
    let core = Core::start_with_metrics(support::config(&text)).await;
    let before = evalsha_calls(&redis).await;
    const CALLS: u64 = 10;
    for i in 0..CALLS {
        call(&core, "gail", &format!("g-{i}")).await.expect("fits");
    }
    let want = (32 * CALLS) as f64;
    // The gauge counts each settled call (bounded wait: settlements run
    // after the answer).
    let gauge = || async {
        support::sample(
            &core.scrape().await,
            "vibectl_quota_used",
            &[("owner", "gail"), ("budget", "max_tokens_per_day")],
        )
    };
    let started = Instant::now();
    while gauge().await != Some(want) {
        assert!(
            started.elapsed() < WAIT,
            "gauge {:?}, want {want}",
            gauge().await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The first call carved a lease (default lease_calls = 16) and the
    // others were served from it: one reservation step in Redis, and a
    // settlement per call.
    let steps = evalsha_calls(&redis).await - before;
    assert!(
        steps < 2 * CALLS,
        "{steps} EVALSHA for {CALLS} calls: no lease served"
    );
    // `quota status` (another process, reading Redis) shows the same use;
    // the lease's unused part counts as reserved until it goes back.
    let args = QuotaStatusArgs {
        config: None,
        sub: Some("gail".into()),
        format: Format::Csv,
    };
    let status = quota_status(&support::config(&text), &args)
        .await
        .expect("status");
    let row = status
        .lines()
        .find(|l| l.contains("max_tokens_per_day"))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(row.contains(&format!(",{},", 32 * CALLS)), "{status}");
    core.stop().await;
}
