//! The token and key commands of the `vibectl-edge` binary as an operator
//! runs them: `keys generate` (private key 0600, public key into the set),
//! `keys list`, `generate-token --kid` (0600 file), `token inspect` (by the
//! real verifier; refuses a token in a URL without echoing it),
//! `revoke-token --token-file`, `keys retire`; no token is ever printed
//! back, and none is taken from the command line.

use crate::binary::{edge, mode};
use std::path::Path;

/// Runs and returns (success, stdout, stderr).
fn run(state: &Path, args: &[&str]) -> (bool, String, String) {
    let out = edge(state).args(args).output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keys_tokens_inspect_revoke_retire() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path();
    let (ok, out, err) = run(
        state,
        &["keys", "generate", "--alg", "es256", "--kid", "ops-1"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("ops-1"), "{out}");
    let private = state.join("jwt-keys/ops-1.pem");
    assert_eq!(mode(&private), 0o600);
    assert_eq!(mode(&state.join("jwt-keys")), 0o700);
    let jwks = std::fs::read_to_string(state.join("jwks.json")).expect("jwks");
    assert!(
        jwks.contains("\"ES256\"") && !jwks.contains("PRIVATE"),
        "{jwks}"
    );
    // Never overwritten, never a duplicate kid.
    let (ok, _, err) = run(
        state,
        &["keys", "generate", "--alg", "EdDSA", "--kid", "ops-1"],
    );
    assert!(!ok && err.contains("ops-1"), "{err}");
    let (ok, out, _) = run(state, &["keys", "list"]);
    assert!(
        ok && out.contains("ops-1") && out.contains("ES256") && out.contains("here"),
        "{out}"
    );

    let token_file = state.join("alice.jwt");
    let (ok, out, err) = run(
        state,
        &[
            "generate-token",
            "alice",
            "--kid",
            "ops-1",
            "--expires-in",
            "1h",
            "--models",
            "echo,4o",
            "--output",
            token_file.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.is_empty(), "the token goes to the file only: {out}");
    assert_eq!(mode(&token_file), 0o600);
    let token = std::fs::read_to_string(&token_file)
        .expect("token")
        .trim()
        .to_owned();
    let signature = token.rsplit('.').next().expect("sig").to_owned();

    let file_arg = token_file.to_str().expect("utf-8");
    let (ok, out, err) = run(state, &["token", "inspect", "--token-file", file_arg]);
    assert!(ok, "{err}");
    assert!(
        out.contains("\"kid\": \"ops-1\"") && out.contains("ES256"),
        "{out}"
    );
    assert!(
        out.contains("ACCEPT") && out.contains("\"models\""),
        "{out}"
    );
    assert!(
        out.contains("verifies with") && out.contains("jwks.json"),
        "says which key set the edge uses: {out}"
    );
    assert!(!out.contains(&signature) && !err.contains(&signature));

    // A token in a URL is refused, and not echoed.
    let url = format!("vibectl-server://{token}@llm.example.com:443");
    let (ok, out, err) = run(state, &["token", "inspect", "--url", &url]);
    assert!(!ok);
    assert!(err.contains("--jwt-path") && err.contains("URL"), "{err}");
    assert!(
        err.contains("setup-proxy configure PROFILE_NAME vibectl-server://"),
        "a hint that pastes: {err}"
    );
    assert!(
        !out.contains(&signature) && !err.contains(&signature),
        "{err}"
    );
    let (ok, out, _) = run(
        state,
        &[
            "token",
            "inspect",
            "--url",
            "vibectl-server://llm.example.com",
        ],
    );
    assert!(ok && out.contains("no token"), "{out}");
    // No token source: an explanation, not a prompt for argv.
    let (ok, _, err) = run(state, &["token", "inspect"]);
    assert!(!ok && err.contains("--token-file"), "{err}");

    // Revoke it (from the file), then inspect says why it is refused.
    let (ok, out, err) = run(state, &["revoke-token", "--token-file", file_arg]);
    assert!(ok, "{err}");
    assert!(
        out.contains("revoked jti") && out.contains("alice"),
        "{out}"
    );
    assert!(!out.contains(&signature));
    let (ok, out, err) = run(state, &["token", "inspect", "--token-file", file_arg]);
    assert!(
        !ok && out.contains("REFUSE") && out.contains("token revoked"),
        "non-zero exit on a refusal: {out}"
    );
    assert!(err.contains("would refuse"), "{err}");

    // A second key, then retiring the first: its tokens say "retired".
    let other = state.join("bob.jwt");
    let (ok, _, err) = run(
        state,
        &["keys", "generate", "--alg", "EdDSA", "--kid", "ops-2"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(
        state,
        &[
            "generate-token",
            "bob",
            "--kid",
            "ops-1",
            "--output",
            other.to_str().expect("utf-8"),
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(state, &["keys", "retire", "--kid", "ops-1"]);
    assert!(ok, "{err}");
    let (ok, out, _) = run(
        state,
        &[
            "token",
            "inspect",
            "--token-file",
            other.to_str().expect("utf-8"),
        ],
    );
    assert!(!ok && out.contains("retired"), "{out}");
    let (ok, _, err) = run(state, &["generate-token", "bob", "--kid", "ops-1"]);
    assert!(!ok && err.contains("retired"), "{err}");
    let (ok, out, _) = run(state, &["keys", "list"]);
    assert!(
        ok && out.contains("retired") && out.contains("ops-2"),
        "{out}"
    );
}

#[test]
fn max_lifetime_is_enforced_at_generation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, "[jwt]\nmax_lifetime = \"90d\"\n").expect("write");
    let c = config.to_str().expect("utf-8");
    let (ok, _, err) = run(
        tmp.path(),
        &["--config", c, "generate-token", "x", "--expires-in", "1y"],
    );
    assert!(!ok && err.contains("max_lifetime"), "{err}");
    let (ok, out, err) = run(
        tmp.path(),
        &["--config", c, "generate-token", "x", "--expires-in", "30d"],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim().split('.').count(), 3);
}
