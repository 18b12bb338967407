//! DNS-01 against a real BIND 9 (`named` on loopback, a test zone taking
//! TSIG-signed RFC 2136 updates) and a real Pebble resolving through it:
//! a wildcard certificate is issued and served to a client trusting only
//! Pebble's root, and the `_acme-challenge` TXT record is gone afterwards;
//! a TSIG key the server refuses stops the start with an error naming the
//! key (never its secret), and nothing is ordered.

use super::acme_common::{
    Core, config_for_domains, listeners_and_pebble, refused_start, served_leaf, server_info,
    start_edge,
};
use std::path::Path;
use vibectl_edge::app::Binds;
use vibectl_tests::{
    bind::{Bind, KEY_NAME},
    pebble::{Pebble, PebbleOptions},
};

pub(crate) const ZONE: &str = "vibectl.test";
pub(crate) const WILDCARD: &str = "*.vibectl.test";

/// `[tls.acme]` lines for dns-01 through `bind` (for [`WILDCARD`]), the
/// TSIG secret read from `key_file`.
pub(crate) fn dns_acme(bind: &Bind, key_file: &Path) -> String {
    format!(
        "challenge = \"dns-01\"\n[tls.acme.dns01]\nserver = \"{server}\"\nzone = \"{ZONE}\"\n\
         key_name = \"{KEY_NAME}\"\nalgorithm = \"hmac-sha256\"\nsecret_file = \"{key}\"\n\
         propagation_timeout = \"20s\"\n",
        server = bind.address(),
        key = key_file.display(),
    )
}

/// BIND serving [`ZONE`], the edge's listeners, and Pebble (validation
/// delays off) resolving through BIND.
async fn bind_and_pebble() -> (Bind, Binds, Pebble) {
    let bind = Bind::start(ZONE).await;
    let options = PebbleOptions {
        dns_server: Some(bind.address()),
        ..PebbleOptions::without_waits()
    };
    let (listeners, pebble) = listeners_and_pebble(false, options).await;
    (bind, listeners, pebble)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_certificate_is_issued_through_bind_and_its_txt_record_removed() {
    let (bind, listeners, pebble) = bind_and_pebble().await;
    let url = pebble.directory_url();
    let acme = dns_acme(&bind, &bind.key_file());
    let (edge, core, _state) = start_edge(listeners, &pebble, &url, &[WILDCARD], &acme).await;
    edge.wait_for("issued by dns-01", &pebble, |s| s.issued >= 1)
        .await;

    // edge.vibectl.test is covered only by the wildcard, verified against
    // Pebble's root alone; a gRPC call goes through.
    let root = pebble.issuing_root().await;
    served_leaf(edge.tls, &root).await;
    let channel = super::acme_common::channel(edge.tls, &root)
        .await
        .expect("h2 over the ACME certificate");
    server_info(channel).await.expect("a call through the edge");
    let status = edge.status().borrow().clone();
    assert!(status.serving(), "{status:?}");
    assert_eq!(pebble.orders_added(), 1, "one order");
    assert_eq!((status.orders, status.failed_orders), (1, 0), "{status:?}");

    // The TXT record was added and is gone again.
    let log = bind.log();
    assert!(
        log.contains("adding an RR at '_acme-challenge.vibectl.test' TXT"),
        "named took the update:\n{log}"
    );
    assert!(
        log.contains("deleting an RR at _acme-challenge.vibectl.test TXT"),
        "named took the removal:\n{log}"
    );
    assert_eq!(
        bind.txt("_acme-challenge.vibectl.test"),
        Vec::<String>::new(),
        "the TXT record is removed after the order"
    );
    edge.stop().await;
    core.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_tsig_key_stops_the_start_naming_the_key_and_orders_nothing() {
    let (bind, listeners, pebble) = bind_and_pebble().await;
    let state = tempfile::tempdir().expect("tempdir");
    let core = Core::bind().await;
    let wrong = bind.wrong_key_file(state.path());
    let url = pebble.directory_url();
    let acme = dns_acme(&bind, &wrong);
    let config = config_for_domains(
        state.path(),
        &core.address,
        &pebble,
        &url,
        &[WILDCARD],
        &acme,
    );
    let error = refused_start(listeners, config).await;
    eprintln!("start error: {error}");
    assert!(
        error.contains(KEY_NAME) && error.contains("tls.acme.dns01"),
        "names the key and the table: {error}"
    );
    assert!(
        error.contains(&bind.address().to_string()),
        "names the server: {error}"
    );
    for file in [wrong, bind.key_file()] {
        let text = std::fs::read_to_string(&file).expect("key file");
        let secret = text
            .split('"')
            .nth(3)
            .expect("secret in the key file")
            .to_owned();
        assert!(!error.contains(&secret), "the secret leaked: {error}");
    }
    assert_eq!(pebble.orders_added(), 0, "nothing ordered");
}
