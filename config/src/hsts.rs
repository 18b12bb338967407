//! `[hsts]`: the `Strict-Transport-Security` header the edge sends.

use crate::defaults;
use serde::Deserialize;

/// `[hsts]`: `Strict-Transport-Security` on every response over TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HstsConfig {
    /// Send the header (on by default).
    pub enabled: bool,
    /// `max-age`, in seconds.
    pub max_age: u64,
    /// Add `includeSubDomains`.
    pub include_subdomains: bool,
    /// Add `preload` (only after submitting the domain to the preload list).
    pub preload: bool,
}

impl Default for HstsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: defaults::HSTS_MAX_AGE,
            include_subdomains: false,
            preload: false,
        }
    }
}

impl HstsConfig {
    /// The header value, or `None` when disabled.
    pub fn header_value(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        Some(v)
    }
}
