use super::*;
use crate::auth::{KeySet, keygen};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::{
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use vibectl_config::{Config, JwtConfig, Secret};

const SECRET: &str = "test-secret-0123456789-abcdefghijkl";

fn config() -> JwtConfig {
    JwtConfig::default()
}

fn verifier() -> TokenVerifier {
    TokenVerifier::new(&Secret::new(SECRET), &config())
}

/// A token minted with the legacy shared `secret` for `sub`, valid 60 s.
fn legacy_token(secret: &str, sub: &str) -> String {
    mint_token(
        &Secret::new(secret),
        "vibectl-server",
        sub,
        Duration::from_secs(60),
    )
    .expect("mint")
}

/// The verifier of the key set configured in `config`, with the legacy
/// shared secret beside it.
fn keys_verifier(config: &Config) -> TokenVerifier {
    TokenVerifier::from_config(config, Some(&Secret::new(SECRET)), None).expect("verifier")
}

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("i64")
}

/// Signs arbitrary JSON claims with HS256, with PyJWT's header bytes.
fn sign_json(payload: &str, secret: &str) -> String {
    sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, payload, secret.as_bytes())
}

/// Signs `header.payload` with HMAC-SHA256 over `key`, whatever the header says.
fn sign_raw(header: &str, payload: &str, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(key),
        Algorithm::HS256,
    )
    .expect("sign");
    format!("{input}.{sig}")
}

/// Asserts `token` fails with `want`, and that neither the error nor the
/// client message contains the token (or its signature).
fn refused_by(verifier: &TokenVerifier, token: &str, want: AuthError) {
    let err = verifier.verify(token).expect_err("must be refused");
    assert_eq!(err, want, "token {token}");
    let msg = err.client_message();
    // How to send a token when none (or no readable one) came, else what
    // to do about the token sent (or when to retry).
    let unread = matches!(
        err,
        AuthError::MissingHeader | AuthError::NotBearer | AuthError::Malformed | AuthError::TooLong
    );
    assert_eq!(msg.contains("authorization: Bearer <jwt>"), unread, "{msg}");
    assert_eq!(msg.contains("--jwt-path"), unread, "{msg}");
    if !unread {
        assert!(
            msg.contains("new token") || msg.contains("ask for") || msg.contains("retry"),
            "{msg}"
        );
    }
    if !token.is_empty() {
        assert!(!msg.contains(token), "{msg}");
        if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() > 8) {
            assert!(!msg.contains(sig), "{msg}");
        }
    }
}

fn refused(token: &str, want: AuthError) {
    refused_by(&verifier(), token, want);
}

/// One generated key per algorithm (RSA generation is slow: once).
fn key(alg: KeyAlg) -> &'static keygen::Generated {
    static KEYS: OnceLock<Vec<(KeyAlg, keygen::Generated)>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        KeyAlg::ALL
            .into_iter()
            .map(|alg| {
                let kid = format!("{}-test", alg.name().to_ascii_lowercase());
                (alg, keygen::generate(alg, &kid, now()).expect("keygen"))
            })
            .collect()
    });
    &keys.iter().find(|(a, _)| *a == alg).expect("generated").1
}

fn kid(alg: KeyAlg) -> String {
    key(alg).jwk["kid"].as_str().expect("kid").to_owned()
}

fn signing_key(alg: KeyAlg) -> SigningKey {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("key");
    std::fs::write(&path, &key(alg).private).expect("write");
    SigningKey::from_file(&path, &kid(alg), alg).expect("signing key")
}

/// A stack-less edge config whose state dir is `dir`, with `jwks` written
/// there and `extra` TOML.
fn edge_config(dir: &std::path::Path, jwks: &Value, extra: &str) -> Config {
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).expect("jwks");
    let mut config = Config::from_toml(extra, &dir.join("t.toml")).expect("config");
    config.edge.state_dir = Some(dir.to_owned());
    config
}

fn all_keys() -> Value {
    json!({ "keys": KeyAlg::ALL.iter().map(|a| Value::Object(key(*a).jwk.clone())).collect::<Vec<_>>() })
}

fn spec(sub: &str) -> TokenSpec {
    TokenSpec {
        subject: sub.into(),
        lifetime: Duration::from_secs(600),
        issuer: "vibectl-server".into(),
        ..TokenSpec::default()
    }
}

#[test]
fn minted_token_verifies_with_all_claims() {
    let token = legacy_token(SECRET, "alice");
    let claims = verifier().verify(&token).expect("valid");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.iss.as_deref(), Some("vibectl-server"));
    let iat = claims.iat.expect("iat");
    assert!((claims.exp - iat - 60).abs() <= 1);
    let jti = claims.jti.expect("jti");
    assert!(uuid::Uuid::parse_str(&jti).is_ok(), "{jti}");
    let other = legacy_token(SECRET, "alice");
    assert_ne!(
        verifier().verify(&other).expect("valid").jti.as_deref(),
        Some(jti.as_str())
    );
}

#[test]
fn token_made_like_pyjwt_verifies() {
    // PyJWT: jwt.encode({"sub","iss","iat","exp","jti"}, secret, "HS256"):
    // header {"alg":"HS256","typ":"JWT"}, compact JSON in insertion order.
    let payload = format!(
        r#"{{"sub":"dev-user","iss":"vibectl-server","iat":{},"exp":{},"jti":"{}"}}"#,
        now(),
        now() + 3600,
        uuid::Uuid::new_v4()
    );
    let claims = verifier()
        .verify(&sign_json(&payload, SECRET))
        .expect("valid");
    assert_eq!(claims.sub, "dev-user");
}

