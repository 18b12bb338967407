//! What an operator reads from the token and quota commands, run as the
//! README runs them (the real binaries, a fresh `HOME`): times as RFC 3339
//! stamps, lifetimes in days, counts in words, and a `quota status` that
//! says how to set a budget rather than printing an empty table, and
//! aligns its columns when there are budgets; `usage` before any core ran
//! says there is no ledger yet instead of creating an empty one.

use crate::journey_support::{Home, PATIENCE, assert_ok, binary, text};
use std::process::Output;

/// `vibectl-core ARGS` in `home`, to completion.
async fn core_cli(home: &Home, args: &[&str]) -> Output {
    let mut command = home.command(&binary("vibectl-core"));
    command.args(args).stdin(std::process::Stdio::null());
    tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("finished in time")
        .expect("ran")
}

/// The value after `label` on its line of `out`.
fn after<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` in:\n{out}"))
        .trim()
}

#[tokio::test]
async fn token_commands_show_stamps_days_and_counts() {
    let home = Home::new();
    // Two years is past the default jwt.max_lifetime of one: both in days.
    let long = home
        .edge_cli(&["generate-token", "dave", "--expires-in", "2y"])
        .await;
    assert!(!long.status.success());
    assert!(
        text(&long).contains("a lifetime of 730 days exceeds jwt.max_lifetime (365 days)"),
        "{}",
        text(&long)
    );

    let token = home.token("erin", &[]).await;
    let file = token.to_str().expect("utf-8");
    let inspect = home
        .edge_cli(&["token", "inspect", "--token-file", file])
        .await;
    assert_ok(&inspect, "token inspect");
    let inspected = text(&inspect);
    let exp = after(&inspected, "exp:");
    humantime::parse_rfc3339(exp).unwrap_or_else(|e| panic!("`{exp}`: {e}"));

    let revoke = home.edge_cli(&["revoke-token", "--token-file", file]).await;
    assert_ok(&revoke, "revoke-token");
    let revoked = text(&revoke);
    assert!(
        revoked.contains(&format!("(sub `erin`) until {exp}")),
        "the token's own expiry, as inspect shows it:\n{revoked}"
    );
    assert!(revoked.contains("(1 revocation;"), "{revoked}");
}

#[tokio::test]
async fn quota_status_says_how_to_set_a_budget_then_aligns_its_table() {
    let home = Home::new();
    // Before any core ran: `usage` says there is no ledger yet, and
    // creates none (nor the state directory).
    let early = core_cli(&home, &["usage"]).await;
    assert!(!early.status.success());
    let said = text(&early);
    assert!(
        said.contains("no usage ledger at") && said.contains("`vibectl-core serve` creates it"),
        "{said}"
    );
    assert!(!home.state_dir().exists(), "a report creates nothing");
    let none = core_cli(&home, &["quota", "status"]).await;
    assert_ok(&none, "quota status");
    let said = text(&none);
    assert!(
        said.starts_with("no quota budget applies: set max_tokens_per_day"),
        "{said}"
    );
    assert!(said.contains("[limits.global]"), "{said}");

    home.write_config(
        "[limits.global]\nmax_tokens_per_day = 20000\n\
         [limits.per_token.\"a-much-longer-subject\"]\nmax_tokens_per_day = 5000\n",
    );
    let table = core_cli(&home, &["quota", "status"]).await;
    assert_ok(&table, "quota status");
    let shown = String::from_utf8_lossy(&table.stdout).into_owned();
    let columns: Vec<usize> = shown
        .lines()
        .map(|l| l.find("max_tokens_per_day").or_else(|| l.find("BUDGET")))
        .map(|at| at.unwrap_or_else(|| panic!("a BUDGET column in:\n{shown}")))
        .collect();
    assert_eq!(columns.len(), 2, "header and the one subject:\n{shown}");
    assert!(
        columns.windows(2).all(|w| w[0] == w[1]),
        "aligned:\n{shown}"
    );
}
