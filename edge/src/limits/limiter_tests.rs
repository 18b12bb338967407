//! Tests of [`super::Limiter`]: the order of checks, the refusals'
//! wording and metadata, the total limit, snapshot swaps, backend failure.

use super::*;

fn config(toml: &str) -> LimitsConfig {
    let text = format!("[limits]\n{toml}");
    vibectl_config::Config::from_toml(&text, std::path::Path::new("t.toml"))
        .expect("valid")
        .limits
}

/// The limiter of `toml`, over the Redis it names (if any).
fn limiter(toml: &str) -> Limiter {
    let config = config(toml);
    let redis = crate::shared_redis::SharedRedis::from_limits(&config).expect("redis url");
    Limiter::new(&config, redis, Metrics::disabled()).expect("limiter")
}

fn limited(admit: Admit) -> (LimitType, Duration, String) {
    match admit {
        Admit::Refused(Refusal::Limited {
            limit,
            retry_after,
            message,
        }) => (limit, retry_after, message),
        other => panic!("refusal expected: {other:?}"),
    }
}

#[tokio::test]
async fn rpm_refusal_says_which_limit_whose_and_when() {
    let limiter = limiter("[limits.global]\nmax_requests_per_minute = 60\nburst = 2");
    for _ in 0..2 {
        assert!(matches!(
            limiter.admit("alice", None, CallKind::Info).await,
            Admit::Allowed(_)
        ));
    }
    let (limit, retry, message) = limited(limiter.admit("alice", None, CallKind::Call).await);
    assert_eq!(limit, LimitType::Rpm);
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1));
    assert!(
        message.starts_with("rate limit: 60 requests per minute for token `alice`; retry in "),
        "{message}"
    );
    assert!(matches!(
        limiter.admit("bob", None, CallKind::Call).await,
        Admit::Allowed(_)
    ));
}

#[tokio::test]
async fn concurrency_refusal_spends_no_rate_and_a_dropped_permit_frees_the_slot() {
    let limiter = limiter(
        "[limits.global]\nmax_concurrent_requests = 1\nmax_requests_per_minute = 60\nburst = 3",
    );
    let Admit::Allowed(first) = limiter.admit("alice", None, CallKind::Call).await else {
        panic!("first call admitted")
    };
    assert_eq!(
        first.limits.max_concurrent_requests.map(|n| n.get()),
        Some(1)
    );
    for _ in 0..5 {
        let (limit, retry, message) = limited(limiter.admit("alice", None, CallKind::Call).await);
        assert_eq!(limit, LimitType::Concurrency);
        assert!(retry >= MIN_SLOT_RETRY && retry <= DEFAULT_CALL_ESTIMATE);
        assert!(message.contains("for token `alice`"), "{message}");
    }
    // GetServerInfo takes no slot (it spends the second of the burst).
    assert!(matches!(
        limiter.admit("alice", None, CallKind::Info).await,
        Admit::Allowed(_)
    ));
    drop(first);
    // The third of the burst is still there: the five refusals spent
    // no rate.
    let Admit::Allowed(_third) = limiter.admit("alice", None, CallKind::Call).await else {
        panic!("slot freed and rate left")
    };
}

#[tokio::test]
async fn the_total_limit_spans_tokens() {
    let limiter = limiter("max_concurrent_total = 2");
    let a = limiter.admit("a", None, CallKind::Call).await;
    let b = limiter.admit("b", None, CallKind::Call).await;
    assert!(matches!((&a, &b), (Admit::Allowed(_), Admit::Allowed(_))));
    let (limit, _, message) = limited(limiter.admit("c", None, CallKind::Call).await);
    assert_eq!(limit, LimitType::Concurrency);
    assert!(message.contains("across all tokens"), "{message}");
}

#[tokio::test]
async fn a_replaced_snapshot_applies_to_the_next_call() {
    let limiter = limiter("[limits.global]\nmax_requests_per_minute = 1\nburst = 1");
    assert!(matches!(
        limiter.admit("a", None, CallKind::Call).await,
        Admit::Allowed(_)
    ));
    assert!(matches!(
        limiter.admit("a", None, CallKind::Call).await,
        Admit::Refused(_)
    ));
    let old = limiter.replace(config(
        "[limits.per_token.a]\nmax_requests_per_minute = 600\nburst = 5",
    ));
    assert_eq!(old.global.max_requests_per_minute.map(|n| n.get()), Some(1));
    assert!(matches!(
        limiter.admit("a", None, CallKind::Call).await,
        Admit::Allowed(_)
    ));
}

#[tokio::test]
async fn a_dead_redis_fails_open_or_closed_as_configured() {
    let base = "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:1/0\"\n[limits.global]\nmax_requests_per_minute = 60\n";
    let open = limiter(base);
    assert!(matches!(
        open.admit("a", None, CallKind::Call).await,
        Admit::Allowed(_)
    ));
    let closed = limiter(&format!("on_backend_failure = \"fail_closed\"\n{base}"));
    assert!(matches!(
        closed.admit("a", None, CallKind::Call).await,
        Admit::Refused(Refusal::BackendUnavailable)
    ));
}

#[test]
fn retry_is_rounded_up_to_a_millisecond() {
    assert_eq!(retry_ms(Duration::from_micros(1)), 1);
    assert_eq!(retry_ms(Duration::from_micros(1500)), 2);
    assert_eq!(retry_ms(Duration::ZERO), 1);
}
