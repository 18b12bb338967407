//! Authentication and identity at the edge, end to end: each kind of bad
//! token is `UNAUTHENTICATED` with a message that says what is wrong and
//! how to send a token (never the token itself); HSTS is on successes and
//! refusals alike; client-sent identity headers never reach the core.

use tonic::{Code, Request, Status};
use vibectl_proto::{
    GetServerInfoRequest,
    wire::{CALLER_HEADER, Caller},
};
use vibectl_tests::{
    fake_core::StubbornCore,
    harness::{JWT_SECRET, Stack, WAIT, authed, claims, mint},
};

const HSTS: &str = "strict-transport-security";

/// Calls `GetServerInfo` with `authorization: <header>` (or none) and
/// returns the refusal.
async fn refused(stack: &Stack, authorization: Option<&str>) -> Status {
    let mut client = stack.client().await;
    let mut request = Request::new(GetServerInfoRequest {});
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("ascii"));
    }
    let status = tokio::time::timeout(WAIT, client.get_server_info(request))
        .await
        .expect("answered in time")
        .expect_err("must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let message = status.message();
    // How to send a token when none (or no readable one) came; else what to
    // do about the token sent.
    let sent = authorization.is_some_and(|a| a.starts_with("Bearer ey"));
    assert_eq!(
        message.contains("authorization: Bearer <jwt>") && message.contains("--jwt-path"),
        !sent,
        "says how: {message}"
    );
    assert_eq!(
        message.contains("ask for a new one") || message.contains("for a new token"),
        sent,
        "says what to do: {message}"
    );
    if let Some(token) = authorization.and_then(|a| a.split_whitespace().last()) {
        assert!(
            !message.contains(token),
            "the token is never echoed: {message}"
        );
    }
    status
}

#[tokio::test]
async fn each_bad_token_is_unauthenticated_with_its_reason() {
    let stack = Stack::start().await;
    let wrong_secret = mint("not-the-server-secret-0123456789", &claims("mallory", 3600));
    let expired = mint(JWT_SECRET, &claims("bob", -3600));
    let mut other_issuer = claims("bob", 3600);
    other_issuer["iss"] = "someone-else".into();
    let mut no_exp = claims("bob", 3600);
    no_exp.as_object_mut().expect("object").remove("exp");
    let cases: [(Option<String>, &str); 7] = [
        (None, "missing `authorization`"),
        (Some("Basic dXNlcjpwYXNz".into()), "not a Bearer token"),
        (Some("Bearer not.a.jwt".into()), "malformed"),
        (
            Some(format!("Bearer {wrong_secret}")),
            "signature is invalid",
        ),
        (Some(format!("Bearer {expired}")), "expired"),
        (
            Some(format!("Bearer {}", mint(JWT_SECRET, &other_issuer))),
            "issuer is wrong",
        ),
        (
            Some(format!("Bearer {}", mint(JWT_SECRET, &no_exp))),
            "no `exp` claim",
        ),
    ];
    for (header, reason) in cases {
        let status = refused(&stack, header.as_deref()).await;
        assert!(
            status.message().contains(reason),
            "{header:?}: {}",
            status.message()
        );
    }
    stack.shutdown().await;
}

#[tokio::test]
async fn hsts_is_on_a_success_and_on_a_refusal() {
    let stack = Stack::start().await;
    let mut client = stack.client().await;
    let ok = client
        .get_server_info(authed(GetServerInfoRequest {}, &stack.token("alice")))
        .await
        .expect("OK");
    assert_eq!(
        ok.metadata().get(HSTS).expect("HSTS on success"),
        "max-age=31536000"
    );
    assert!(
        ok.metadata().get("x-request-id").is_some(),
        "request id echoed"
    );
    let refusal = refused(&stack, None).await;
    assert_eq!(
        refusal
            .metadata()
            .get(HSTS)
            .expect("HSTS on UNAUTHENTICATED"),
        "max-age=31536000"
    );
    stack.shutdown().await;
}

/// `GetServerInfo` (OK) with `x-vibectl-caller: admin`, `x-vibectl-sub:
/// admin` and `x-vibectl-role: root` sent by the client, with `token` if
/// given.
async fn spoofing_call(stack: &Stack, token: Option<&str>) {
    let mut client = stack.client().await;
    let mut request = match token {
        Some(token) => authed(GetServerInfoRequest {}, token),
        None => Request::new(GetServerInfoRequest {}),
    };
    for (key, value) in [
        ("x-vibectl-caller", "admin"),
        ("x-vibectl-sub", "admin"),
        ("x-vibectl-role", "root"),
    ] {
        request
            .metadata_mut()
            .append(key, value.parse().expect("ascii"));
    }
    tokio::time::timeout(WAIT, client.get_server_info(request))
        .await
        .expect("in time")
        .expect("OK");
}

#[tokio::test]
async fn client_sent_identity_headers_cannot_spoof_the_subject() {
    let recorder = StubbornCore::default();
    let core = recorder.served().await;
    let stack = Stack::builder()
        .external_core(&core.addr.to_string())
        .start()
        .await;

    spoofing_call(&stack, Some(&stack.token("alice"))).await;
    let seen = recorder.last();
    let callers: Vec<_> = seen.get_all(CALLER_HEADER).iter().collect();
    assert_eq!(callers.len(), 1, "one caller header: {seen:?}");
    let caller = Caller::parse(callers[0].to_str().expect("ascii"));
    assert_eq!(caller.sub, "alice", "exactly the verified sub");
    assert!(caller.jti.is_some(), "the token's jti: {caller:?}");
    assert!(
        seen.get("x-vibectl-role").is_none() && seen.get("x-vibectl-sub").is_none(),
        "other x-vibectl-* stripped"
    );
    assert!(
        seen.get("authorization").is_none(),
        "the token stays at the edge"
    );

    stack.shutdown().await;
    core.stop().await;
}

#[tokio::test]
async fn with_auth_disabled_identity_headers_are_still_stripped() {
    let recorder = StubbornCore::default();
    let core = recorder.served().await;
    let stack = Stack::builder()
        .config("[edge]\nrequire_auth = false\n")
        .external_core(&core.addr.to_string())
        .start()
        .await;
    spoofing_call(&stack, None).await;
    let seen = recorder.last();
    assert!(seen.get(CALLER_HEADER).is_none(), "no caller: {seen:?}");
    assert!(seen.get("x-vibectl-sub").is_none());
    assert!(seen.get("x-vibectl-role").is_none());
    stack.shutdown().await;
    core.stop().await;
}
