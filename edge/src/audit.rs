//! The audit log: one structured line per authentication decision, on the
//! tracing target `vibectl_edge::audit` (route or filter it on its own,
//! e.g. `RUST_LOG=info,vibectl_edge::audit=info`). A line says who
//! (`sub`, `kid`, `jti` — only when the token's signature verified, so
//! they are authentic), from where (`peer`: the TCP peer address, never a
//! client-sent header), what (`path`), and the `result` with its `reason`.
//! It never holds the token, any part of it, or a key.

use crate::auth::{AuthError, Decision};
use std::net::SocketAddr;

/// The tracing target of audit lines.
pub const TARGET: &str = "vibectl_edge::audit";

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// Logs one verification decision.
pub fn decision(peer: Option<SocketAddr>, path: &str, decision: &Decision) {
    // Nothing to format when audit lines are filtered out.
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let peer = peer.map(|p| p.ip().to_string());
    let peer = or_dash(peer.as_deref());
    match &decision.verdict {
        Ok(verified) => tracing::info!(
            target: TARGET,
            result = "accepted",
            reason = "ok",
            sub = ?verified.claims.sub,
            kid = or_dash(verified.kid.as_deref()),
            jti = ?or_dash(verified.claims.jti.as_deref()),
            alg = verified.alg.name(),
            peer,
            path,
            "authentication"
        ),
        Err(error) => refused(peer, path, decision, error),
    }
}

fn refused(peer: &str, path: &str, decision: &Decision, error: &AuthError) {
    tracing::info!(
        target: TARGET,
        result = "refused",
        reason = error.reason(),
        sub = ?or_dash(decision.sub.as_deref()),
        kid = or_dash(decision.kid.as_deref()),
        jti = ?or_dash(decision.jti.as_deref()),
        peer,
        path,
        "authentication"
    );
}

/// Logs a refusal made before any verification (no or bad `authorization`
/// metadata, or the address's failure budget is spent).
pub fn refused_early(peer: Option<SocketAddr>, path: &str, error: &AuthError) {
    let peer = peer.map(|p| p.ip().to_string());
    let empty = Decision {
        verdict: Err(error.clone()),
        kid: None,
        sub: None,
        jti: None,
    };
    refused(or_dash(peer.as_deref()), path, &empty, error);
}