#[test]
fn token_minted_by_real_pyjwt_verifies() {
    // Made with PyJWT 2.15.1, exactly as vibectl-server's generate-token
    // does (datetimes for iat/exp), secret "python-secret-for-tests",
    // exp 2099-12-31.
    let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZXYtdXNlciIsImlzcyI6InZpYmVjdGwtc2VydmVyIiwiaWF0IjoxNzM1Njg5NjAwLCJleHAiOjQxMDIzNTg0MDAsImp0aSI6IjZmMWM1YThlLTNhNDMtNGJkMi05YTRlLTJiN2MxZjBkOWUxMSJ9.TU3GOTdIpcI4TpyzQhxfbAXv5TqmvfqdsfC5eI7VEZ4";
    // It lives 75 years: past the default jwt.max_lifetime (one year) ...
    let strict = TokenVerifier::new(&Secret::new("python-secret-for-tests"), &config());
    let refused = strict.verify(token).expect_err("75-year token");
    assert_eq!(refused.reason(), "lifetime_too_long", "{refused}");
    // ... and verifies where the operator turned the bound off.
    let mut unbounded = config();
    unbounded.max_lifetime = std::time::Duration::ZERO;
    let verifier = TokenVerifier::new(&Secret::new("python-secret-for-tests"), &unbounded);
    let claims = verifier.verify(token).expect("PyJWT token verifies");
    assert_eq!(claims.sub, "dev-user");
    assert_eq!(
        claims.jti.as_deref(),
        Some("6f1c5a8e-3a43-4bd2-9a4e-2b7c1f0d9e11")
    );
    // The same, expired on 2025-01-02.
    let expired = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZXYtdXNlciIsImlzcyI6InZpYmVjdGwtc2VydmVyIiwiaWF0IjoxNzM1Njg5NjAwLCJleHAiOjE3MzU3NzYwMDAsImp0aSI6IjZmMWM1YThlLTNhNDMtNGJkMi05YTRlLTJiN2MxZjBkOWUxMSJ9.SjYZqpybIrfaL3uw31-otpyeM-sDmXi4mAobUuCCRQ4";
    assert_eq!(verifier.verify(expired), Err(AuthError::TokenExpired));
    // Still so with a key set beside the secret and no default kid.
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = edge_config(tmp.path(), &all_keys(), "[jwt]\nmax_lifetime = \"0s\"\n");
    let with_set =
        TokenVerifier::from_config(&config, Some(&Secret::new("python-secret-for-tests")), None)
            .expect("verifier");
    let verified = with_set.verify_token(token).expect("still verifies");
    assert_eq!(verified.kid, None);
}

#[test]
fn malformed_tokens() {
    refused("not-a-jwt", AuthError::Malformed);
    refused("a.b.c", AuthError::Malformed);
    refused("", AuthError::Malformed);
    refused("a.b.c.d", AuthError::Malformed);
    let garbage_claims = sign_json("not json", SECRET);
    refused(&garbage_claims, AuthError::Malformed);
    refused(&"a".repeat(MAX_TOKEN_BYTES + 1), AuthError::TooLong);
}

#[test]
fn bad_signature() {
    let token = legacy_token("another-secret", "bob");
    refused(&token, AuthError::BadSignature);
}

#[test]
fn expired_beyond_leeway() {
    let payload = format!(
        r#"{{"sub":"bob","iss":"vibectl-server","iat":{},"exp":{}}}"#,
        now() - 7200,
        now() - 3600
    );
    refused(&sign_json(&payload, SECRET), AuthError::TokenExpired);
    // Within the leeway (60 s) it still passes.
    let fresh = format!(
        r#"{{"sub":"bob","iss":"vibectl-server","exp":{}}}"#,
        now() - 5
    );
    assert!(verifier().verify(&sign_json(&fresh, SECRET)).is_ok());
}

#[test]
fn wrong_or_missing_issuer() {
    let expected = AuthError::WrongIssuer {
        expected: "vibectl-server".into(),
    };
    let wrong = format!(
        r#"{{"sub":"bob","iss":"someone-else","exp":{}}}"#,
        now() + 60
    );
    refused(&sign_json(&wrong, SECRET), expected.clone());
    let none = format!(r#"{{"sub":"bob","exp":{}}}"#, now() + 60);
    refused(&sign_json(&none, SECRET), expected);
    // With an empty issuer nothing is checked.
    let lax = JwtConfig {
        issuer: String::new(),
        ..config()
    };
    let verifier = TokenVerifier::new(&Secret::new(SECRET), &lax);
    assert!(verifier.verify(&sign_json(&none, SECRET)).is_ok());
    assert!(verifier.verify(&sign_json(&wrong, SECRET)).is_ok());
}

#[test]
fn missing_exp_or_sub() {
    let no_exp = r#"{"sub":"bob","iss":"vibectl-server","iat":1}"#;
    refused(
        &sign_json(no_exp, SECRET),
        AuthError::MissingClaim {
            claim: "exp".into(),
        },
    );
    let no_sub = format!(r#"{{"iss":"vibectl-server","exp":{}}}"#, now() + 60);
    refused(
        &sign_json(&no_sub, SECRET),
        AuthError::MissingClaim {
            claim: "sub".into(),
        },
    );
}

#[test]
fn other_algorithm_is_refused() {
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &Claims {
            sub: "bob".into(),
            iss: Some("vibectl-server".into()),
            exp: now() + 60,
            ..Claims::default()
        },
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode");
    refused(
        &token,
        AuthError::WrongAlgorithm {
            expected: "HS256".into(),
        },
    );
}

mod keys;
