//! Token policy end to end: revocation through the file (within the reload
//! interval) and across two edges through a real redis-server
//! ([`vibectl_tests::redis_server`]); model scopes (PERMISSION_DENIED
//! from the core for a model outside the token's `models`); `nbf`, `aud`,
//! `jwt.max_lifetime`; and an audit log that names every decision and
//! holds no token material.

use crate::token_common;

use std::time::Duration;
use token_common::{Signer, assert_unauthenticated, call, eventually, execute, server_info};
use tonic::Code;
use vibectl_edge::{
    auth::KeyAlg,
    cli::token::{self, RevokeArgs, TokenSource},
};
use vibectl_tests::{
    harness::{ISSUER, JWT_SECRET, Stack, WAIT, authed, claims, execute_request, mint},
    logs::Captured,
    redis_server::RedisServer,
};

fn revoke_jti(jti: &str) -> RevokeArgs {
    RevokeArgs {
        jti: Some(jti.to_owned()),
        source: TokenSource::default(),
        keep_for: None,
    }
}

#[tokio::test]
async fn a_revoked_token_is_refused_within_the_reload_interval() {
    let signer = Signer::new("");
    signer.generate(KeyAlg::ES256, "k1");
    let stack = signer.stack("").await;
    let doomed = signer.token("k1", "carol", &[]);
    let spared = signer.token("k1", "carol", &[]);
    call(&stack, &doomed).await.expect("valid before");
    // `revoke-token --token-file FILE`: the token from a file, never argv.
    let file = signer.dir.path().join("doomed.jwt");
    std::fs::write(&file, format!("{doomed}\n")).expect("write");
    let args = RevokeArgs {
        jti: None,
        source: TokenSource {
            token_file: Some(file),
            token_env: None,
        },
        keep_for: None,
    };
    let revoked = token::revoke(&signer.config, &args).await.expect("revoke");
    assert_eq!(revoked.entry.sub.as_deref(), Some("carol"));
    assert_eq!(revoked.redis, None);
    let took = eventually(Duration::from_secs(5), "revoked", || async {
        call(&stack, &doomed).await.is_err()
    })
    .await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_unauthenticated(call(&stack, &doomed).await, "token revoked", &doomed);
    call(&stack, &spared)
        .await
        .expect("another jti of the same sub");
    // A legacy (vibectl-server) token revoked by its jti.
    let legacy_claims = claims("dave", 3600);
    let legacy = mint(JWT_SECRET, &legacy_claims);
    call(&stack, &legacy).await.expect("legacy valid");
    let jti = legacy_claims["jti"].as_str().expect("jti");
    token::revoke(&signer.config, &revoke_jti(jti))
        .await
        .expect("revoke by jti");
    eventually(Duration::from_secs(5), "legacy revoked", || async {
        call(&stack, &legacy).await.is_err()
    })
    .await;
    stack.shutdown().await;
}

#[tokio::test]
async fn a_revocation_in_redis_reaches_every_edge_within_seconds() {
    let redis = RedisServer::start().await;
    let limits = format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    );
    let signer = Signer::new("");
    signer.generate(KeyAlg::EdDSA, "shared");
    // Two replicas with the same key set, each with its own revocation file
    // (its state dir): only Redis connects them.
    let toml = format!(
        "[jwt]\njwks_file = {:?}\nreload_interval = \"100ms\"\n{limits}",
        signer.jwks()
    );
    let a = Stack::builder().config(&toml).start().await;
    let b = Stack::builder().config(&toml).start().await;
    let token = signer.token("shared", "erin", &[]);
    call(&a, &token).await.expect("a: valid");
    call(&b, &token).await.expect("b: valid");
    // The operator's side: the revocation goes to its file and to Redis.
    let mut operator = signer.config.clone();
    operator.limits = vibectl_config::Config::from_toml(&limits, std::path::Path::new("l.toml"))
        .expect("limits")
        .limits;
    let file = signer.dir.path().join("erin.jwt");
    std::fs::write(&file, &token).expect("write");
    let args = RevokeArgs {
        jti: None,
        source: TokenSource {
            token_file: Some(file),
            token_env: None,
        },
        keep_for: None,
    };
    let revoked = token::revoke(&operator, &args).await.expect("revoke");
    assert_eq!(revoked.redis, Some(1));
    for (name, stack) in [("a", &a), ("b", &b)] {
        let took = eventually(Duration::from_secs(5), name, || async {
            call(stack, &token).await.is_err()
        })
        .await;
        assert!(took <= Duration::from_secs(2), "{name}: took {took:?}");
        assert_unauthenticated(call(stack, &token).await, "token revoked", &token);
    }
    let other = signer.token("shared", "erin", &[]);
    call(&a, &other).await.expect("other tokens unaffected");
    a.shutdown().await;
    b.shutdown().await;
    drop(redis);
}

