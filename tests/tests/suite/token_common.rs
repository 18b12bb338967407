//! Helpers of the `token_*` tests: a signing side (its own state dir, key
//! set and private keys, made by the edge's own `keys` and `generate-token`
//! code), stacks that verify with that key set, calls that report the
//! status, and bounded polling. Every wait is bounded.

use std::{future::Future, path::PathBuf, time::Duration};
use tonic::{Code, Status};
use vibectl_config::Config;
use vibectl_edge::{
    auth::{KeyAlg, SecretEnv},
    cli::{
        keys,
        token::{self, GenerateTokenArgs},
    },
};
use vibectl_proto::{GetServerInfoRequest, GetServerInfoResponse};
use vibectl_tests::harness::{Stack, WAIT, authed, execute_request};

/// How often the test stacks re-read their key set and revocation files.
pub const RELOAD: &str = "100ms";

/// The signing side: a state dir with `jwks.json`, `jwt-keys/` and
/// `revoked-tokens.jsonl`, as `vibectl-edge keys …` leaves them.
pub struct Signer {
    pub dir: tempfile::TempDir,
    pub config: Config,
}

impl Signer {
    /// An empty signing side; `jwt` is extra `[jwt]` TOML (e.g. `audience`).
    pub fn new(jwt: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::from_toml(&format!("[jwt]\n{jwt}"), &dir.path().join("s.toml"))
            .expect("signer config");
        config.edge.state_dir = Some(dir.path().to_owned());
        Self { dir, config }
    }

    /// `keys generate --alg ALG --kid KID`.
    pub fn generate(&self, alg: KeyAlg, kid: &str) {
        keys::generate(&self.config, alg, Some(kid)).expect("keys generate");
    }

    /// `keys retire --kid KID`.
    pub fn retire(&self, kid: &str) {
        keys::retire(&self.config, kid).expect("keys retire");
    }

    pub fn jwks(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    pub fn revocations(&self) -> PathBuf {
        self.dir.path().join("revoked-tokens.jsonl")
    }

    /// `generate-token SUB --kid KID [--models …]`, one hour.
    pub fn token(&self, kid: &str, sub: &str, models: &[&str]) -> String {
        self.try_token(kid, sub, models, Duration::from_secs(3600))
            .expect("generate-token")
    }

    pub fn try_token(
        &self,
        kid: &str,
        sub: &str,
        models: &[&str],
        lifetime: Duration,
    ) -> Result<String, vibectl_edge::EdgeError> {
        token::generate_token(
            &self.config,
            &SecretEnv::default(),
            &GenerateTokenArgs {
                subject: sub.to_owned(),
                expires_in: Some(lifetime),
                output: None,
                kid: Some(kid.to_owned()),
                key_file: None,
                models: models.iter().map(|m| (*m).to_owned()).collect(),
                not_before: None,
            },
        )
    }

    /// A stack (edge and core) verifying this signer's tokens, `jwt` in
    /// its `[jwt]` ([`Self::stack_toml`]).
    pub async fn stack(&self, jwt: &str) -> Stack {
        Stack::builder()
            .config(&self.stack_toml(jwt, ""))
            .start()
            .await
    }

    /// The stack TOML: `[jwt]` reading this signer's key set and revocation
    /// file, re-read every [`RELOAD`], plus `jwt` keys; then `rest`.
    pub fn stack_toml(&self, jwt: &str, rest: &str) -> String {
        format!(
            "[jwt]\njwks_file = {:?}\nrevocation_file = {:?}\nreload_interval = \"{RELOAD}\"\n{jwt}\n{rest}",
            self.jwks(),
            self.revocations()
        )
    }
}

/// `GetServerInfo` with `token`: the answer or the status.
pub async fn server_info(stack: &Stack, token: &str) -> Result<GetServerInfoResponse, Status> {
    let mut client = stack.client().await;
    tokio::time::timeout(
        WAIT,
        client.get_server_info(authed(GetServerInfoRequest {}, token)),
    )
    .await
    .expect("answered in time")
    .map(tonic::Response::into_inner)
}

/// `GetServerInfo` with `token`: OK or the status.
pub async fn call(stack: &Stack, token: &str) -> Result<(), Status> {
    server_info(stack, token).await.map(|_| ())
}

/// `Execute` on `model` with `token`: OK (in-band errors included) or the status.
pub async fn execute(stack: &Stack, token: &str, model: &str) -> Result<(), Status> {
    let mut client = stack.client().await;
    tokio::time::timeout(
        WAIT,
        client.execute(authed(execute_request(Some(model), "hi"), token)),
    )
    .await
    .expect("answered in time")
    .map(|_| ())
}

/// Asserts `result` is UNAUTHENTICATED with `reason` in its message, and
/// that the message never holds the token.
pub fn assert_unauthenticated(result: Result<(), Status>, reason: &str, token: &str) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains(reason),
        "{reason}: {}",
        status.message()
    );
    assert!(!status.message().contains(token), "{}", status.message());
}

/// Polls `check` every 50 ms until it is true; panics after `within`.
/// Returns how long it took.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
