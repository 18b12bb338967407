//! Asymmetric keys: every algorithm by kid, algorithm confusion, imported
//! PEM keys, the default kid replacing the legacy secret, registered-claim
//! policy (nbf, aud, max_lifetime), revocation reloads and the key set's
//! file digest.

use super::*;

#[test]
fn every_algorithm_signs_and_verifies_by_kid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = edge_config(tmp.path(), &all_keys(), "");
    let verifier = keys_verifier(&config);
    for alg in KeyAlg::ALL {
        let token = mint(&signing_key(alg), &spec("alice")).expect("mint");
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, alg.algorithm());
        assert_eq!(header.kid.as_deref(), Some(kid(alg).as_str()));
        let verified = verifier.verify_token(&token).expect("verifies");
        assert_eq!(verified.claims.sub, "alice");
        assert_eq!(verified.kid.as_deref(), Some(kid(alg).as_str()));
        assert_eq!(verified.alg, alg);
    }
}

#[test]
fn algorithm_confusion_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = edge_config(tmp.path(), &all_keys(), "");
    let verifier = keys_verifier(&config);
    let claims = json!({"sub": "mallory", "iss": "vibectl-server", "exp": now() + 600}).to_string();
    // The RSA public key, as PEM and as its JWK members, used as an HMAC
    // secret under the RSA key's kid: the kid pins RS256.
    let rsa_kid = kid(KeyAlg::RS256);
    let n = key(KeyAlg::RS256).jwk["n"].as_str().expect("n").to_owned();
    let rsa_pem = public_pem_of(KeyAlg::RS256);
    for hmac_key in [rsa_pem.as_bytes(), n.as_bytes()] {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": rsa_kid}).to_string();
        refused_by(
            &verifier,
            &sign_raw(&header, &claims, hmac_key),
            AuthError::WrongAlgorithm {
                expected: "RS256".into(),
            },
        );
    }
    // Nor as the legacy secret: a PEM never serves as an HMAC secret.
    let err = TokenVerifier::from_config(&config, Some(&Secret::new(rsa_pem.clone())), None)
        .expect_err("PEM as HS256 secret");
    assert!(
        err.to_string().contains("never serve as an HMAC secret"),
        "{err}"
    );
    // `alg: none`, with or without a signature, with or without kid.
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "None", "kid": rsa_kid}),
        json!({"alg": "NONE", "typ": "JWT"}),
    ] {
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(&claims)
        );
        refused_by(&verifier, &unsigned, AuthError::Malformed);
        let with_sig = format!("{unsigned}c2ln");
        refused_by(&verifier, &with_sig, AuthError::Unsigned);
    }
    // An ES256 token presented under the RS256 key's kid.
    let mut es = signing_key(KeyAlg::ES256);
    es.kid = Some(rsa_kid.clone());
    refused_by(
        &verifier,
        &mint(&es, &spec("mallory")).expect("mint"),
        AuthError::WrongAlgorithm {
            expected: "RS256".into(),
        },
    );
    // An RS256 token claiming the ES256 kid.
    let mut rs = signing_key(KeyAlg::RS256);
    rs.kid = Some(kid(KeyAlg::ES256));
    refused_by(
        &verifier,
        &mint(&rs, &spec("mallory")).expect("mint"),
        AuthError::WrongAlgorithm {
            expected: "ES256".into(),
        },
    );
    // `crit` extensions are not understood, so refused.
    let header = json!({"alg": "HS256", "crit": ["exp"], "exp": 1}).to_string();
    refused_by(
        &verifier,
        &sign_raw(&header, &claims, SECRET.as_bytes()),
        AuthError::UnsupportedHeader,
    );
    // Unknown kid.
    let mut unknown = signing_key(KeyAlg::ES256);
    unknown.kid = Some("nobody".into());
    refused_by(
        &verifier,
        &mint(&unknown, &spec("x")).expect("mint"),
        AuthError::UnknownKey {
            kid: "nobody".into(),
        },
    );
}

/// The PEM public key of a generated key, rebuilt from its JWK.
fn public_pem_of(alg: KeyAlg) -> String {
    use rsa::{BigUint, pkcs8::EncodePublicKey};
    assert_eq!(alg, KeyAlg::RS256);
    let jwk = &key(alg).jwk;
    let part = |m: &str| {
        BigUint::from_bytes_be(
            &URL_SAFE_NO_PAD
                .decode(jwk[m].as_str().expect("member"))
                .expect("b64"),
        )
    };
    rsa::RsaPublicKey::new(part("n"), part("e"))
        .expect("public key")
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .expect("pem")
}

#[test]
fn imported_public_pem_matches_the_generated_jwk() {
    let pem = public_pem_of(KeyAlg::RS256);
    let jwk =
        keygen::public_jwk_from_pem(pem.as_bytes(), KeyAlg::RS256, "imported", 1).expect("import");
    assert_eq!(jwk["n"], key(KeyAlg::RS256).jwk["n"]);
    assert!(keygen::public_jwk_from_pem(pem.as_bytes(), KeyAlg::ES256, "x", 1).is_err());
    let private = key(KeyAlg::ES256).private.as_bytes();
    let err = keygen::public_jwk_from_pem(private, KeyAlg::ES256, "x", 1).expect_err("private");
    assert!(err.to_string().contains("PRIVATE"), "{err}");
}

