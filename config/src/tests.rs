use super::*;
use std::path::Path;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("test.toml"))
}

#[test]
fn every_example_file_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("read");
            Config::from_toml(&text, &path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

#[test]
fn default_file_matches_built_in_defaults() {
    let cfg = parse(DEFAULT_CONFIG_TOML).expect("default file");
    let def = Config::default();
    assert_eq!(cfg.edge.listen, def.edge.listen);
    assert_eq!(cfg.core.listen, def.core.listen);
    assert_eq!(cfg.models.len(), def.models.len());
    assert_eq!(cfg.providers.len(), def.providers.len());
    assert_eq!(cfg.hsts.header_value(), def.hsts.header_value());
}

#[test]
fn empty_file_is_all_defaults_and_safe() {
    let cfg = parse("").expect("empty");
    assert!(cfg.edge.listen.ip().is_loopback());
    assert!(cfg.core.listen.starts_with("127.0.0.1:"));
    assert!(cfg.edge.require_auth);
    assert!(cfg.hsts.enabled);
    assert!(matches!(cfg.tls.mode(), TlsMode::SelfSigned(_)));
    assert!(cfg.models.iter().any(|m| m.id == "echo"));
}

#[test]
fn typo_is_rejected_with_key_and_file() {
    let err = parse("[tls.files]\ncert_fle = \"a\"\nkey_file = \"b\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("test.toml"), "{msg}");
    assert!(msg.contains("tls.files"), "{msg}");
    assert!(msg.contains("cert_fle"), "{msg}");
}

#[test]
fn unknown_top_level_key_is_rejected() {
    let msg = parse("colour = 1\n").unwrap_err().to_string();
    assert!(msg.contains("colour"), "{msg}");
}

#[test]
fn wrong_type_names_the_key() {
    let msg = parse("[edge]\nlisten = \"not an address\"\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("edge.listen"), "{msg}");
}

#[test]
fn model_with_unknown_provider_is_rejected() {
    let msg = parse("[[models]]\nid = \"x\"\nprovider = \"nope\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("models[0].provider") && msg.contains("nope"),
        "{msg}"
    );
}

#[test]
fn duplicate_alias_is_rejected() {
    let text = "[providers.echo]\nkind = \"echo\"\n[[models]]\nid = \"a\"\nprovider = \"echo\"\n\
                [[models]]\nid = \"b\"\nprovider = \"echo\"\naliases = [\"a\"]\n";
    let msg = parse(text).unwrap_err().to_string();
    assert!(msg.contains("models[1].aliases"), "{msg}");
}

#[test]
fn unknown_default_model_is_rejected() {
    let msg = parse("[core]\ndefault_model = \"gpt-9\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("core.default_model") && msg.contains("gpt-9"),
        "{msg}"
    );
}

#[test]
fn durations_are_human() {
    let cfg = parse("[jwt]\ndefault_expiry = \"12h\"\n").expect("parse");
    assert_eq!(cfg.jwt.default_expiry.as_secs(), 12 * 3600);
}

#[test]
fn hsts_header_value() {
    let cfg =
        parse("[hsts]\ninclude_subdomains = true\npreload = true\nmax_age = 10\n").expect("parse");
    assert_eq!(
        cfg.hsts.header_value().as_deref(),
        Some("max-age=10; includeSubDomains; preload")
    );
}

#[test]
fn secrets_are_redacted_in_debug() {
    let cfg = parse("[jwt]\nsecret_key = \"hunter2-hunter2\"\n").expect("parse");
    assert!(!format!("{cfg:?}").contains("hunter2"));
}

#[test]
fn limits_per_token_override_field_by_field() {
    let cfg = parse(
        "[limits.global]\nmax_requests_per_minute = 120\nmax_concurrent_requests = 10\n\
         [limits.per_token.demo-user]\nmax_requests_per_minute = 5\n",
    )
    .expect("parse");
    let demo = cfg.limits.for_token("demo-user", None);
    assert_eq!(demo.max_requests_per_minute.map(|n| n.get()), Some(5));
    assert_eq!(demo.max_concurrent_requests.map(|n| n.get()), Some(10));
    assert_eq!(
        demo.effective_burst().map(|n| n.get()),
        Some(5),
        "a minute's worth"
    );
    let other = cfg.limits.for_token("someone", None);
    assert_eq!(other.max_requests_per_minute.map(|n| n.get()), Some(120));
    assert_eq!(other.effective_burst().map(|n| n.get()), Some(120));
}

#[test]
fn redis_backend_needs_a_url() {
    let msg = parse("[limits]\nbackend = \"redis\"\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("limits.redis_url"), "{msg}");
}

#[test]
fn zero_limit_is_rejected() {
    let msg = parse("[limits.global]\nmax_requests_per_minute = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("limits.global.max_requests_per_minute"),
        "{msg}"
    );
}

#[test]
fn quota_budgets_parse_and_override_per_token() {
    let cfg = parse(
        "[limits.global]\nmax_tokens_per_day = 1000\nmax_cost_usd_per_month = 12.5\n\
         [limits.per_token.alice]\nmax_tokens_per_day = 50\nenforce = false\n\
         [limits.per_model.echo]\nmax_tokens_per_month = 7\n\
         [quota]\ntime_zone = \"Europe/Berlin\"\nreservation_ttl = \"2s\"\n",
    )
    .expect("valid");
    let alice = cfg.limits.for_token("alice", None).quota();
    assert_eq!(alice.max_tokens_per_day, Some(50));
    assert_eq!(alice.enforce, Some(false));
    assert_eq!(
        alice.max_cost_usd_per_month.map(|u| u.nanos()),
        Some(12_500_000_000)
    );
    assert_eq!(
        cfg.limits.for_token("bob", None).quota().max_tokens_per_day,
        Some(1000)
    );
    assert_eq!(cfg.limits.per_model["echo"].max_tokens_per_month, Some(7));
    assert_eq!(cfg.quota.reservation_ttl, std::time::Duration::from_secs(2));
}

#[test]
fn bad_budgets_name_key_and_file() {
    for (text, key) in [
        (
            "[limits.global]\nmax_tokens_per_day = -5\n",
            "limits.global.max_tokens_per_day",
        ),
        (
            "[limits.global]\nmax_tokens_per_day = \"lots\"\n",
            "limits.global.max_tokens_per_day",
        ),
        (
            "[limits.per_token.a]\nmax_cost_usd_per_day = -1.5\n",
            "limits.per_token.a.max_cost_usd_per_day",
        ),
        (
            "[limits.global]\nmax_cost_usd_per_month = \"ten\"\n",
            "limits.global.max_cost_usd_per_month",
        ),
        (
            "[limits.per_model.nope]\nmax_tokens_per_day = 5\n",
            "limits.per_model.nope",
        ),
        ("[quota]\ntime_zone = \"Mars/Olympus\"\n", "quota.time_zone"),
    ] {
        let msg = parse(text).expect_err(text).to_string();
        assert!(
            msg.contains("test.toml") && msg.contains(key),
            "{text}: {msg}"
        );
    }
}

#[test]
fn ledger_url_is_checked_without_echoing_it() {
    let msg = parse("[ledger]\nurl = \"mysql://u:hunter2@h/db\"\n")
        .expect_err("not postgres")
        .to_string();
    assert!(
        msg.contains("ledger.url") && !msg.contains("hunter2"),
        "{msg}"
    );
    let cfg = parse("[ledger]\nurl = \"postgres://u:hunter2@127.0.0.1:5/db\"\n").expect("pg");
    assert!(!format!("{cfg:?}").contains("hunter2"));
}
