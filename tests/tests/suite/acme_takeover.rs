//! A crashed lock holder: three `vibectl-edge serve` processes (the real
//! binary, `[tls.acme]` with Redis storage) behind one TCP balancer that
//! Pebble (its defaults: random validation delays, 5 % badNonce) validates
//! through. The replica that ordered is killed with SIGKILL right after it
//! responded to the challenge; once its lease (3 s) expires another
//! replica takes the order over and completes it: still ONE order at
//! Pebble, both survivors serve the certificate (a client trusting only
//! Pebble's root connects to each directly), and the takeover is counted
//! (`vibectl_acme_takeovers_total`).

use super::{
    acme_common::{Core, config, try_served_leaf},
    acme_replicas::replica_extra,
    journey_support::{Home, Server, binary},
};
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};
use vibectl_tests::{
    harness::http_get,
    pebble::{Pebble, PebbleOptions},
    redis_server::RedisServer,
    tcp_balancer::TcpBalancer,
};

/// Bound on the takeover: the lease, Pebble's validation delay (≤ 15 s),
/// finalize and download, on a busy machine.
const TAKEOVER_WAIT: Duration = Duration::from_secs(90);

struct Replica {
    server: Server,
    tls: SocketAddr,
    admin: SocketAddr,
    _home: Home,
}

async fn start(home: Home, config_file: &std::path::Path) -> Replica {
    let mut command = home.command(&binary("vibectl-edge"));
    command.arg("--config").arg(config_file).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let server = Server::start(command, home.path().join("edge.log"));
    let tls = server.port_after("edge listening").await;
    let admin = server.port_after("admin listening").await;
    Replica {
        server,
        tls: SocketAddr::from(([127, 0, 0, 1], tls)),
        admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        _home: home,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_holder_killed_mid_order_another_replica_completes_the_same_order() {
    let redis = RedisServer::start().await;
    let balancer = TcpBalancer::start().await;
    let pebble = Pebble::start(PebbleOptions {
        tls_port: balancer.address().port(),
        ..Default::default()
    })
    .await;
    let mut core = Core::bind().await;
    let mut replicas = Vec::new();
    for i in 0..3 {
        let home = Home::new();
        let state = home.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let extra = format!(
            "{}[metrics]\nenabled = true\ncore_listen = \"127.0.0.1:0\"\n",
            replica_extra("tls-alpn-01", None, &redis.url())
        );
        let config = config(&state, &core.address, &pebble, &extra);
        if i == 0 {
            core.serve(&config);
        }
        replicas.push(start(home, &state.join("acme.toml")).await);
    }
    let backends: Vec<SocketAddr> = replicas.iter().map(|r| r.tls).collect();
    balancer.set_backends(&backends);

    // Kill -9 the replica that ordered, right after its challenge response.
    let deadline = Instant::now() + TAKEOVER_WAIT;
    let holder = loop {
        if let Some(i) = replicas
            .iter()
            .position(|r| r.server.log().contains("challenge responded to (once)"))
        {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no replica responded to a challenge:\n{}",
            pebble.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let killed = replicas.remove(holder);
    let killed_log = killed.server.log();
    assert!(
        !killed_log.contains("certificate downloaded"),
        "killed mid-order:\n{killed_log}"
    );
    killed.server.kill().await;
    let killed_at = Instant::now();

    let root = pebble.issuing_root().await;
    let mut served = Vec::new();
    for replica in &replicas {
        loop {
            if let Ok(leaf) = try_served_leaf(replica.tls, &root).await {
                served.push(leaf);
                break;
            }
            assert!(
                killed_at.elapsed() < TAKEOVER_WAIT,
                "no certificate from a survivor within {TAKEOVER_WAIT:?}; its log:\n{}",
                replica.server.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let took = killed_at.elapsed();
    println!(
        "takeover: every surviving replica served the certificate {took:?} after kill -9 of the lock holder"
    );
    assert_eq!(
        served[0], served[1],
        "the survivors serve the same certificate"
    );
    let logs: Vec<String> = replicas.iter().map(|r| r.server.log()).collect();
    // The same order is completed, unless the CA had already failed it:
    // killed while the CA was validating its answer, the holder can leave
    // an invalid order behind (Pebble validates once, from one place), and
    // the survivor that takes it over must then order anew, once.
    let left_invalid = logs
        .iter()
        .any(|l| l.contains("the order left behind is invalid; ordering anew"));
    assert_eq!(
        pebble.orders_added(),
        1 + usize::from(left_invalid),
        "the same order was completed (or, the CA having failed it, one new one); the survivors' logs:\n{}",
        logs.join("\n----\n")
    );

    let mut takeovers = 0;
    for replica in &replicas {
        let (_, metrics) = http_get(replica.admin, "/metrics").await;
        takeovers += u32::from(metrics.contains("vibectl_acme_takeovers_total 1"));
    }
    assert_eq!(takeovers, 1, "one survivor took the order over");
    let resumed = replicas.iter().any(|r| {
        r.server
            .log()
            .contains("resuming the order of a replica whose lease expired")
    });
    assert!(
        resumed || left_invalid,
        "the order was resumed, not placed again (unless the CA had failed it)"
    );
    for replica in replicas {
        replica.server.terminate().await;
    }
    core.stop().await;
}
