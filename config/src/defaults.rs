//! Every default of the configuration, in one place, each documented.

use std::time::Duration;

/// Where the edge listens: loopback and vibectl's default port (50051), so a
/// fresh install is not exposed until the operator chooses an address.
pub const EDGE_LISTEN: &str = "127.0.0.1:50051";
/// Where the core listens: loopback only (it speaks plaintext h2c).
pub const CORE_LISTEN: &str = "127.0.0.1:50052";
/// The name `GetServerInfo` reports.
pub const SERVER_NAME: &str = "vibectl-llm-proxy";
/// Time allowed to open the h2c connection from the edge to the core.
pub const CORE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for the core's first response bytes (its response
/// headers) on a call that carries no deadline of its own (client
/// `grpc-timeout` or token timeout). A unary `Execute` only answers once the
/// model has finished: a slower model needs a longer value or a deadline.
pub const CORE_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a call with no deadline of its own may stream, in total.
pub const MAX_CALL_DURATION: Duration = Duration::from_secs(30 * 60);
/// Longest silence between two frames of a forwarded stream.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest request message (4 MiB, gRPC's usual default): larger ones are
/// refused at the edge with `limit-type: message_size`.
pub const MAX_MESSAGE_BYTES: std::num::NonZeroU32 =
    std::num::NonZeroU32::new(4 * 1024 * 1024).expect("non-zero");
/// Grace period for draining in-flight streams at shutdown (shorter than a
/// pod's default `terminationGracePeriodSeconds` of 30 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// Longest a provider call may take, end to end.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(300);
/// Time allowed to connect to a provider.
pub const PROVIDER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries of a provider call that failed before any output (429/5xx/connect).
pub const PROVIDER_MAX_RETRIES: u32 = 2;
/// Wait before the first retry of a provider call; doubled at each retry.
pub const PROVIDER_RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two tries of a provider call, and the cap on a
/// provider's `retry-after` header (a longer one is not worth holding a client).
pub const PROVIDER_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// `max_tokens` sent to Anthropic when the model sets no `max_output_tokens`
/// (the Messages API requires one).
pub const MAX_OUTPUT_TOKENS: u32 = 4096;
/// The issuer vibectl-server puts in and checks on tokens.
pub const JWT_ISSUER: &str = "vibectl-server";
/// Clock skew tolerated on `exp`/`nbf`/`iat`.
pub const JWT_LEEWAY: Duration = Duration::from_secs(60);
/// Lifetime of a token made by `generate-token` without `--expires-in`.
pub const JWT_DEFAULT_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
/// HSTS `max-age`: one year.
pub const HSTS_MAX_AGE: u64 = 31_536_000;
/// Validity of a generated self-signed certificate.
pub const SELF_SIGNED_VALIDITY_DAYS: u32 = 365;
/// Environment variable that names the config file.
pub const CONFIG_ENV: &str = "VIBECTL_PROXY_CONFIG";
/// Environment variable that names the state directory.
pub const STATE_DIR_ENV: &str = "VIBECTL_PROXY_HOME";
/// The built-in offline model.
pub const ECHO_MODEL: &str = "echo";

/// The state directory when neither config nor environment name one:
/// `~/.config/vibectl-proxy` (or `./.vibectl-proxy` without a home).
pub fn state_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV) {
        return dir.into();
    }
    dirs::config_dir()
        .map(|d| d.join("vibectl-proxy"))
        .unwrap_or_else(|| ".vibectl-proxy".into())
}

/// The config file read when none is named: `<state dir>/config.toml`.
pub fn config_file() -> std::path::PathBuf {
    state_dir().join("config.toml")
}

