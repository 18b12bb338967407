//! The auth layer as the request path runs it (auth inside rescue, so
//! refusals are gRPC statuses): property tests that any `authorization`
//! value — arbitrary bytes, arbitrary Bearer strings, JWT-shaped garbage
//! with any header — never panics and always ends UNAUTHENTICATED; and the
//! per-address failure budget (the peer address the listener records in
//! the request's context).

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header::AUTHORIZATION};
use http_body_util::{BodyExt, Empty};
use proptest::prelude::*;
use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};
use tower::{Service, ServiceBuilder, ServiceExt, util::BoxCloneService};
use vibectl_config::{Config, Secret};
use vibectl_edge::{
    auth::{KeyAlg, TokenVerifier, budget::FailureBudget, keygen, mint_token},
    http::{BoxError, EdgeBody, RequestContext, auth, rescue::RescueLayer},
};

const SECRET: &str = "layer-test-secret-0123456789abcdefgh";

type Svc = BoxCloneService<Request<()>, Response<EdgeBody>, std::convert::Infallible>;

fn stack(verifier: TokenVerifier) -> Svc {
    let policy = verifier.policy();
    let budget = Arc::new(FailureBudget::new(
        policy.failure_budget,
        policy.failure_window,
    ));
    stack_with(verifier, budget)
}

fn stack_with(verifier: TokenVerifier, budget: Arc<FailureBudget>) -> Svc {
    let ok = tower::service_fn(|_req: Request<()>| async {
        let body: EdgeBody = Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        Ok::<_, BoxError>(Response::new(body))
    });
    BoxCloneService::new(
        ServiceBuilder::new()
            .layer(RescueLayer)
            .layer(auth::layer(Arc::new(verifier), budget))
            .service(ok),
    )
}

/// A verifier with every algorithm in its key set and the legacy secret
/// (made once: RSA key generation is slow).
fn full_verifier() -> TokenVerifier {
    static VERIFIER: OnceLock<TokenVerifier> = OnceLock::new();
    VERIFIER.get_or_init(make_verifier).clone()
}

fn make_verifier() -> TokenVerifier {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys: Vec<_> = KeyAlg::ALL
            .iter()
            .map(|alg| {
                let kid = format!("k-{}", alg.name());
                serde_json::Value::Object(keygen::generate(*alg, &kid, 0).expect("keygen").jwk)
            })
            .collect();
        std::fs::write(
            dir.path().join("jwks.json"),
            serde_json::json!({ "keys": keys }).to_string(),
        )
        .expect("jwks");
        dir
    });
    let mut config = Config::default();
    config.edge.state_dir = Some(dir.path().to_owned());
    TokenVerifier::from_config(&config, Some(&Secret::new(SECRET)), None).expect("verifier")
}

/// Sends one request; returns (grpc-status, grpc-message) ("0" when passed).
fn send(
    svc: &Svc,
    authorization: Option<HeaderValue>,
    peer: Option<SocketAddr>,
) -> (String, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(send_async(svc, authorization, peer))
}

async fn send_async(
    svc: &Svc,
    authorization: Option<HeaderValue>,
    peer: Option<SocketAddr>,
) -> (String, String) {
    let mut request = Request::builder()
        .uri("/vibectl.llm_proxy.VibectlLLMProxy/GetServerInfo")
        .body(())
        .expect("request");
    if let Some(value) = authorization {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    if let Some(peer) = peer {
        request
            .extensions_mut()
            .insert(RequestContext::new(peer, None));
    }
    let mut svc = svc.clone();
    let response = svc
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("infallible");
    let get = |k: &str| {
        response
            .headers()
            .get(k)
            .map(|v| v.to_str().unwrap_or("?").to_owned())
    };
    (
        get("grpc-status").unwrap_or_else(|| "0".into()),
        get("grpc-message").unwrap_or_default(),
    )
}

fn b64(bytes: &[u8]) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(bytes)
}

fn header_json() -> impl Strategy<Value = String> {
    let alg = prop_oneof![
        Just("HS256".to_owned()),
        Just("ES256".to_owned()),
        Just("RS256".to_owned()),
        Just("EdDSA".to_owned()),
        Just("none".to_owned()),
        Just("HS512".to_owned()),
        "[a-zA-Z0-9]{0,8}",
    ];
    let kid = prop_oneof![
        Just(None),
        Just(Some("k-ES256".to_owned())),
        Just(Some("k-RS256".to_owned())),
        Just(Some("k-HS256".to_owned())),
        Just(Some("k-EdDSA".to_owned())),
        ".{0,20}".prop_map(Some),
    ];
    (alg, kid, any::<bool>()).prop_map(|(alg, kid, crit)| {
        let mut h = serde_json::json!({ "alg": alg, "typ": "JWT" });
        if let Some(kid) = kid {
            h["kid"] = kid.into();
        }
        if crit {
            h["crit"] = serde_json::json!(["exp"]);
        }
        h.to_string()
    })
}

