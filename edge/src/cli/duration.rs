//! `--expires-in`: `30d`, `12h`, `90m`, `45s`, `2w`, `1y` (vibectl-server's
//! forms), or any humantime duration (`1h 30m`).

use std::time::Duration;

/// Why an `--expires-in` value is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExpiresInError {
    /// More seconds than fit.
    #[error("`{0}` is too long")]
    TooLong(String),
    /// Not a duration at all.
    #[error("`{text}` is not a duration like 30d, 12h or 90m ({source})")]
    NotADuration {
        /// What was given.
        text: String,
        /// humantime's reason.
        source: humantime::DurationError,
    },
    /// Zero.
    #[error("a token must live longer than 0 seconds")]
    Zero,
}

/// Parses a token lifetime; zero is refused.
pub fn parse_expires_in(text: &str) -> Result<Duration, ExpiresInError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let seconds_per = match unit.trim() {
        "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86_400),
        "w" => Some(7 * 86_400),
        "y" => Some(365 * 86_400),
        _ => None,
    };
    let duration = match (digits.parse::<u64>(), seconds_per) {
        (Ok(n), Some(per)) => n
            .checked_mul(per)
            .map(Duration::from_secs)
            .ok_or_else(|| ExpiresInError::TooLong(text.to_owned()))?,
        _ => humantime::parse_duration(text).map_err(|source| ExpiresInError::NotADuration {
            text: text.to_owned(),
            source,
        })?,
    };
    if duration.is_zero() {
        return Err(ExpiresInError::Zero);
    }
    Ok(duration)
}

/// A token lifetime as an operator reads it: whole days as `N days`
/// (`1y` is 365 days, as [`parse_expires_in`] reads it), anything else in
/// humantime's form (`12h 30m`), never humantime's 30.44-day months.
pub fn show_lifetime(lifetime: Duration) -> String {
    let secs = lifetime.as_secs();
    let (days, rest) = (secs / 86_400, Duration::from_secs(secs % 86_400));
    let days = match days {
        0 => return humantime::format_duration(lifetime).to_string(),
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    };
    if rest.is_zero() {
        days
    } else {
        format!("{days} {}", humantime::format_duration(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_shown_in_days() {
        let parsed = |t: &str| show_lifetime(parse_expires_in(t).expect("valid"));
        assert_eq!(parsed("2y"), "730 days");
        assert_eq!(parsed("1y"), "365 days");
        assert_eq!(parsed("1d"), "1 day");
        assert_eq!(parsed("36h"), "1 day 12h");
        assert_eq!(parsed("90m"), "1h 30m");
    }

    #[test]
    fn vibectl_forms() {
        assert_eq!(
            parse_expires_in("30d"),
            Ok(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(parse_expires_in("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_expires_in("90m"), Ok(Duration::from_secs(90 * 60)));
        assert_eq!(parse_expires_in("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_expires_in("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(
            parse_expires_in("1y"),
            Ok(Duration::from_secs(365 * 86_400))
        );
        assert_eq!(parse_expires_in("1h 30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn bad_forms_are_explained() {
        for bad in ["", "abc", "10x", "-5d", "0d", "99999999999999999999y"] {
            assert!(parse_expires_in(bad).is_err(), "{bad}");
        }
        assert!(
            parse_expires_in("10x")
                .expect_err("bad unit")
                .to_string()
                .contains("30d")
        );
    }
}
