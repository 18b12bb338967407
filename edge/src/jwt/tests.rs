use super::*;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

const SECRET: &str = "test-secret-0123456789-abcdefghijkl";

fn config() -> JwtConfig {
    JwtConfig::default()
}

fn verifier() -> TokenVerifier {
    TokenVerifier::new(&Secret::new(SECRET), &config())
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
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload);
    let input = format!("{header}.{body}");
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret.as_bytes()),
        Algorithm::HS256,
    )
    .expect("sign");
    format!("{input}.{sig}")
}

/// Asserts `token` fails with `want`, and that neither the error nor the
/// client message contains the token (or its signature).
fn refused(token: &str, want: AuthError) {
    let err = verifier().verify(token).expect_err("must be refused");
    assert_eq!(err, want, "token {token}");
    let msg = err.client_message();
    assert!(msg.contains("authorization: Bearer <jwt>"), "{msg}");
    assert!(msg.contains("--jwt-path"), "{msg}");
    if !token.is_empty() {
        assert!(!msg.contains(token), "{msg}");
        if let Some(sig) = token.rsplit('.').next().filter(|s| s.len() > 8) {
            assert!(!msg.contains(sig), "{msg}");
        }
    }
}

#[test]
fn minted_token_verifies_with_all_claims() {
    let token = mint_token(
        &Secret::new(SECRET),
        "vibectl-server",
        "alice",
        Duration::from_secs(60),
    )
    .expect("mint");
    let claims = verifier().verify(&token).expect("valid");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.iss.as_deref(), Some("vibectl-server"));
    let iat = claims.iat.expect("iat");
    assert!((claims.exp - iat - 60).abs() <= 1);
    let jti = claims.jti.expect("jti");
    assert!(uuid::Uuid::parse_str(&jti).is_ok(), "{jti}");
    let other = mint_token(
        &Secret::new(SECRET),
        "vibectl-server",
        "alice",
        Duration::from_secs(60),
    )
    .expect("mint");
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
    let verifier = TokenVerifier::new(&Secret::new("python-secret-for-tests"), &config());
    let claims = verifier.verify(token).expect("PyJWT token verifies");
    assert_eq!(claims.sub, "dev-user");
    assert_eq!(
        claims.jti.as_deref(),
        Some("6f1c5a8e-3a43-4bd2-9a4e-2b7c1f0d9e11")
    );
    // The same, expired on 2025-01-02.
    let expired = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZXYtdXNlciIsImlzcyI6InZpYmVjdGwtc2VydmVyIiwiaWF0IjoxNzM1Njg5NjAwLCJleHAiOjE3MzU3NzYwMDAsImp0aSI6IjZmMWM1YThlLTNhNDMtNGJkMi05YTRlLTJiN2MxZjBkOWUxMSJ9.SjYZqpybIrfaL3uw31-otpyeM-sDmXi4mAobUuCCRQ4";
    assert_eq!(verifier.verify(expired), Err(AuthError::TokenExpired));
}

#[test]
fn malformed_tokens() {
    refused("not-a-jwt", AuthError::Malformed);
    refused("a.b.c", AuthError::Malformed);
    refused("", AuthError::Malformed);
    let garbage_claims = sign_json("not json", SECRET);
    refused(&garbage_claims, AuthError::Malformed);
}

#[test]
fn bad_signature() {
    let token = mint_token(
        &Secret::new("another-secret"),
        "vibectl-server",
        "bob",
        Duration::from_secs(60),
    )
    .expect("mint");
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
            iat: None,
            exp: now() + 60,
            jti: None,
        },
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode");
    refused(&token, AuthError::WrongAlgorithm);
}