fn claims_json() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,64}",
        (any::<i64>(), any::<i64>(), ".{0,12}").prop_map(|(exp, iat, sub)| {
            serde_json::json!({"sub": sub, "iss": "vibectl-server", "exp": exp, "iat": iat,
                               "models": [sub], "aud": [sub]})
            .to_string()
        }),
        Just(r#"{"sub":"x","exp":1e400}"#.to_owned()),
        Just(r#"{"sub":["x"],"exp":"soon"}"#.to_owned()),
    ]
}

fn jwt_shaped() -> impl Strategy<Value = String> {
    (
        header_json(),
        claims_json(),
        proptest::collection::vec(any::<u8>(), 0..300),
        0usize..6,
    )
        .prop_map(|(h, c, sig, dots)| {
            let mut token = format!("{}.{}.{}", b64(h.as_bytes()), b64(c.as_bytes()), b64(&sig));
            for _ in 3..dots {
                token.push('.');
            }
            token
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_authorization_bytes_are_unauthenticated(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let svc = &stack(full_verifier());
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let (status, message) = send(svc, Some(value), None);
            prop_assert_eq!(status, "16", "{}", message);
        }
    }

    #[test]
    fn arbitrary_bearer_strings_are_unauthenticated(token in ".{0,600}") {
        let svc = &stack(full_verifier());
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            let (status, message) = send(svc, Some(value), None);
            prop_assert_eq!(status, "16", "{}", message);
            prop_assert!(token.len() < 12 || !message.contains(&token));
        }
    }

    #[test]
    fn jwt_shaped_garbage_is_unauthenticated(token in jwt_shaped()) {
        let svc = &stack(full_verifier());
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("ascii");
        let (status, message) = send(svc, Some(value), None);
        prop_assert_eq!(status, "16", "{}", message);
        prop_assert!(!message.contains(&token));
    }
}

#[tokio::test(start_paused = true)]
async fn an_address_past_its_budget_is_refused_cheaply_but_valid_tokens_are_served() {
    let mut jwt = Config::default().jwt;
    jwt.failure_budget = 3;
    jwt.failure_window = Duration::from_secs(60);
    let budget = Arc::new(FailureBudget::new(3, Duration::from_secs(60)));
    let svc = stack_with(
        TokenVerifier::new(&Secret::new(SECRET), &jwt),
        budget.clone(),
    );
    // One NAT address: a client with garbage and one with a valid token.
    let nat: SocketAddr = "198.51.100.7:40000".parse().expect("addr");
    let valid = mint_token(
        &Secret::new(SECRET),
        "vibectl-server",
        "ann",
        Duration::from_secs(600),
    )
    .expect("mint");
    let foreign = mint_token(
        &Secret::new(SECRET),
        "someone-else",
        "eve",
        Duration::from_secs(600),
    )
    .expect("mint");
    let bearer = |t: &str| Some(HeaderValue::from_str(&format!("Bearer {t}")).expect("ascii"));
    for _ in 0..3 {
        let (status, message) = send_async(&svc, bearer("not.a.jwt"), Some(nat)).await;
        assert_eq!(status, "16");
        assert!(message.contains("malformed"), "{message}");
    }
    assert_eq!(budget.refusals(), 0);
    for round in 0..50 {
        // Past the budget, bad tokens are refused before any signature work
        // (counted), with their own reason ...
        let (status, message) = send_async(&svc, bearer("not.a.jwt"), Some(nat)).await;
        assert_eq!(status, "16");
        assert!(message.contains("malformed"), "{message}");
        let (status, message) = send_async(&svc, bearer(&foreign), Some(nat)).await;
        assert_eq!(status, "16");
        assert!(message.contains("issuer"), "{message}");
        // ... while the valid token from the same address is served every time.
        let (status, message) = send_async(&svc, bearer(&valid), Some(nat)).await;
        assert_eq!(status, "0", "round {round}: {message}");
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = send_async(&svc, bearer("x.y.z"), Some(nat)).await;
        let _ = send_async(&svc, bearer("a.b.c"), Some(nat)).await;
        let _ = send_async(&svc, bearer("a.b.d"), Some(nat)).await;
    }
    assert!(budget.refusals() >= 100, "{}", budget.refusals());
}
