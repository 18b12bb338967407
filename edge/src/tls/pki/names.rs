//! The names that go into certificates: host names (DNS names and IP
//! addresses) and client names, normalised or refused with the reason.

use super::PkiError;
use std::net::IpAddr;

/// Normalises a host name for a certificate: an IP address in canonical
/// form, or a DNS name in lower case (letters, digits, `-`, `.`, `_`, and a
/// leading `*.` wildcard label).
pub fn normalize_host(name: &str) -> Result<String, PkiError> {
    let trimmed = name.trim();
    let bad = |reason| PkiError::BadHost {
        name: name.to_owned(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let lower = trimmed.to_ascii_lowercase();
    let body = lower.strip_prefix("*.").unwrap_or(&lower);
    if lower.len() > 253 {
        return Err(bad("it is longer than 253 characters"));
    }
    for label in body.split('.') {
        if label.is_empty() {
            return Err(bad("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 characters"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad(
                "only letters, digits, '-', '_' and '.' (and a leading '*.') are allowed",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label starts or ends with '-'"));
        }
    }
    Ok(lower)
}

/// Checks a client name (it becomes the common name and `clients/NAME.crt`).
pub fn check_client_name(name: &str) -> Result<(), PkiError> {
    let bad = |reason| PkiError::BadClientName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("it must have 1 to 64 characters"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(bad("it must not start with '.' or '-'"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(bad(
            "only letters, digits, '-', '_', '.' and '@' are allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised_and_checked() {
        assert_eq!(
            normalize_host(" Proxy.Example.COM ").expect("dns"),
            "proxy.example.com"
        );
        assert_eq!(normalize_host("::0001").expect("ip"), "::1");
        assert_eq!(
            normalize_host("*.example.com").expect("wildcard"),
            "*.example.com"
        );
        for bad in ["", "bad host", "a..b", "-a.b", "é.example", "a/b", "*"] {
            let err = normalize_host(bad).expect_err(bad).to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }
}
