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
use std::{borrow::Cow, sync::Arc};
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
    let user = count_fragments(&request.user);
    let input = count_fragments(&request.system).saturating_add(user);
    // The fragments joined by blank lines (one is used as is): no word
    // spans two of them, so the plain answer has the user fragments' tokens.
    let mut text = match request.user.as_slice() {
        [one] => Cow::Borrowed(one.as_str()),
        _ => Cow::Owned(request.user_prompt()),
    };
    let mut output = user;
    if let Some(schema) = &request.schema {
        text = Cow::Owned(super::schema_instance::instance(schema, &text).to_string());
        output = count_tokens(&text);
    } else if let Some(n) = knobs.answer_chars {
        text = Cow::Owned(fill(&text, n));
        output = count_tokens(&text);
    }
    let usage = Usage {
        input_tokens: Some(input),
        output_tokens: Some(output),
    };
    let piece = |c: &str| ProviderEvent::Text(c.to_owned());
    let mut events = Vec::with_capacity(MAX_CHUNKS + 1);
    match knobs.chunks {
        Some(n) => events.extend(split_even(&text, n).into_iter().map(piece)),
        None => events.extend(split_chunks(&text).map(piece)),
    }
    events.push(ProviderEvent::Usage(usage));
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
fn split_chunks(text: &str) -> impl Iterator<Item = &str> + '_ {
    let words = word_starts(text).count();
    let per_chunk = words.div_ceil(words.clamp(1, MAX_CHUNKS)).max(1);
    let mut cuts = word_starts(text)
        .step_by(per_chunk)
        .skip(1)
        .chain([text.len()]);
    let mut from = 0;
    std::iter::from_fn(move || {
        if from >= text.len() {
            return None;
        }
        let cut = cuts.next()?;
        let chunk = &text[from..cut];
        from = cut;
        Some(chunk)
    })
}

/// The byte offsets where the words of `text` start.
fn word_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    let mut prev_space = true;
    text.char_indices().filter_map(move |(i, c)| {
        let start = !c.is_whitespace() && prev_space;
        prev_space = c.is_whitespace();
        start.then_some(i)
    })
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
            let chunks: Vec<&str> = split_chunks(text).collect();
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
        let split = |text: &str| split_chunks(text).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(split("one two three"), vec!["one ", "two ", "three"]);
        assert_eq!(split(&"w ".repeat(100)).len(), 8);
        assert_eq!(split("single"), vec!["single"]);
        assert_eq!(split(" lead"), vec![" lead"]);
        assert_eq!(split("a  b "), vec!["a  ", "b "]);
        assert_eq!(split("   "), vec!["   "]);
        assert!(split("").is_empty());
    }

    #[test]
    fn output_tokens_are_the_answer_tokens() {
        let model = Arc::new(crate::registry::ModelEntry {
            id: "echo".into(),
            display_name: "echo".into(),
            provider: "echo".into(),
            kind: vibectl_config::ProviderKind::Echo,
            upstream_model: "echo".into(),
            aliases: vec![],
            max_context_length: None,
            input_usd_per_mtok: None,
            output_usd_per_mtok: None,
            max_output_tokens: None,
        });
        let request = ProviderRequest {
            model,
            system: vec!["be brief".into()],
            user: vec!["get pods,".into(), "-n kube_system".into()],
            schema: None,
        };
        let events = futures::executor::block_on_stream(stream(&request, Knobs::default()));
        let mut text = String::new();
        let mut usage = None;
        for event in events {
            match event {
                ProviderEvent::Text(t) => text.push_str(&t),
                ProviderEvent::Usage(u) => usage = Some(u),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(text, "get pods,\n\n-n kube_system");
        let usage = usage.expect("usage");
        assert_eq!(usage.output_tokens, Some(count_tokens(&text)));
        assert_eq!(usage.input_tokens, Some(2 + count_tokens(&text)));
    }
}
