use super::*;

/// A config with echo, an OpenAI provider `openai` (key from a file when
/// `key` is set) and `extra` appended.
fn config(key: bool, extra: &str) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_line = if key {
        let file = dir.path().join("key");
        std::fs::write(&file, "sk-x\n").expect("write");
        format!("api_key_file = \"{}\"", file.display())
    } else {
        "api_key_env = \"VIBECTL_TEST_NEVER_SET_KEY\"".to_owned()
    };
    let text = format!(
        "[providers.echo]\nkind = \"echo\"\n\
         [providers.openai]\nkind = \"openai\"\n{key_line}\n\
         [providers.anthropic]\nkind = \"anthropic\"\napi_key_env = \"VIBECTL_TEST_NEVER_SET_KEY\"\n\
         [[models]]\nid = \"gpt-x\"\nprovider = \"openai\"\naliases = [\"x\"]\n\
         input_usd_per_mtok = 2.0\noutput_usd_per_mtok = 8.0\n\
         [[models]]\nid = \"echo\"\nprovider = \"echo\"\n\
         [[models]]\nid = \"claude\"\nprovider = \"anthropic\"\n{extra}"
    );
    let cfg = Config::from_toml(&text, std::path::Path::new("t.toml")).expect("config");
    (cfg, dir)
}

fn registry(key: bool, extra: &str) -> Registry {
    Registry::from_config(&config(key, extra).0)
}

#[test]
fn without_any_key_echo_answers_every_name() {
    let r = registry(false, "");
    assert!(r.offline());
    assert_eq!(r.default_model(), Some("echo"));
    for name in [
        None,
        Some(""),
        Some("claude-3.7-sonnet"),
        Some("gpt-4o"),
        Some("no-such-model"),
    ] {
        assert_eq!(
            r.resolve(name).expect("echo answers").id,
            "echo",
            "{name:?}"
        );
    }
    let listed: Vec<_> = r.listed().map(|m| m.id.as_str()).collect();
    assert_eq!(listed, ["echo"]);
}

#[test]
fn first_model_with_credentials_is_default_and_only_those_are_listed() {
    let r = registry(true, "");
    assert!(!r.offline());
    assert_eq!(r.default_model(), Some("gpt-x"));
    let listed: Vec<_> = r.listed().map(|m| m.id.as_str()).collect();
    assert_eq!(listed, ["gpt-x", "echo"]);
}

#[test]
fn client_names_resolve_to_a_model_of_their_provider() {
    let r = registry(true, "");
    // The targets (gpt-4o, claude-sonnet-4-5) are not configured here: the
    // first model of the provider's kind serves.
    assert_eq!(r.resolve(Some("gpt-4o")).expect("4o").id, "gpt-x");
    assert_eq!(r.resolve(Some("4t")).expect("4t").id, "gpt-x");
    assert_eq!(
        r.resolve(Some("claude-3.7-sonnet")).expect("default").id,
        "claude"
    );
    let (id, names) = r.scope_names("4o");
    assert_eq!(id, "gpt-x");
    assert!(names.iter().any(|n| n == "x") && names.iter().any(|n| n == "gpt-4"));
    let (mut cfg, _dir) = config(true, "");
    cfg.core.client_model_names = false;
    let strict = Registry::from_config(&cfg);
    assert_eq!(
        strict.resolve(Some("gpt-4o")).expect_err("off").code(),
        "MODEL_NOT_FOUND"
    );
}

#[test]
fn default_models_serve_the_clients_names() {
    let r = Registry::from_config(&Config::default());
    for (name, model) in [
        ("claude-3.7-sonnet", "claude-sonnet-4-5"),
        ("anthropic/claude-3-5-haiku-latest", "claude-haiku-4-5"),
        ("claude-4-opus", "claude-opus-4-1"),
        ("gpt-4o", "gpt-4o"),
        ("gpt-4", "gpt-4o"),
        ("gpt-3.5-turbo", "gpt-4o-mini"),
        ("o3", "gpt-5"),
        ("gpt-4.1-nano", "gpt-4.1-mini"),
    ] {
        assert_eq!(r.get(name).map(|m| m.id.as_str()), Some(model), "{name}");
    }
}

#[test]
fn configured_default_and_aliases() {
    let r = registry(true, "[core]\ndefault_model = \"x\"\n");
    assert_eq!(r.default_model(), Some("gpt-x"));
    assert_eq!(r.resolve(Some("x")).expect("alias").id, "gpt-x");
    let (id, names) = r.scope_names("x");
    assert_eq!(id, "gpt-x");
    assert!(names.iter().any(|n| n == "gpt-x"));
}

#[test]
fn unknown_model_lists_what_can_answer() {
    let err = registry(true, "")
        .resolve(Some("gpt-9"))
        .expect_err("must fail");
    assert_eq!(err.code(), "MODEL_NOT_FOUND");
    let msg = err.to_string();
    assert!(
        msg.contains("gpt-9") && msg.contains("gpt-x (aliases: x)") && msg.contains("echo"),
        "{msg}"
    );
    assert!(!msg.contains("claude"), "no credentials, not listed: {msg}");
}

#[test]
fn cost_uses_prices_per_million() {
    let r = registry(true, "");
    let m = r.resolve(Some("gpt-x")).expect("model");
    let cost = m.cost_usd(1_000, 500).expect("priced");
    assert!((cost - (0.002 + 0.004)).abs() < 1e-12, "{cost}");
    assert_eq!(
        r.resolve(Some("echo")).expect("echo").cost_usd(10, 10),
        None
    );
}
