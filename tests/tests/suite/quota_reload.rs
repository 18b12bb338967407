//! Budgets hot-reloaded from the core's config file (memory backend):
//! a lowered budget refuses the next call, and a budget the reload adds
//! counts the day's calls made before it (restored from the ledger).

use crate::{
    quota_common::call,
    quota_memory::{cfg_text, remaining, rows},
    support::{Core, WAIT},
};
use std::time::{Duration, Instant};
use tonic::Code;
use vibectl_tests::fake_openai::{FakeOpenAi, Script};

#[tokio::test]
async fn budgets_are_hot_reloaded_from_the_config_file() {
    let fake = FakeOpenAi::start(Script::text(["a", "b"]).usage(30, 2)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("core.toml");
    let write = |limits: &str| {
        let text = cfg_text("openai", &fake.base_url(), dir.path(), limits)
            .replace("[ledger]", "[ledger]\nenabled = false");
        std::fs::write(&path, text).expect("write config");
    };
    write("[limits.global]\nmax_tokens_per_day = 1000\n");
    let config = vibectl_config::Config::load(Some(&path)).expect("config");
    let core = Core::start(config).await;
    call(&core, "frank", "before").await.expect("fits 1000");
    // The operator lowers the budget below what one call reserves.
    write("[limits.global]\nmax_tokens_per_day = 10\n");
    let deadline = Instant::now() + WAIT;
    loop {
        match call(&core, "frank", "after").await {
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                break;
            }
            Ok(_) => assert!(Instant::now() < deadline, "never reloaded"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    core.stop().await;
}

#[tokio::test]
async fn a_budget_added_by_a_reload_counts_the_days_earlier_calls() {
    // Each call is charged the provider's 30 + 2 = 32 tokens and reserves
    // 2 + 20 = 22.
    let fake = FakeOpenAi::start(Script::text(["a", "b"]).usage(30, 2)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("core.toml");
    let text = |limits: &str| cfg_text("openai", &fake.base_url(), dir.path(), limits);
    let write = |limits: &str| std::fs::write(&path, text(limits)).expect("write config");
    write("");
    let config = vibectl_config::Config::load(Some(&path)).expect("config");
    let core = Core::start(config).await;
    // No budget yet: three calls, 96 tokens, in the ledger only.
    for i in 0..3 {
        call(&core, "gina", &format!("free-{i}"))
            .await
            .expect("no budget");
    }
    assert_eq!(remaining(&core, "gina").await, None, "no budget in force");
    let deadline = Instant::now() + WAIT;
    while rows(&text("")).await.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the calls never reached the ledger"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The operator adds a daily budget of 100: gina has 4 left, not 100.
    write("[limits.global]\nmax_tokens_per_day = 100\n");
    let deadline = Instant::now() + WAIT;
    let left = loop {
        if let Some(left) = remaining(&core, "gina").await {
            break left;
        }
        assert!(Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(left.starts_with("max_tokens_per_day=4;"), "{left}");
    let refused = call(&core, "gina", "over")
        .await
        .expect_err("96 + 22 > 100");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("used 96"),
        "{}",
        refused.message()
    );
    core.stop().await;
}
