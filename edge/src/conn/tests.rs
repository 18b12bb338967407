use super::*;
use std::net::IpAddr;

fn limits(max_total: usize, max_per_address: usize) -> Limits {
    Limits {
        first_request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_total,
        max_per_address,
        max_premature_reset_percent: 50,
        accept_rate_per_address: 0,
        accept_burst_per_address: 1,
        max_handshakes_per_address: 0,
        proxy_trusted: Vec::new(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[tokio::test(start_paused = true)]
async fn at_the_total_cap_the_oldest_idle_connection_makes_room() {
    let table = ConnTable::new(limits(3, 0), usize::MAX);
    let a = table.admit(ip("192.0.2.1")).expect("a");
    tokio::time::advance(Duration::from_secs(1)).await;
    let b = table.admit(ip("192.0.2.2")).expect("b");
    tokio::time::advance(Duration::from_secs(1)).await;
    let c = table.admit(ip("192.0.2.3")).expect("c");
    // `a` is busy: `b` is the oldest idle one.
    let _stream = streams::StreamGuard::open(a.state(), 50);
    tokio::time::advance(Duration::from_secs(1)).await;
    let d = table.admit(ip("192.0.2.4")).expect("d");
    assert_eq!(b.state().close_reason(), Some(CloseReason::EvictedTotal));
    assert!(a.state().close_reason().is_none() && c.state().close_reason().is_none());
    assert_eq!(table.open(), 3);
    drop(b);
    tokio::time::advance(Duration::from_secs(1)).await;
    let _e = table.admit(ip("192.0.2.5")).expect("e evicts c");
    assert_eq!(c.state().close_reason(), Some(CloseReason::EvictedTotal));
    // Busy `a`, idle `d` and `e` left: make `d` busy too.
    let _busy_d = streams::StreamGuard::open(d.state(), 50);
    drop(c);
    let f = table.admit(ip("192.0.2.6")).ok();
    assert!(f.is_some(), "e was idle");
    let _busy_f = f
        .as_ref()
        .map(|f| streams::StreamGuard::open(f.state(), 50));
    assert_eq!(
        table.admit(ip("192.0.2.7")).err(),
        Some(Refusal::TotalCap),
        "nothing idle: refused"
    );
    assert!(
        table
            .stats()
            .snapshot()
            .refused
            .contains(&(Refusal::TotalCap, 1))
    );
}

#[tokio::test(start_paused = true)]
async fn per_address_cap_counts_ipv6_by_slash_64() {
    let table = ConnTable::new(limits(100, 2), usize::MAX);
    let one = table.admit(ip("2001:db8:1:2::1")).expect("1");
    tokio::time::advance(Duration::from_secs(1)).await;
    let _two = table.admit(ip("2001:db8:1:2::ffff")).expect("2");
    let other = table.admit(ip("2001:db8:1:3::1")).expect("other /64");
    let _three = table.admit(ip("2001:db8:1:2::3")).expect("3 evicts 1");
    assert_eq!(
        one.state().close_reason(),
        Some(CloseReason::EvictedAddress)
    );
    assert!(other.state().close_reason().is_none());
    // A PROXY header moves a connection to its client's address.
    assert!(other.rekey(ip("2001:db8:1:2::9")));
    assert!(table.admit(ip("2001:db8:1:3::2")).is_ok());
}

#[test]
fn premature_resets_trip_the_guard_and_normal_streams_do_not() {
    let table = ConnTable::new(limits(10, 0), usize::MAX);
    let conn = table.admit(ip("192.0.2.1")).expect("conn");
    let state = conn.state();
    for _ in 0..1000 {
        state.stream_opened(tokio::time::Instant::now());
        assert!(
            !state.stream_closed(tokio::time::Instant::now(), false, 50),
            "completed streams never trip"
        );
    }
    let tripped = (0..1000).position(|_| {
        state.stream_opened(tokio::time::Instant::now());
        state.stream_closed(tokio::time::Instant::now(), true, 50)
    });
    let n = tripped.expect("resets trip the guard");
    assert!(n < 200, "tripped after {n} premature resets");
    state.stream_opened(tokio::time::Instant::now());
    assert!(
        !state.stream_closed(tokio::time::Instant::now(), true, 0),
        "0 = off"
    );
}

#[tokio::test(start_paused = true)]
async fn silent_and_idle_connections_time_out() {
    let table = ConnTable::new(limits(10, 0), usize::MAX);
    let l = limits(10, 0);
    let silent = table.admit(ip("192.0.2.1")).expect("conn");
    let started = tokio::time::Instant::now();
    let reason = lifecycle::closing(silent.state(), &l).await;
    assert_eq!(reason, CloseReason::FirstRequestTimeout);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    let used = table.admit(ip("192.0.2.2")).expect("conn");
    drop(streams::StreamGuard::open(used.state(), 0));
    let started = tokio::time::Instant::now();
    assert_eq!(
        lifecycle::closing(used.state(), &l).await,
        CloseReason::IdleTimeout
    );
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    drop((silent, used));
    let closed = table.stats().snapshot().closed;
    assert!(
        closed.contains(&(CloseReason::FirstRequestTimeout, 1)),
        "{closed:?}"
    );
    assert!(
        closed.contains(&(CloseReason::IdleTimeout, 1)),
        "{closed:?}"
    );
}

/// An idle connection's task holds the connection once: `drive` takes it
/// pinned by reference (an `async fn` keeps its arguments for its whole
/// life, so a connection taken by value was held twice, 2.7 KB per idle
/// TLS connection).
#[tokio::test]
async fn drive_holds_the_connection_by_reference() {
    use std::{
        convert::Infallible,
        future::Future,
        pin::{Pin, pin},
        task::{Context, Poll},
    };
    struct Big {
        _state: [u8; 4096],
    }
    impl Future for Big {
        type Output = Result<(), Infallible>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Ready(Ok(()))
        }
    }
    impl lifecycle::Drain for Big {
        type Error = Infallible;
        fn graceful_shutdown(self: Pin<&mut Self>) {}
    }
    let l = limits(10, 0);
    let table = ConnTable::new(l.clone(), usize::MAX);
    let guard = table.admit(ip("192.0.2.1")).expect("conn");
    let ctx = accept::ConnCtx {
        tracker: tokio_util::task::TaskTracker::new(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        hard_stop: tokio_util::sync::CancellationToken::new(),
    };
    let mut conn = pin!(Big { _state: [0; 4096] });
    let task = lifecycle::drive(conn.as_mut(), guard.state(), &l, &ctx);
    let size = std::mem::size_of_val(&task);
    assert!(size < 1024, "drive's state is {size} bytes");
    task.await;
}

#[tokio::test(start_paused = true)]
async fn an_address_over_its_rate_or_handshakes_is_refused_at_accept() {
    let mut l = limits(1000, 0);
    (l.accept_rate_per_address, l.accept_burst_per_address) = (10, 5);
    l.max_handshakes_per_address = 3;
    l.proxy_trusted = vec!["10.0.0.0/8".parse().expect("net")];
    let table = ConnTable::new(l, usize::MAX);
    let a = ip("192.0.2.1");
    let mut held: Vec<_> = (0..3).map(|_| table.admit(a).expect("burst")).collect();
    let refused = table.admit(a).err();
    assert_eq!(refused, Some(Refusal::AddressHandshakes), "3 in set-up");
    held.iter().for_each(|g| g.state().mark_ready());
    held.push(table.admit(a).expect("set-up done frees a place"));
    assert_eq!(table.admit(a).err(), Some(Refusal::AddressRate), "burst 5");
    assert!(table.admit(ip("192.0.2.2")).is_ok(), "per address");
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(table.admit(a).is_ok(), "refilled at 10/s");
    // A trusted PROXY source: its rules wait for the header's client.
    let lb = ip("10.1.2.3");
    let via_lb: Vec<_> = (0..10).map(|_| table.admit(lb).expect("trusted")).collect();
    let rekeyed = via_lb.iter().filter(|g| g.rekey(a)).count();
    assert_eq!(
        rekeyed, 0,
        "the client behind the load balancer is over its rate"
    );
    assert!(via_lb[0].rekey(ip("198.51.100.1")));
    let refused = table.stats().snapshot().refused;
    assert!(refused.contains(&(Refusal::AddressRate, 11)), "{refused:?}");
    assert!(
        refused.contains(&(Refusal::AddressHandshakes, 1)),
        "{refused:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_idle_index_stays_small_while_connections_serve_requests() {
    let table = ConnTable::new(limits(10_000, 100), usize::MAX);
    let conns: Vec<_> = (0..10_000u32)
        .map(|i| {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i / 100));
            table.admit(addr).expect("admit")
        })
        .collect();
    conns.iter().for_each(|c| c.state().mark_ready());
    for round in 0..20 {
        for c in conns.iter().skip(round % 2) {
            drop(streams::StreamGuard::open(c.state(), 50));
        }
        assert!(
            table.idle_entries() <= 3 * 2 * 10_000 + 96,
            "{} entries",
            table.idle_entries()
        );
    }
    // The oldest idle goes first: the connection used longest ago.
    tokio::time::advance(Duration::from_millis(5)).await;
    let busy = streams::StreamGuard::open(conns[1].state(), 50);
    drop(streams::StreamGuard::open(conns[3].state(), 50));
    let _new = table.admit(ip("192.0.2.9")).expect("evicts one");
    let evicted: Vec<_> = (0..4)
        .map(|i| conns[i].state().close_reason().is_some())
        .collect();
    assert_eq!(evicted, [true, false, false, false]);
    drop(busy);
}

/// Not a test: the eviction micro-benchmark of docs/reliability.md, for
/// instruction counts under callgrind. `EVICTION_BENCH="N M"`: N idle
/// connections at a cap of N, then M newcomers, each evicting the oldest.
#[test]
#[ignore = "a benchmark: run under valgrind --tool=callgrind"]
fn eviction_bench() {
    let spec = std::env::var("EVICTION_BENCH").unwrap_or_else(|_| "10000 1000".into());
    let mut numbers = spec
        .split_whitespace()
        .map(|n| n.parse::<u32>().expect("N M"));
    let (n, m) = (
        numbers.next().unwrap_or(10_000),
        numbers.next().unwrap_or(0),
    );
    let table = ConnTable::new(limits(n as usize, 0), usize::MAX);
    let addr = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
    let held: Vec<_> = (0..n)
        .map(|i| table.admit(addr(i)).expect("admit"))
        .collect();
    held.iter().for_each(|c| c.state().mark_ready());
    let newcomers: Vec<_> = (0..m)
        .map(|i| table.admit(addr(n + i)).expect("evicts one"))
        .collect();
    assert_eq!(table.open(), n as usize);
    drop((held, newcomers));
}
