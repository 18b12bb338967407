//! The echo provider's benchmark knobs: `chunks` (that many text chunks)
//! and `answer_chars` (the input repeated to that many characters), with no
//! artificial delay; refused with the key and file named on any other kind.

use crate::support;

use std::path::Path;
use support::{Core, WAIT, config, kinds, request, success, texts};

fn bench_config(knobs: &str) -> vibectl_config::Config {
    config(&format!(
        "[providers.bench]\nkind = \"echo\"\n{knobs}\n\
         [[models]]\nid = \"bench\"\nprovider = \"bench\"\n"
    ))
}

#[tokio::test]
async fn two_hundred_chunks_of_the_configured_answer_size_arrive() {
    let core = Core::start(bench_config("chunks = 200\nanswer_chars = 4000")).await;
    let started = std::time::Instant::now();
    let chunks = core
        .stream(request(
            Some("bench"),
            &[],
            &["kubectl get pods "],
            "bench-1",
        ))
        .await;
    let texts = texts(&chunks);
    assert_eq!(texts.len(), 200);
    let answer = texts.concat();
    assert_eq!(answer.chars().count(), 4000);
    assert!(answer.starts_with("kubectl get pods kubectl get pods "));
    assert!(texts.iter().all(|t| t.chars().count() == 20));
    assert_eq!(&kinds(&chunks)[200..], ["complete", "metrics"]);
    assert!(started.elapsed() < WAIT);
    // Unary: the same answer, in one piece.
    let resp = core
        .execute(request(
            Some("bench"),
            &[],
            &["kubectl get pods "],
            "bench-2",
        ))
        .await;
    let ok = success(resp);
    assert_eq!(ok.response_text, answer);
    core.stop().await;
}

#[tokio::test]
async fn each_knob_works_alone() {
    let core = Core::start(bench_config("chunks = 3")).await;
    let chunks = core
        .stream(request(Some("bench"), &[], &["abcdefghi"], "bench-3"))
        .await;
    assert_eq!(texts(&chunks), ["abc", "def", "ghi"]);
    core.stop().await;
    let core = Core::start(bench_config("answer_chars = 10")).await;
    let chunks = core
        .stream(request(Some("bench"), &[], &["ab"], "bench-4"))
        .await;
    assert_eq!(texts(&chunks).concat(), "ababababab");
    core.stop().await;
}

#[test]
fn knobs_on_an_openai_provider_are_a_config_error_naming_the_key() {
    for key in ["chunks", "answer_chars"] {
        let text = format!(
            "[providers.oa]\nkind = \"openai\"\n{key} = 200\n\
             [[models]]\nid = \"m\"\nprovider = \"oa\"\n"
        );
        let err = vibectl_config::Config::from_toml(&text, Path::new("bench.toml"))
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("bench.toml") && err.contains("providers.oa") && err.contains(key),
            "{err}"
        );
        assert!(err.contains("echo"), "{err}");
    }
}