#[tokio::test]
async fn model_scopes_are_enforced_by_the_core() {
    let signer = Signer::new("");
    signer.generate(KeyAlg::ES256, "k1");
    let stack = signer.stack("").await;
    let scoped = signer.token("k1", "frank", &["echo", "4o-mini"]);
    execute(&stack, &scoped, "echo")
        .await
        .expect("echo allowed");
    // GetServerInfo lists only the models (and aliases) the token may use.
    // No provider key here: echo answers every name the token may use.
    let seen = server_info(&stack, &scoped).await.expect("OK");
    let ids: Vec<_> = seen
        .available_models
        .iter()
        .map(|m| m.model_id.as_str())
        .collect();
    assert_eq!(ids, ["echo"]);
    for alias in ["4o-mini", "gpt-4o-mini", "gpt-3.5-turbo"] {
        assert_eq!(
            seen.model_aliases.get(alias).map(String::as_str),
            Some("echo"),
            "{alias} is the scope's 4o-mini"
        );
    }
    for outside in ["4o", "gpt-4o", "claude-3.7-sonnet"] {
        assert!(!seen.model_aliases.contains_key(outside), "{outside}");
    }
    assert_eq!(seen.default_model, "echo");
    let everything = server_info(&stack, &signer.token("k1", "frank", &[]))
        .await
        .expect("OK");
    for alias in ["4o", "claude-3.7-sonnet"] {
        assert_eq!(
            everything.model_aliases.get(alias).map(String::as_str),
            Some("echo"),
            "an unscoped token may send every name"
        );
    }
    for model in ["gpt-4o", "claude-haiku-4-5"] {
        let status = execute(&stack, &scoped, model)
            .await
            .expect_err("outside the scope");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(
            status.message(),
            format!("token may use models: echo, 4o-mini; asked for {model}")
        );
    }
    // Streaming too; and a client-sent copy of the header cannot widen it.
    let mut client = stack.client().await;
    let mut request = authed(execute_request(Some("gpt-4o"), "hi"), &scoped);
    request
        .metadata_mut()
        .insert("x-vibectl-allowed-models", "gpt-4o".parse().expect("ascii"));
    let status = tokio::time::timeout(WAIT, client.stream_execute(request))
        .await
        .expect("in time")
        .expect_err("denied");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // An unscoped token may name any model; a client copy cannot narrow or
    // widen anything either (it is stripped).
    let open = signer.token("k1", "frank", &[]);
    execute(&stack, &open, "echo").await.expect("open token");
    stack.shutdown().await;
}

#[tokio::test]
async fn nbf_aud_and_max_lifetime_at_the_edge() {
    let signer = Signer::new("audience = \"llm-proxy\"\nmax_lifetime = \"1d\"");
    signer.generate(KeyAlg::ES256, "k1");
    let stack = signer
        .stack("audience = \"llm-proxy\"\nmax_lifetime = \"1d\"")
        .await;
    let good = signer.token("k1", "gina", &[]);
    call(&stack, &good).await.expect("aud and lifetime fine");
    // generate-token refuses a lifetime beyond jwt.max_lifetime.
    let err = signer
        .try_token("k1", "gina", &[], Duration::from_secs(2 * 86_400))
        .expect_err("too long")
        .to_string();
    assert!(err.contains("max_lifetime"), "{err}");
    // Tokens minted elsewhere: no aud, wrong aud, too long, not yet valid.
    let now = i64::try_from(jsonwebtoken::get_current_timestamp()).expect("i64");
    let base = serde_json::json!({"sub": "gina", "iss": ISSUER, "aud": "llm-proxy",
                                  "iat": now, "exp": now + 600, "jti": "j-1"});
    let with = |key: &str, value: serde_json::Value| {
        let mut c = base.clone();
        match value {
            serde_json::Value::Null => {
                c.as_object_mut().expect("object").remove(key);
            }
            v => c[key] = v,
        }
        mint(JWT_SECRET, &c)
    };
    call(&stack, &mint(JWT_SECRET, &base))
        .await
        .expect("legacy key, all fine");
    for (token, reason) in [
        (with("aud", serde_json::Value::Null), "audience is wrong"),
        (with("aud", "elsewhere".into()), "audience is wrong"),
        (with("exp", (now + 3 * 86_400).into()), "lives longer"),
        (with("nbf", (now + 3600).into()), "not valid yet"),
    ] {
        assert_unauthenticated(call(&stack, &token).await, reason, &token);
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn the_audit_log_names_each_decision_and_never_the_token() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info")
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let signer = Signer::new("");
    signer.generate(KeyAlg::ES256, "k1");
    let stack = signer.stack("").await;
    let good = signer.token("k1", "henry", &[]);
    let forged = {
        let mut parts: Vec<&str> = good.split('.').collect();
        parts[2] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        parts.join(".")
    };
    let expired = mint(JWT_SECRET, &claims("ivy", -3600));
    call(&stack, &good).await.expect("good");
    for bad in [&forged, &expired] {
        assert!(call(&stack, bad).await.is_err());
    }
    stack.shutdown().await;
    let text = logs.text();
    let audit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("vibectl_edge::audit"))
        .collect();
    assert!(
        audit.iter().any(|l| l.contains("result=\"accepted\"")
            && l.contains("sub=\"henry\"")
            && l.contains("kid=\"k1\"")
            && l.contains("alg=\"ES256\"")),
        "{text}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("refused") && l.contains("bad_signature")),
        "{text}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("refused") && l.contains("expired") && l.contains("ivy")),
        "an expired token's sub is authentic, so named: {text}"
    );
    for token in [&good, &forged, &expired] {
        assert!(!text.contains(token.as_str()), "a token in the logs");
        for part in token.split('.') {
            assert!(!text.contains(part), "a token part in the logs: {part}");
        }
    }
}
