//! Hot reload of `[limits]`: the edge watches its config file; a changed
//! rate takes effect within seconds while a client keeps calling, and no
//! call fails because of the reload; an invalid edit is refused (naming
//! the key and the file) and the previous limits stay in force.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::watch;
use tonic::Code;
use vibectl_edge::reload::ReloadStatus;
use vibectl_tests::harness::{Stack, WAIT, authed, execute_request};

const GENEROUS: &str = "[limits.per_token.alice]\nmax_requests_per_minute = 60000\nburst = 1000\n";
const STRICT: &str = "[limits.per_token.alice]\nmax_requests_per_minute = 1\nburst = 1\n";
const INVALID: &str = "[limits.per_token.alice]\nmax_requests_per_minute = 0\n";

/// Replaces `path` as editors and ConfigMaps do: write a sibling, rename.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// One call's outcome: `Ok`, or the code and `limit-type` of its status.
type Outcome = Result<(), (Code, String)>;

async fn wait_status(
    rx: &mut watch::Receiver<ReloadStatus>,
    what: &str,
    f: impl Fn(&ReloadStatus) -> bool,
) {
    tokio::time::timeout(WAIT, rx.wait_for(|s| f(s)))
        .await
        .unwrap_or_else(|_| panic!("{what} within {WAIT:?}"))
        .expect("status channel");
}

/// Waits until the caller's latest outcome satisfies `f`.
async fn wait_outcome(log: &Arc<Mutex<Vec<Outcome>>>, what: &str, f: impl Fn(&Outcome) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if log.lock().expect("lock").last().is_some_and(&f) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_changed_rate_takes_effect_while_calling_and_an_invalid_edit_keeps_the_old() {
    let stack = Stack::builder()
        .config(GENEROUS)
        .watch_config()
        .start()
        .await;
    let mut status = stack.edge.limiter().reload_status();

    // A client calling without pause for the whole test.
    let log: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let caller = {
        let (log, stop) = (log.clone(), stop.clone());
        let mut client = stack.client().await;
        let token = stack.token("alice");
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let call = client.execute(authed(execute_request(Some("echo"), "hi"), &token));
                let outcome = match tokio::time::timeout(WAIT, call).await.expect("in time") {
                    Ok(_) => Ok(()),
                    Err(s) => Err((
                        s.code(),
                        s.metadata()
                            .get("limit-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned(),
                    )),
                };
                log.lock().expect("lock").push(outcome);
            }
        })
    };
    wait_outcome(&log, "calls passing", Result::is_ok).await;

    // Tighten: within seconds the calls hit the new rate.
    replace_file(&stack.config_path, STRICT);
    wait_status(&mut status, "the strict limits applied", |s| s.applied == 1).await;
    wait_outcome(&log, "the new rate refusing calls", |o| {
        o == &Err((Code::ResourceExhausted, "rpm".to_owned()))
    })
    .await;

    // An invalid edit is refused; the strict limits stay.
    replace_file(&stack.config_path, INVALID);
    wait_status(&mut status, "the invalid file refused", |s| s.refused == 1).await;
    let error = status.borrow().last_error.clone().expect("why");
    assert!(
        error.contains("limits.per_token.alice.max_requests_per_minute"),
        "names the key: {error}"
    );
    assert!(error.contains("harness.toml"), "names the file: {error}");
    let snapshot = stack.edge.limiter().snapshot();
    assert_eq!(
        snapshot.per_token["alice"]
            .max_requests_per_minute
            .map(|n| n.get()),
        Some(1)
    );
    let seen = log.lock().expect("lock").len();
    wait_outcome(&log, "more calls", |_| true).await;
    tokio::time::timeout(WAIT, async {
        while log.lock().expect("lock").len() < seen + 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the caller goes on");
    assert!(
        log.lock().expect("lock")[seen..]
            .iter()
            .all(|o| o == &Err((Code::ResourceExhausted, "rpm".to_owned()))),
        "still the strict rate after the refused edit"
    );

    // Fixed again: calls pass again.
    replace_file(&stack.config_path, GENEROUS);
    wait_status(&mut status, "the generous limits applied", |s| {
        s.applied == 2
    })
    .await;
    wait_outcome(&log, "calls passing again", Result::is_ok).await;

    stop.cancel();
    tokio::time::timeout(WAIT, caller)
        .await
        .expect("caller stops")
        .expect("caller ok");
    // Not one call failed for any other reason than the rate.
    let outcomes = log.lock().expect("lock").clone();
    assert!(outcomes.len() > 20, "{} calls", outcomes.len());
    for outcome in &outcomes {
        assert!(
            outcome.is_ok() || outcome == &Err((Code::ResourceExhausted, "rpm".to_owned())),
            "{outcome:?}"
        );
    }
    stack.shutdown().await;
}
