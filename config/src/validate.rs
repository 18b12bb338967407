//! Checks across keys that serde alone cannot make.

use crate::{Config, ConfigError};
use std::collections::BTreeSet;

pub(crate) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let file = cfg
        .source
        .clone()
        .unwrap_or_else(|| "<built-in defaults>".into());
    let err = |key: String, message: String| ConfigError::Invalid {
        file: file.clone(),
        key,
        message,
    };
    if let Err((key, message)) = cfg.tls.check() {
        return Err(err(key.into(), message.into()));
    }
    if let Err((key, message)) = cfg.connections.check() {
        return Err(err(key.into(), message.into()));
    }
    if cfg.edge.max_call_duration.is_zero() {
        return Err(err(
            "edge.max_call_duration".into(),
            "must be > 0 (it bounds calls that carry no deadline)".into(),
        ));
    }
    if cfg.hsts.enabled && cfg.hsts.max_age == 0 {
        return Err(err(
            "hsts.max_age".into(),
            "must be > 0 while HSTS is enabled (set hsts.enabled = false to turn it off)".into(),
        ));
    }
    if cfg.jwt.secret_key.as_ref().is_some_and(|s| s.is_empty()) {
        return Err(err("jwt.secret_key".into(), "must not be empty".into()));
    }
    if cfg.limits.backend == crate::LimitsBackend::Redis && cfg.limits.redis_url.is_none() {
        return Err(err(
            "limits.redis_url".into(),
            "is required when limits.backend = \"redis\"".into(),
        ));
    }
    if let crate::TlsMode::Acme(acme) = cfg.tls.mode()
        && acme.storage == Some(crate::AcmeStorage::Redis)
        && cfg.limits.redis_url.is_none()
    {
        return Err(err(
            "tls.acme.storage".into(),
            "\"redis\" needs limits.redis_url (the Redis the replicas share)".into(),
        ));
    }
    let mut names = BTreeSet::new();
    for (i, m) in cfg.models.iter().enumerate() {
        if m.id.trim().is_empty() {
            return Err(err(format!("models[{i}].id"), "must not be empty".into()));
        }
        if !cfg.providers.contains_key(&m.provider) {
            let known: Vec<_> = cfg.providers.keys().cloned().collect();
            return Err(err(
                format!("models[{i}].provider"),
                format!(
                    "model `{}` names provider `{}`, which is not configured (known: {})",
                    m.id,
                    m.provider,
                    known.join(", ")
                ),
            ));
        }
        for (j, name) in std::iter::once(&m.id).chain(&m.aliases).enumerate() {
            if !names.insert(name.clone()) {
                let key = if j == 0 {
                    format!("models[{i}].id")
                } else {
                    format!("models[{i}].aliases")
                };
                return Err(err(
                    key,
                    format!("`{name}` is used by more than one model or alias"),
                ));
            }
        }
        for (key, price) in [
            ("input_usd_per_mtok", m.input_usd_per_mtok),
            ("output_usd_per_mtok", m.output_usd_per_mtok),
        ] {
            if price.is_some_and(|p| !p.is_finite() || p < 0.0) {
                return Err(err(
                    format!("models[{i}].{key}"),
                    "must be a number >= 0".into(),
                ));
            }
        }
    }
    crate::quota::validate(cfg).map_err(|(key, message)| err(key, message))?;
    if let Err((key, message)) = cfg.ledger.check() {
        return Err(err(key.into(), message));
    }
    if let Some(default) = &cfg.core.default_model
        && !names.contains(default)
    {
        return Err(err(
            "core.default_model".into(),
            format!("`{default}` is neither a model id nor an alias in [[models]]"),
        ));
    }
    Ok(())
}
