use super::*;
use std::net::IpAddr;

fn limits(max_total: usize, max_per_address: usize) -> Limits {
    Limits {
        first_request_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_total,
        max_per_address,
        max_premature_reset_percent: 50,
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
    let f = table.admit(ip("192.0.2.6"));
    assert!(f.is_some(), "e was idle");
    let _busy_f = f
        .as_ref()
        .map(|f| streams::StreamGuard::open(f.state(), 50));
    assert!(
        table.admit(ip("192.0.2.7")).is_none(),
        "nothing idle: refused"
    );
    assert_eq!(table.stats().snapshot().refused, 1);
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
    assert!(table.admit(ip("2001:db8:1:3::2")).is_some());
}

#[test]
fn premature_resets_trip_the_guard_and_normal_streams_do_not() {
    let table = ConnTable::new(limits(10, 0), usize::MAX);
    let conn = table.admit(ip("192.0.2.1")).expect("conn");
    let state = conn.state();
    for _ in 0..1000 {
        state.stream_opened();
        assert!(
            !state.stream_closed(false, 50),
            "completed streams never trip"
        );
    }
    let tripped = (0..1000).position(|_| {
        state.stream_opened();
        state.stream_closed(true, 50)
    });
    let n = tripped.expect("resets trip the guard");
    assert!(n < 200, "tripped after {n} premature resets");
    state.stream_opened();
    assert!(!state.stream_closed(true, 0), "0 = off");
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
