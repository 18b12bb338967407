//! A simple deterministic tokenizer: the `echo` model's token counts, and
//! the estimate used when a provider reports no usage (e.g. a stream cut
//! short). A token is a run of letters, digits and `_`, or any other single
//! non-whitespace character; whitespace is free.

/// Number of tokens in `text`.
pub fn count_tokens(text: &str) -> u32 {
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
    }

    #[test]
    fn fragments_add_up() {
        assert_eq!(count_fragments(&["a b", "c."]), 4);
        assert_eq!(count_fragments::<&str>(&[]), 0);
    }
}
