//! The built-in, offline `echo` model: streams the user fragments back (joined
//! by blank lines) in word groups, with token counts from
//! [`crate::tokenizer`]. Deterministic and without delays: tests and demos
//! need no key and no network. For benchmarks, two knobs of its
//! `[providers.NAME]` shape the answer: `answer_chars` (the input repeated
//! to exactly that many characters) and `chunks` (that many text chunks of
//! equal size); still no artificial delay. Asked for structured output
//! (`response_model_schema`), it answers with the smallest JSON the schema
//! accepts ([`super::schema_instance`]), strings holding the echoed text.

use super::{EventStream, Provider, ProviderEvent, ProviderRequest, Usage};
use crate::tokenizer::{count_fragments, count_tokens};
use std::sync::Arc;
use vibectl_config::ProviderConfig;

/// At most this many chunks per answer (fewer for short inputs: one word per
/// chunk then).
const MAX_CHUNKS: usize = 8;

/// What fills `answer_chars` when the input is empty.
const FILLER: &str = "echo ";

/// The benchmark knobs of one echo provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Knobs {
    /// Number of text chunks (`chunks`).
    chunks: Option<usize>,
    /// Size of the answer in characters (`answer_chars`).
    answer_chars: Option<usize>,
}

impl Knobs {
    fn from_config(cfg: &ProviderConfig) -> Self {
        let size = |n: Option<std::num::NonZeroU32>| {
            n.map(|n| usize::try_from(n.get()).unwrap_or(usize::MAX))
        };
        Self {
            chunks: size(cfg.chunks),
            answer_chars: size(cfg.answer_chars),
        }
    }
}

/// An echo provider.
#[derive(Debug)]
pub(super) struct Echo(Knobs);

impl Echo {
    pub(super) fn from_config(cfg: &ProviderConfig) -> Self {
        Self(Knobs::from_config(cfg))
    }
}

impl Provider for Echo {
    fn stream(self: Arc<Self>, request: ProviderRequest) -> EventStream {
        stream(&request, self.0)
    }
}

/// The events of one echo call.
fn stream(request: &ProviderRequest, knobs: Knobs) -> EventStream {
    let input = count_fragments(&request.system).saturating_add(count_fragments(&request.user));
    let mut text = request.user_prompt();
    if let Some(schema) = &request.schema {
        text = super::schema_instance::instance(schema, &text).to_string();
    } else if let Some(n) = knobs.answer_chars {
        text = fill(&text, n);
    }
    let usage = Usage {
        input_tokens: Some(input),
        output_tokens: Some(count_tokens(&text)),
    };
    let chunks = match knobs.chunks {
        Some(n) => split_even(&text, n),
        None => split_chunks(&text),
    };
    let events: Vec<ProviderEvent> = chunks
        .into_iter()
        .map(|c| ProviderEvent::Text(c.to_owned()))
        .chain([ProviderEvent::Usage(usage)])
        .collect();
    Box::pin(futures::stream::iter(events))
}

/// `text` repeated (or cut) to exactly `chars` characters.
fn fill(text: &str, chars: usize) -> String {
    let source = if text.is_empty() { FILLER } else { text };
    source.chars().cycle().take(chars).collect()
}

/// Splits `text` into `n` pieces of (nearly) equal character counts; fewer
/// when it has fewer than `n` characters. Put together they are `text`.
fn split_even(text: &str, n: usize) -> Vec<&str> {
    let total = text.chars().count();
    let parts = n.min(total);
    if parts == 0 {
        return Vec::new();
    }
    let offsets: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    (0..parts)
        .map(|i| {
            let from = offsets[i * total / parts];
            let to = offsets[(i + 1) * total / parts];
            &text[from..to]
        })
        .collect()
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
    fn knobs_shape_the_answer() {
        assert_eq!(fill("ab", 5), "ababa");
        assert_eq!(fill("", 7), "echo ec");
        assert_eq!(fill("héllo", 3), "hél");
        let text = fill("naïve input ", 2000);
        assert_eq!(text.chars().count(), 2000);
        let chunks = split_even(&text, 200);
        assert_eq!(chunks.len(), 200);
        assert!(chunks.iter().all(|c| c.chars().count() == 10));
        assert_eq!(chunks.concat(), text);
        assert_eq!(split_even("abc", 10), vec!["a", "b", "c"]);
        assert_eq!(split_even("abcde", 2).concat(), "abcde");
        assert!(split_even("", 3).is_empty());
    }

    #[test]
    fn multi_word_input_gives_several_chunks() {
        assert_eq!(split_chunks("one two three"), vec!["one ", "two ", "three"]);
        assert_eq!(split_chunks(&"w ".repeat(100)).len(), 8);
        assert_eq!(split_chunks("single"), vec!["single"]);
    }
}
