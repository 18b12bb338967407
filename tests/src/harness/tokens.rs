//! The tokens the stacks accept: their HS256 secret and issuer, claims as
//! vibectl-server makes them, and signing independent of the edge's code.

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

/// The HS256 secret of every stack.
pub const JWT_SECRET: &str = "e2e-test-secret-5c1f0b7e9a3d4c2b8e6f0a1b";
/// The issuer the stacks check (the default, `vibectl-server`).
pub const ISSUER: &str = "vibectl-server";

/// Claims as vibectl-server makes them: `sub`, `iss`, `iat`, `exp` (now +
/// `expires_in_secs`, negative for an expired token) and a unique `jti`.
pub fn claims(sub: &str, expires_in_secs: i64) -> Value {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = i64::try_from(jsonwebtoken::get_current_timestamp()).expect("i64");
    let jti = format!("jti-{now}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    json!({"sub": sub, "iss": ISSUER, "iat": now, "exp": now + expires_in_secs, "jti": jti})
}

/// Signs `claims` with HS256 and `secret` (independently of the edge's own
/// minting code).
pub fn mint(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}
