//! Renewal beyond the happy path: a served certificate that expires while
//! the CA is gone turns `/ready` 503 naming the expiry; with a CA whose
//! directory offers ARI (RFC 9773 `renewalInfo`, served by the test's
//! proxy beside Pebble, whose Debian build has none) the renewal happens
//! inside the suggested window, and the window is fetched again after the
//! `Retry-After` the CA sent, so a window the CA moves earlier is followed.

use super::acme_common::{DOMAIN, listeners_and_pebble, ready, start_edge, wait_ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vibectl_tests::{
    acme_proxy::{AcmeProxy, RenewalInfo, rfc3339_in},
    pebble::PebbleOptions,
};

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_makes_ready_503_naming_the_expiry() {
    let options = PebbleOptions {
        validity: Some(Duration::from_secs(8)),
        ..PebbleOptions::without_waits()
    };
    let (listeners, pebble) = listeners_and_pebble(false, options).await;
    let url = pebble.directory_url();
    let (edge, core, _state) = start_edge(listeners, &pebble, &url, &[DOMAIN], "").await;
    edge.wait_issued(&pebble).await;
    wait_ready(&edge, Duration::from_secs(1)).await;
    // The CA goes away: the renewal fails, the certificate runs out.
    drop(pebble);
    let mut status = edge.status();
    tokio::time::timeout(Duration::from_secs(20), status.wait_for(|s| s.expired))
        .await
        .expect("expired within its lifetime")
        .expect("status");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let (code, body) = ready(&edge).await;
        if code == 503 {
            assert!(body.contains("the served certificate expired at"), "{body}");
            assert!(body.contains("last error: order failed"), "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{code} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    edge.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_window_is_followed_and_its_retry_after_honoured() {
    let (listeners, pebble) = listeners_and_pebble(false, PebbleOptions::without_waits()).await;
    // First a window a day ahead, asked again every 2 s.
    let far = RenewalInfo {
        start: rfc3339_in(86_400),
        end: rfc3339_in(2 * 86_400),
        retry_after_secs: 2,
    };
    let proxy = AcmeProxy::start(&pebble, 0, Some(far)).await;
    let (edge, core, _state) = start_edge(
        listeners,
        &pebble,
        &proxy.directory_url(),
        &[DOMAIN],
        "[metrics]\nenabled = true\ncore_listen = \"127.0.0.1:0\"\n",
    )
    .await;
    edge.wait_issued(&pebble).await;
    edge.wait_for("a renewal time from the window", &pebble, |s| {
        s.renew_at.is_some()
    })
    .await;
    let status = edge.status().borrow().clone();
    let (now, renew_at) = (unix_now(), status.renew_at.expect("renew_at"));
    assert!(
        (now + 86_400 - 2..=now + 2 * 86_400).contains(&renew_at),
        "renewal at a point of the window: {status:?}"
    );
    assert_eq!(status.renewals, 0);

    // The CA moves the window to a few seconds from now: after the next
    // Retry-After the edge sees it and renews inside it.
    let (start, end) = (unix_now() + 3, unix_now() + 6);
    proxy.set_renewal_info(RenewalInfo {
        start: rfc3339_in(3),
        end: rfc3339_in(6),
        retry_after_secs: 2,
    });
    edge.wait_for("renewed", &pebble, |s| s.issued >= 2).await;
    let status = edge.status().borrow().clone();
    let downloaded_ms = status.downloaded_at_unix_ms.expect("downloaded") as i64;
    let ordered_at = (downloaded_ms - status.issue_millis.expect("took") as i64) / 1000;
    assert!(
        (start - 1..=end + 1).contains(&ordered_at),
        "ordered at {ordered_at}, window {start}..{end}: {status:?}"
    );
    assert!(status.ari_window_start.is_some(), "{status:?}");
    // The renewal alert's ARI series is exposed.
    let (_, metrics) = vibectl_tests::harness::http_get(edge.admin, "/metrics").await;
    assert!(
        crate::support::sample(&metrics, "vibectl_acme_ari_window_start_seconds", &[])
            .is_some_and(|t| t > 0.0),
        "vibectl_acme_ari_window_start_seconds (used by an alert) in\n{metrics}"
    );
    assert_eq!(status.renewals, 1, "{status:?}");
    // The first window, then the moved one, fetched after the Retry-After.
    assert!(
        proxy.renewal_info_requests() >= 2,
        "asked again after the Retry-After: {}",
        proxy.renewal_info_requests()
    );
    assert_eq!(pebble.orders_added(), 2, "one order per certificate");
    // The renewal order named the certificate it replaces (RFC 9773 §5),
    // by the identifier its renewal information was asked with.
    let first = proxy.first_renewal_info_id().expect("renewalInfo asked");
    assert_eq!(
        proxy.replaces(),
        [None, Some(first)],
        "replaces on renewal only"
    );
    edge.stop().await;
    core.stop().await;
}