/// Where the edge's admin listener (`/live`, `/ready`, later `/metrics`)
/// listens: loopback, because it is plain HTTP and unauthenticated.
pub const EDGE_ADMIN_LISTEN: &str = "127.0.0.1:9095";
/// Longest a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Validity of the generated self-signed CA (ten years: clients keep
/// trusting it while leaves are re-issued beneath it).
pub const SELF_SIGNED_CA_VALIDITY_DAYS: u32 = 3650;
/// A generated leaf certificate is re-issued when it expires within this
/// many days.
pub const SELF_SIGNED_RENEW_BEFORE_DAYS: u32 = 30;
/// Environment variable holding the JWT secret itself (first in the lookup).
pub const JWT_SECRET_ENV: &str = "VIBECTL_JWT_SECRET";
/// Environment variable naming a file that holds the JWT secret.
pub const JWT_SECRET_FILE_ENV: &str = "VIBECTL_JWT_SECRET_FILE";
/// File name, under the state directory, of a generated JWT secret.
pub const JWT_SECRET_FILE_NAME: &str = "jwt-secret";
/// Where the core's `/metrics` listens: loopback (unauthenticated HTTP).
pub const CORE_METRICS_LISTEN: &str = "127.0.0.1:9096";
/// Distinct `sub` label values in metrics before the rest collapse into `other`.
pub const METRICS_MAX_SUBJECTS: usize = 100;
/// Prefix of Redis keys of the limits backend.
pub const REDIS_KEY_PREFIX: &str = "vibectl:limits:";
/// Most text chunks an `echo` provider's `chunks` knob may ask for.
pub const ECHO_MAX_CHUNKS: u32 = 100_000;
/// Most characters an `echo` provider's `answer_chars` knob may ask for
/// (every call holds its answer in memory).
pub const ECHO_MAX_ANSWER_CHARS: u32 = 1_000_000;
/// How often the edge re-checks its JWT key set and revocation files (it
/// also reacts at once to file-system events); a change is in force within it.
pub const JWT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// Failed authentications one client address may make per window before its
/// calls are refused without verification work.
pub const JWT_FAILURE_BUDGET: u32 = 10;
/// The window of [`JWT_FAILURE_BUDGET`].
pub const JWT_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// File name, under the state directory, of the JWT key set (JWKS).
pub const JWKS_FILE_NAME: &str = "jwks.json";
/// Directory name, under the state directory, of private JWT signing keys.
pub const JWT_KEYS_DIR_NAME: &str = "jwt-keys";
/// File name, under the state directory, of the token revocation list.
pub const REVOCATION_FILE_NAME: &str = "revoked-tokens.jsonl";
/// File name, under the state directory, where the edge remembers the
/// fingerprints of the JWT keys it used, to warn when one changes.
pub const JWT_KEY_FINGERPRINTS_FILE_NAME: &str = "jwt-key-fingerprints.json";
/// Suffix of Redis keys (after the limits prefix) of revoked token ids.
pub const REDIS_REVOKED_SUFFIX: &str = "revoked";
/// Longest a revocation recorded in Redis may take to reach every edge.
pub const REVOCATION_MAX_STALENESS: Duration = Duration::from_secs(2);
/// How often `[tls.files]` / private-CA certificates are re-checked beside
/// the file-system watch (a fallback: a change is normally seen at once).
pub const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
/// Validity of a root CA made by `vibectl-edge ca init`.
pub const CA_ROOT_VALIDITY_DAYS: u32 = 3650;
/// Validity of an intermediate CA made by `vibectl-edge ca init`.
pub const CA_INTERMEDIATE_VALIDITY_DAYS: u32 = 1825;
/// Validity of server and client certificates made by `vibectl-edge ca
/// create-server-cert` / `create-client-cert` (re-issue them, and watch
/// them with `ca check-expiry`).
pub const CA_LEAF_VALIDITY_DAYS: u32 = 90;
/// The ACME directory of Let's Encrypt production (`serve-acme` default).
pub const ACME_LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// The ACME directory of Let's Encrypt staging (`serve-acme --staging`).
pub const ACME_LETS_ENCRYPT_STAGING: &str =
    "https://acme-staging-v02.api.letsencrypt.org/directory";
/// Directory name, under the state directory, of the ACME cache (account
/// key and certificates).
pub const ACME_CACHE_DIR_NAME: &str = "acme";
/// More ACME orders than this in one hour log a warning: something keeps
/// failing or the cache is not kept (Let's Encrypt allows 5 failed
/// validations per account and host name per hour, 5 duplicate
/// certificates per week).
pub const ACME_ORDERS_PER_HOUR_WARN: usize = 10;
/// Time from the TLS handshake (h2c, plain HTTP: from accept) to the first
/// request's headers before a silent connection is closed.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A client connection with no request in flight for this long is closed.
pub const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// HTTP/2 PING interval towards clients (a peer that vanished is noticed).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a PING may go unanswered.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Most client connections at once (also bounded by the fd limit).
pub const MAX_CONNECTIONS: usize = 20_000;
/// Most client connections from one address (IPv6: one /64). High enough
/// for a NAT or a benchmark host; at the cap the oldest idle one is closed.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 5_000;
/// New connections per second from one address (IPv6: one /64), refused
/// at accept past it (no TLS work). A NAT of a thousand users each opening
/// a connection a minute needs 17.
pub const ACCEPT_RATE_PER_ADDRESS: u32 = 50;
/// New connections one address may open at once before the rate applies.
pub const ACCEPT_BURST_PER_ADDRESS: u32 = 200;
/// Connections of one address in set-up (TLS handshake) at once.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 64;
/// Premature-reset guard: GOAWAY past this share of streams reset by the
/// client within a second of opening (Envoy's default is 50 %).
pub const MAX_PREMATURE_RESET_PERCENT: u8 = 50;
/// Longest token lifetime accepted (`exp` - `iat`, or `exp` - now): one year.
pub const JWT_MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest `sub` a token may carry, in bytes.
pub const JWT_MAX_SUB_BYTES: usize = 256;

/// The time zone of the quota windows (calendar day and month).
pub const QUOTA_TIME_ZONE: &str = "UTC";
/// How long a quota reservation of a call that never ends (its core
/// crashed) keeps counting: longer than any provider call may take.
pub const QUOTA_RESERVATION_TTL: Duration = Duration::from_secs(600);
/// Calls' worth of a shared budget a core replica leases at once
/// (`[quota] lease_calls`; leases are carved only far from the limit).
pub const QUOTA_LEASE_CALLS: u32 = 16;
/// The usage ledger's SQLite file, in the state directory.
pub const LEDGER_SQLITE_FILE: &str = "usage.db";
/// Rows the ledger writes in one transaction at most.
pub const LEDGER_BATCH_ROWS: usize = 500;
/// Longest a finished call's row waits before it is written.
pub const LEDGER_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Rows the ledger holds in memory while the database cannot take them;
/// beyond this, new rows are dropped (and counted).
pub const LEDGER_QUEUE_ROWS: usize = 100_000;
