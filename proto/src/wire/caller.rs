//! The verified caller as the edge passes it to the core: one header,
//! [`CALLER_HEADER`], `<sub>` then `\tkid=<kid>` and `\tjti=<jti>` when the
//! token has them (`alice\tjti=0b7c…`). One header rather than one per
//! claim: the edge sends it on every call, and each header costs its HPACK
//! encoding on the edge, its decoding and a lookup on the core. Each value
//! is percent-encoded as a `grpc-message` is (every byte outside printable
//! ASCII, and `%`), so none holds a tab; the core keeps them encoded, as
//! its quotas, ledger and metrics have always seen them.

/// The header (see the module doc).
pub const CALLER_HEADER: &str = "x-vibectl-caller";

/// The caller's claims, percent-encoded, as [`CALLER_HEADER`] carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The token's `sub`.
    pub sub: &'a str,
    /// The `kid` of the key that verified the token.
    pub kid: Option<&'a str>,
    /// The token's `jti`.
    pub jti: Option<&'a str>,
}

impl<'a> Caller<'a> {
    /// The header's value.
    pub fn to_header(&self) -> String {
        let mut out = String::with_capacity(
            self.sub.len()
                + self.kid.map_or(0, |k| k.len() + 5)
                + self.jti.map_or(0, |j| j.len() + 5),
        );
        out.push_str(self.sub);
        for (key, value) in [("\tkid=", self.kid), ("\tjti=", self.jti)] {
            if let Some(value) = value {
                out.push_str(key);
                out.push_str(value);
            }
        }
        out
    }

    /// Reads a header value: the part before the first tab is the `sub`;
    /// a later part that is neither `kid=` nor `jti=` is ignored (only the
    /// edge sets the header).
    pub fn parse(value: &'a str) -> Self {
        let mut rest = Some(value);
        let mut caller = Self {
            sub: cut(&mut rest).unwrap_or_default(),
            ..Self::default()
        };
        while let Some(part) = cut(&mut rest) {
            if let Some(kid) = part.strip_prefix("kid=") {
                caller.kid = Some(kid);
            } else if let Some(jti) = part.strip_prefix("jti=") {
                caller.jti = Some(jti);
            }
        }
        caller
    }
}

/// The part of `rest` before its first tab (all of it without one), and
/// `rest` moved past that tab. A byte loop: `str::split` runs a char
/// searcher per part, several times the cost on a value this short.
fn cut<'a>(rest: &mut Option<&'a str>) -> Option<&'a str> {
    let value = rest.take()?;
    match value.bytes().position(|b| b == b'\t') {
        Some(i) => {
            *rest = Some(&value[i + 1..]);
            Some(&value[..i])
        }
        None => Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_round_trip_with_and_without_kid_and_jti() {
        let full = Caller {
            sub: "alice@example.com",
            kid: Some("key-2026=1"),
            jti: Some("0b7c6f1e-3a52"),
        };
        assert_eq!(
            full.to_header(),
            "alice@example.com\tkid=key-2026=1\tjti=0b7c6f1e-3a52"
        );
        let only_jti = Caller {
            sub: "bench",
            jti: Some("j1"),
            ..Caller::default()
        };
        let bare = Caller {
            sub: "a b,c=d%25",
            ..Caller::default()
        };
        for caller in [full, only_jti, bare] {
            assert_eq!(Caller::parse(&caller.to_header()), caller);
        }
        assert_eq!(
            bare.to_header(),
            "a b,c=d%25",
            "a sub alone is the whole value"
        );
        assert_eq!(Caller::parse("").sub, "");
        assert_eq!(
            Caller::parse("bob\tcolor=red\tjti=x"),
            Caller {
                sub: "bob",
                jti: Some("x"),
                ..Caller::default()
            }
        );
    }
}
