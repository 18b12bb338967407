//! `GetServerInfo`'s answer: the models a caller can use (those whose
//! provider has credentials, or echo alone when none has), every name the
//! caller may send for them in `model_aliases` (so the real client, which
//! resolves names from this answer before it calls, accepts its own model
//! names), the default, and a version the client accepts.
//!
//! vibectl 0.11.6 (`ProxyModelAdapter._check_version_compatibility`) warns
//! "Version skew detected" whenever `server_version` is not exactly its own
//! version string. So `server_version` is the vibectl protocol version this
//! server speaks ([`CLIENT_VERSION`]), and `server_name` names this server
//! and its own version.

use crate::{registry::Registry, scope};
use std::collections::{BTreeMap, HashMap};
use vibectl_proto::{GetServerInfoResponse, ModelInfo, ServerLimits};

/// The vibectl release whose wire protocol this server speaks, reported as
/// `server_version`.
pub const CLIENT_VERSION: &str = "0.11.6";

/// `server_name` as reported: the configured name and this build's version.
pub fn server_name(configured: &str, registry: &Registry) -> String {
    let name = format!("{configured} {} (Rust)", env!("CARGO_PKG_VERSION"));
    if registry.offline() {
        format!("{name}; offline: echo answers every model")
    } else {
        name
    }
}

/// The answer for a caller whose token allows `allowed` models (`None`:
/// any) and whose limits are `limits`.
pub fn answer(
    registry: &Registry,
    allowed: Option<&str>,
    limits: ServerLimits,
    server_name: String,
) -> GetServerInfoResponse {
    let permitted = |name: &str| {
        let (id, names) = registry.scope_names(name);
        scope::check(allowed, &id, &names).is_ok()
    };
    let listed: Vec<_> = registry.listed().collect();
    // Every name the caller may send, by the listed model that answers it.
    let mut aliases = HashMap::new();
    let mut visible = BTreeMap::new();
    for name in registry.names() {
        if !permitted(name) {
            continue;
        }
        let Ok(model) = registry.resolve(Some(name)) else {
            continue;
        };
        let Some(position) = listed.iter().position(|m| m.id == model.id) else {
            continue;
        };
        visible.insert(position, model.clone());
        if name != model.id {
            aliases.insert(name.to_owned(), model.id.clone());
        }
    }
    let default_model = default_for(registry, allowed)
        .filter(|id| visible.values().any(|m| m.id == *id))
        .unwrap_or_default();
    let available_models = visible
        .values()
        .map(|m| ModelInfo {
            model_id: m.id.clone(),
            display_name: if registry.offline() {
                format!("{} — {}", m.display_name, crate::registry::OFFLINE_NOTE)
            } else {
                m.display_name.clone()
            },
            provider: m.provider.clone(),
            supports_streaming: true,
            max_context_length: m
                .max_context_length
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            aliases: m.aliases.clone(),
        })
        .collect();
    GetServerInfoResponse {
        available_models,
        default_model,
        limits: Some(limits),
        server_version: CLIENT_VERSION.to_owned(),
        model_aliases: aliases,
        server_name,
    }
}

/// The model a request without a name gets: for a scoped token the first
/// model of its scope that resolves, else the server's default.
pub fn default_for(registry: &Registry, allowed: Option<&str>) -> Option<String> {
    match allowed {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .find_map(|n| registry.resolve(Some(n)).ok())
            .map(|m| m.id.clone()),
        None => registry.resolve(None).ok().map(|m| m.id.clone()),
    }
}
