//! A simple deterministic tokenizer: the `echo` model's token counts, and
//! the estimate used when a provider reports no usage (e.g. a stream cut
//! short). A token is a run of letters, digits and `_`, or any other single
//! non-whitespace character; whitespace is free.

/// Number of tokens in `text`.
pub fn count_tokens(text: &str) -> u32 {
    if text.is_ascii() {
        return count_ascii(text.as_bytes());
    }
    let mut count: u32 = 0;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' {
            if !in_word {
                count = count.saturating_add(1);
                in_word = true;
            }
        } else {
            in_word = false;
            if !c.is_whitespace() {
                count = count.saturating_add(1);
            }
        }
    }
    count
}

/// The class of each ASCII byte for [`count_ascii`]: the same classes as
/// `char::is_alphanumeric` / `char::is_whitespace` give its character.
const ASCII_CLASS: [Class; 128] = {
    let mut classes = [Class::Other; 128];
    let mut b = 0;
    while b < 128 {
        let byte = b as u8;
        classes[b] = if byte.is_ascii_alphanumeric() || byte == b'_' {
            Class::Word
        } else if matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            Class::Space
        } else {
            Class::Other
        };
        b += 1;
    }
    classes
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Word,
    Space,
    Other,
}

/// [`count_tokens`] of ASCII text, a byte at a time.
fn count_ascii(text: &[u8]) -> u32 {
    let mut count: usize = 0;
    let mut in_word = false;
    for &b in text {
        match ASCII_CLASS[usize::from(b & 0x7f)] {
            Class::Word => {
                count += usize::from(!in_word);
                in_word = true;
            }
            Class::Space => in_word = false,
            Class::Other => {
                count += 1;
                in_word = false;
            }
        }
    }
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Number of tokens in all `fragments` together (each counted on its own,
/// so a word never spans two fragments).
pub fn count_fragments<S: AsRef<str>>(fragments: &[S]) -> u32 {
    fragments
        .iter()
        .fold(0u32, |n, f| n.saturating_add(count_tokens(f.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_punctuation() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("   \n\t"), 0);
        assert_eq!(count_tokens("hello"), 1);
        assert_eq!(count_tokens("hello world"), 2);
        assert_eq!(count_tokens("Hello, world!"), 4);
        assert_eq!(count_tokens("kubectl get pods -n kube_system"), 6);
        assert_eq!(count_tokens("naïve café"), 2);
        assert_eq!(count_tokens("a\u{b}b\u{c}c\rd"), 4, "ASCII whitespace");
        assert_eq!(count_tokens("\u{1}x"), 2, "a control character counts");
    }

    #[test]
    fn ascii_path_agrees_with_the_general_one() {
        for b in 0u8..128 {
            let c = char::from(b);
            let word = c.is_alphanumeric() || c == '_';
            let expected = u32::from(word || !c.is_whitespace());
            assert_eq!(count_ascii(&[b]), expected, "byte {b}");
        }
    }

    #[test]
    fn fragments_add_up() {
        assert_eq!(count_fragments(&["a b", "c."]), 4);
        assert_eq!(count_fragments::<&str>(&[]), 0);
    }
}
