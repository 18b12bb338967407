//! Keys end to end: a token signed with each algorithm (ES256, RS256,
//! EdDSA, HS256 by `kid`) verifies through a running edge; algorithm
//! confusion is UNAUTHENTICATED; key rotation by `kid` (old and new both
//! accepted during the overlap, the old refused after `keys retire` within
//! the reload interval); tokens made like the Python server's still verify.

use crate::token_common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use std::time::Duration;
use token_common::{Signer, assert_unauthenticated, call, eventually, execute};
use vibectl_edge::auth::KeyAlg;
use vibectl_tests::harness::{JWT_SECRET, claims, mint};

#[tokio::test]
async fn a_token_of_each_algorithm_verifies_through_the_edge() {
    let signer = Signer::new("");
    for alg in KeyAlg::ALL {
        signer.generate(alg, &format!("k-{}", alg.name().to_ascii_lowercase()));
    }
    let stack = signer.stack("").await;
    for alg in KeyAlg::ALL {
        let kid = format!("k-{}", alg.name().to_ascii_lowercase());
        let token = signer.token(&kid, &format!("user-{kid}"), &[]);
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, alg.algorithm());
        call(&stack, &token)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        execute(&stack, &token, "echo")
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
    }
    // The legacy HS256 secret (vibectl-server's tokens, no kid) still works.
    call(&stack, &stack.token("python-user"))
        .await
        .expect("legacy token");
    stack.shutdown().await;
}

/// `header.claims` HMAC-signed with `key`, whatever the header says.
fn hmac_token(header: &serde_json::Value, claims: &serde_json::Value, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(key),
        jsonwebtoken::Algorithm::HS256,
    )
    .expect("sign");
    format!("{input}.{sig}")
}

#[tokio::test]
async fn algorithm_confusion_is_unauthenticated() {
    let signer = Signer::new("");
    signer.generate(KeyAlg::RS256, "rsa-1");
    signer.generate(KeyAlg::ES256, "ec-1");
    let stack = signer.stack("").await;
    // The attacker knows the public key (it is public): as PEM and as the
    // JWK's bytes, used as an HS256 secret under the RSA kid.
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(signer.jwks()).expect("jwks")).expect("json");
    let rsa_jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == "rsa-1")
        .expect("rsa-1");
    let public_pem = {
        use rsa::{BigUint, pkcs8::EncodePublicKey};
        let part = |m: &str| {
            BigUint::from_bytes_be(
                &URL_SAFE_NO_PAD
                    .decode(rsa_jwk[m].as_str().expect("member"))
                    .expect("b64"),
            )
        };
        rsa::RsaPublicKey::new(part("n"), part("e"))
            .expect("key")
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .expect("pem")
    };
    let claims = claims("mallory", 3600);
    for key in [
        public_pem.as_bytes(),
        rsa_jwk.to_string().as_bytes(),
        rsa_jwk["n"].as_str().expect("n").as_bytes(),
    ] {
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"});
        let forged = hmac_token(&header, &claims, key);
        assert_unauthenticated(
            call(&stack, &forged).await,
            "not signed with RS256",
            &forged,
        );
    }
    // Without kid the legacy secret verifies it: the PEM is not the secret.
    let forged = hmac_token(
        &serde_json::json!({"alg": "HS256"}),
        &claims,
        public_pem.as_bytes(),
    );
    assert_unauthenticated(call(&stack, &forged).await, "signature is invalid", &forged);
    // `alg: none`.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert_unauthenticated(call(&stack, &unsigned).await, "malformed", &unsigned);
    let with_sig = format!("{unsigned}AAAA");
    assert_unauthenticated(call(&stack, &with_sig).await, "alg: none", &with_sig);
    // An ES256 token presented under the RS256-pinned kid.
    let es = signer.token("ec-1", "mallory", &[]);
    let mut parts: Vec<&str> = es.split('.').collect();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT","kid":"rsa-1"}"#);
    parts[0] = &header;
    let swapped = parts.join(".");
    assert_unauthenticated(
        call(&stack, &swapped).await,
        "not signed with RS256",
        &swapped,
    );
    stack.shutdown().await;
}

#[tokio::test]
async fn rotation_overlap_then_retire() {
    let signer = Signer::new("");
    signer.generate(KeyAlg::ES256, "2025-a");
    let stack = signer.stack("").await;
    let old = signer.token("2025-a", "alice", &[]);
    call(&stack, &old).await.expect("old key");

    // A new key joins the set while the edge runs: both verify.
    signer.generate(KeyAlg::EdDSA, "2025-b");
    let new = signer.token("2025-b", "alice", &[]);
    let took = eventually(Duration::from_secs(5), "new kid accepted", || async {
        call(&stack, &new).await.is_ok()
    })
    .await;
    assert!(took < Duration::from_secs(3), "picked up in {took:?}");
    call(&stack, &old)
        .await
        .expect("overlap: old key still accepted");

    // Retire the old one: refused within the reload interval, new still OK.
    signer.retire("2025-a");
    eventually(Duration::from_secs(5), "old kid refused", || async {
        call(&stack, &old).await.is_err()
    })
    .await;
    assert_unauthenticated(call(&stack, &old).await, "has been retired", &old);
    call(&stack, &new).await.expect("new key");

    // A broken key set file keeps the last good set.
    std::fs::write(signer.jwks(), "{ broken").expect("break");
    tokio::time::sleep(Duration::from_millis(400)).await;
    call(&stack, &new).await.expect("last good set kept");
    assert_unauthenticated(call(&stack, &old).await, "has been retired", &old);
    stack.shutdown().await;
}

#[tokio::test]
async fn default_kid_signs_tokens_without_kid() {
    let signer = Signer::new("");
    signer.generate(KeyAlg::ES256, "main");
    let stack = signer.stack("default_kid = \"main\"").await;
    let with_kid = signer.token("main", "bob", &[]);
    call(&stack, &with_kid).await.expect("kid");
    // A token without kid is verified with the default key, not the secret:
    // an HS256 token with the legacy secret is now refused.
    let legacy = mint(JWT_SECRET, &claims("bob", 3600));
    assert_unauthenticated(
        call(&stack, &legacy).await,
        "not signed with ES256",
        &legacy,
    );
    stack.shutdown().await;
}