#[test]
fn default_kid_replaces_the_legacy_secret_and_retired_keys_stop() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let es = kid(KeyAlg::ES256);
    let mut jwks = all_keys();
    let config = edge_config(
        tmp.path(),
        &jwks,
        &format!("[jwt]\ndefault_kid = \"{es}\"\n"),
    );
    let verifier = keys_verifier(&config);
    let mut es_key = signing_key(KeyAlg::ES256);
    es_key.kid = None;
    let kidless = mint(&es_key, &spec("alice")).expect("mint");
    assert_eq!(
        verifier.verify_token(&kidless).expect("default kid").kid,
        Some(es.clone())
    );
    let legacy = legacy_token(SECRET, "a");
    refused_by(
        &verifier,
        &legacy,
        AuthError::WrongAlgorithm {
            expected: "ES256".into(),
        },
    );
    // Retire the EdDSA key in the file: refused after a reload.
    let ed_token = mint(&signing_key(KeyAlg::EdDSA), &spec("bob")).expect("mint");
    assert!(verifier.verify(&ed_token).is_ok());
    for k in jwks["keys"].as_array_mut().expect("keys") {
        if k["alg"] == "EdDSA" {
            k["status"] = "retired".into();
        }
    }
    std::fs::write(tmp.path().join("jwks.json"), jwks.to_string()).expect("write");
    verifier.reload();
    refused_by(
        &verifier,
        &ed_token,
        AuthError::KeyRetired {
            kid: kid(KeyAlg::EdDSA),
        },
    );
    // A bad file keeps the last good set; a vanished one too.
    std::fs::write(tmp.path().join("jwks.json"), "{ not json").expect("write");
    verifier.reload();
    assert!(verifier.verify(&kidless).is_ok(), "kept the last good set");
    std::fs::remove_file(tmp.path().join("jwks.json")).expect("rm");
    verifier.reload();
    assert!(verifier.verify(&kidless).is_ok(), "kept the last good set");
    // A default kid absent from the set is a start-up error.
    let missing = edge_config(
        tmp.path(),
        &json!({"keys": []}),
        "[jwt]\ndefault_kid = \"k9\"\n",
    );
    let err = TokenVerifier::from_config(&missing, None, None).expect_err("no such key");
    assert!(err.to_string().contains("jwt.default_kid"), "{err}");
}

#[test]
fn nbf_aud_and_max_lifetime() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = edge_config(
        tmp.path(),
        &all_keys(),
        "[jwt]\naudience = \"llm-proxy\"\nmax_lifetime = \"1d\"\n",
    );
    let verifier = keys_verifier(&config);
    let es = signing_key(KeyAlg::ES256);
    let ok = TokenSpec {
        audience: Some("llm-proxy".into()),
        ..spec("alice")
    };
    assert!(verifier.verify(&mint(&es, &ok).expect("mint")).is_ok());
    let expected = AuthError::WrongAudience {
        expected: "llm-proxy".into(),
    };
    refused_by(
        &verifier,
        &mint(&es, &spec("a")).expect("mint"),
        expected.clone(),
    );
    let other = TokenSpec {
        audience: Some("other".into()),
        ..spec("a")
    };
    refused_by(&verifier, &mint(&es, &other).expect("mint"), expected);
    let early = TokenSpec {
        not_before: Some(now() + 3600),
        ..ok.clone()
    };
    refused_by(
        &verifier,
        &mint(&es, &early).expect("mint"),
        AuthError::TokenNotYetValid,
    );
    let long = TokenSpec {
        lifetime: Duration::from_secs(2 * 86_400),
        ..ok.clone()
    };
    refused_by(
        &verifier,
        &mint(&es, &long).expect("mint"),
        AuthError::LifetimeTooLong { max: "1day".into() },
    );
    // A future `iat` does not shorten the measured lifetime.
    let sneaky = sign_json(
        &json!({"sub": "m", "iss": "vibectl-server", "aud": "llm-proxy",
                "iat": now() + 30 * 86_400, "exp": now() + 30 * 86_400 + 60})
        .to_string(),
        SECRET,
    );
    refused_by(
        &verifier,
        &sneaky,
        AuthError::LifetimeTooLong { max: "1day".into() },
    );
    // `models` must be a list of header-safe names.
    let bad_models = sign_json(
        &json!({"sub": "m", "iss": "vibectl-server", "aud": "llm-proxy",
                "exp": now() + 60, "models": ["a,b"]})
        .to_string(),
        SECRET,
    );
    refused_by(
        &verifier,
        &bad_models,
        AuthError::InvalidClaim {
            claim: "models".into(),
        },
    );
}

#[test]
fn revoked_tokens_are_refused_after_a_reload() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = edge_config(tmp.path(), &all_keys(), "");
    let verifier = keys_verifier(&config);
    let token = mint(&signing_key(KeyAlg::EdDSA), &spec("carol")).expect("mint");
    let claims = verifier.verify(&token).expect("valid");
    revocation::record_in_file(
        &config.jwt.revocation_path(tmp.path()),
        &revocation::Revocation {
            jti: claims.jti.clone().expect("jti"),
            exp: Some(claims.exp),
            sub: Some(claims.sub.clone()),
            revoked_at: now(),
        },
    )
    .expect("record");
    verifier.reload();
    let decision = verifier.decide(&token);
    assert_eq!(decision.verdict, Err(AuthError::Revoked));
    assert_eq!(
        decision.sub.as_deref(),
        Some("carol"),
        "authentic sub for the audit"
    );
    assert!(
        AuthError::Revoked
            .client_message()
            .contains("token revoked")
    );
}

#[test]
fn key_set_digest_skips_unchanged_files() {
    let set = KeySet::parse(all_keys().to_string().as_bytes()).expect("parse");
    assert_eq!(set.len(), 4);
    assert!(set.has_secret_keys, "the HS256 key is a secret");
}
