//! [`Text`]: a queued row's strings (request id, `sub`, `kid`, `jti`),
//! held inline when short. A call allocates and frees its own strings on
//! its own thread; a row that took them would move their memory to the
//! ledger's thread to be freed there (the allocator's slower path on both
//! threads: about 500 instructions a row, callgrind).

use std::fmt;

/// Bytes held inline: a request id (16 characters from the edge, or a
/// client's 36-character UUID), most `sub`s, key ids and `jti`s.
const INLINE: usize = 46;

/// A string copied into the row: inline up to [`INLINE`] bytes, else on
/// the heap.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Text {
    /// A copy of `text`.
    pub fn new(text: &str) -> Self {
        let src = text.as_bytes();
        match u8::try_from(src.len()) {
            Ok(len) if src.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..src.len()].copy_from_slice(src);
                Text(Repr::Inline { len, bytes })
            }
            _ => Text(Repr::Heap(text.into())),
        }
    }

    /// The text's bytes (UTF-8; no check, unlike [`Text::as_str`]: what
    /// the SQLite writer binds and compares per row).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(text) => text.as_bytes(),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied from a `str` whole: always UTF-8.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Heap(text) => text,
        }
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_texts_read_back_whole() {
        for text in [
            "",
            "-",
            "alice",
            &"é".repeat(23),
            &"x".repeat(46),
            &"y".repeat(47),
            &"z".repeat(300),
        ] {
            let t = Text::new(text);
            assert_eq!(t.as_str(), text);
            assert_eq!(t.as_bytes(), text.as_bytes());
            assert_eq!(t.clone().to_string(), text);
        }
        assert!(matches!(Text::new(&"x".repeat(46)).0, Repr::Inline { .. }));
        assert!(matches!(Text::new(&"x".repeat(47)).0, Repr::Heap(_)));
    }
}
