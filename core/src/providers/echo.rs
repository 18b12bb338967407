//! The built-in, offline `echo` model: streams the user fragments back (joined
//! by blank lines) in word groups, with token counts from
//! [`crate::tokenizer`]. Deterministic and without delays: tests and demos
//! need no key and no network.

use super::{EventStream, ProviderEvent, ProviderRequest, Usage};
use crate::tokenizer::{count_fragments, count_tokens};

/// At most this many chunks per answer (fewer for short inputs: one word per
/// chunk then).
const MAX_CHUNKS: usize = 8;

/// The events of one echo call.
pub(super) fn stream(request: &ProviderRequest) -> EventStream {
    let text = request.user_prompt();
    let input = count_fragments(&request.system).saturating_add(count_fragments(&request.user));
    let usage = Usage {
        input_tokens: Some(input),
        output_tokens: Some(count_tokens(&text)),
    };
    let events: Vec<ProviderEvent> = split_chunks(&text)
        .into_iter()
        .map(|c| ProviderEvent::Text(c.to_owned()))
        .chain([ProviderEvent::Usage(usage)])
        .collect();
    Box::pin(futures::stream::iter(events))
}

/// Splits `text` at word starts into at most [`MAX_CHUNKS`] groups of
/// words; the chunks put together are exactly `text`.
fn split_chunks(text: &str) -> Vec<&str> {
    let mut starts = Vec::new();
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        if !c.is_whitespace() && prev_space {
            starts.push(i);
        }
        prev_space = c.is_whitespace();
    }
    if starts.is_empty() {
        return if text.is_empty() {
            Vec::new()
        } else {
            vec![text]
        };
    }
    let per_chunk = starts.len().div_ceil(starts.len().min(MAX_CHUNKS));
    let mut cuts: Vec<usize> = starts.iter().copied().step_by(per_chunk).skip(1).collect();
    cuts.push(text.len());
    let mut chunks = Vec::with_capacity(cuts.len());
    let mut from = 0;
    for cut in cuts {
        chunks.push(&text[from..cut]);
        from = cut;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_rebuild_the_text() {
        for text in [
            "",
            "  ",
            "one",
            "one two three",
            " lead and trail ",
            "a b c d e f g h i j k l m n o p q r",
        ] {
            let chunks = split_chunks(text);
            assert_eq!(chunks.concat(), text);
            assert!(chunks.len() <= MAX_CHUNKS);
        }
    }

    #[test]
    fn multi_word_input_gives_several_chunks() {
        assert_eq!(split_chunks("one two three"), vec!["one ", "two ", "three"]);
        assert_eq!(split_chunks(&"w ".repeat(100)).len(), 8);
        assert_eq!(split_chunks("single"), vec!["single"]);
    }
}
