//! What counts as a DNS name in the configuration (ACME domains, DNS-01
//! zones): one definition for every section that names hosts.

/// A DNS name a CA can validate: labels of letters, digits and hyphens (not
/// at either end), at most 63 bytes each and 253 in all, not all-numeric
/// (an IP address).
pub fn is_dns_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && !labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit()))
}
