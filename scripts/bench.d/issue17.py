"""The parts of docs/benchmarks.md that issue #17 asked for (the summary with
1-stream rows beside 64-stream rows is shapes.py's): the time-to-first-token rows, the scale
figures (10,000 long streams, 10,000 idle TLS connections, handshakes per
core against rustls' published figures), and the #17 targets judged
PASS/MISS. Imported by summarize.py; reads the same per-round results.
"""
from results import Row, get, per_round, ratio, diff, cpu

# rustls' own published handshake rates (one core, server side, TLS 1.3):
# "Benchmarking rustls 0.23.37 vs OpenSSL 3.6.1 vs BoringSSL on x86_64",
# 2026-03-07, https://rustls.dev/perf/2026-03-07-report/ (Xeon E-2386G,
# rustls 0.23.37 with aws-lc-rs 1.16.0; `make -f admin/bench-measure.mk measure`).
RUSTLS = {
    "source": "rustls 0.23.37 report of 2026-03-07 (https://rustls.dev/perf/2026-03-07-report/), "
              "Xeon E-2386G, aws-lc-rs 1.16.0, server side, one core",
    "full_ecdsa": 6786.26,   # full handshakes, TLS 1.3, ECDSA (P-256) certificate, server
    "full_rsa": 2357.36,     # full handshakes, TLS 1.3, RSA 2048 certificate, server
    "resumed": 7249.08,      # resumed handshakes, TLS 1.3, server
}


# Row names reading.py quotes.
CORE_TTFT = ("core: added time to first token, p50 (its legs to the provider and back, against the direct "
             "call's, paired per call; the provider's own wait taken out)")
WHOLE_TTFT = "whole proxy (edge, all features on, + core): added time to first token (added legs), p50"


def ttft_rows(rounds):
    """Time to first token: paths through the proxy against the provider direct."""
    def t(d, path, *key):
        return get(d.get(("ttft", "paths")), path, *key)

    if not any(t(d, "direct") for d in rounds.values()):
        return []
    def legs(d, path):
        """The paired added legs, p50 (provider's wait out); else the plain difference."""
        v = t(d, path, "added_legs_us", "p50")
        return v if v is not None else t(d, path, "added_first_us", "p50")

    rows = [
        Row("provider direct: time to first token, p50", per_round(rounds, lambda d: t(d, "direct", "first_us", "p50") / 1000),
            "ms", "{:.2f}"),
        Row("provider direct: whole streamed answer, p50", per_round(rounds, lambda d: t(d, "direct", "total_us", "p50") / 1000),
            "ms", "{:.1f}"),
        Row("provider direct: the call's own legs (to the provider and its first token back), p50",
            per_round(rounds, lambda d: t(d, "direct", "legs_us", "p50")), "µs", "{:.0f}"),
        Row(CORE_TTFT, per_round(rounds, lambda d: legs(d, "core")), "µs", "{:.0f}",
            target="≤ 1000 µs", check=lambda v: v <= 1000, note="#17"),
        Row("core: of which on the way to the provider, p50",
            per_round(rounds, lambda d: t(d, "core", "added_forward_us", "p50")), "µs", "{:.0f}"),
        Row("core: of which on the way back with the first token, p50",
            per_round(rounds, lambda d: t(d, "core", "added_return_us", "p50")), "µs", "{:.0f}"),
        Row("core: added legs, p90", per_round(rounds, lambda d: t(d, "core", "added_legs_us", "p90")), "µs", "{:.0f}"),
        Row("core: added time to first token, p50 (plain difference of first-token times: carries the provider's "
            "1 ms timer rounding)",
            per_round(rounds, lambda d: t(d, "core", "added_first_us", "p50")), "µs", "{:.0f}"),
        Row("core: added time on the whole answer / direct answer time, p50",
            per_round(rounds, lambda d: t(d, "core", "added_total_pct_p50")), "%", "{:.2f}"),
        Row(WHOLE_TTFT, per_round(rounds, lambda d: legs(d, "edge")), "µs", "{:.0f}"),
        Row("whole proxy: added time on the whole answer, p50",
            per_round(rounds, lambda d: t(d, "edge", "added_total_us", "p50")), "µs", "{:.0f}"),
        Row("whole proxy: added time on the whole answer / direct answer time, p50",
            per_round(rounds, lambda d: t(d, "edge", "added_total_pct_p50")), "%", "{:.2f}",
            target="≤ 1 %", check=lambda v: v <= 1, note="#17"),
    ]
    if any(t(d, "core_baseline") for d in rounds.values()):
        rows += [
            Row("baseline core (--compare): added time to first token (added legs), p50",
                per_round(rounds, lambda d: legs(d, "core_baseline")), "µs", "{:.0f}"),
            Row("this core − baseline core: added time to first token (added legs), p50",
                per_round(rounds, lambda d: diff(legs(d, "core"), legs(d, "core_baseline"))), "µs", "{:+.0f}"),
        ]
    return rows


def one(value):
    """A Row's values from a single run (the scale section runs once)."""
    return [value]


def scale_rows(rounds, extra):
    """10,000 long streams, 10,000 idle TLS connections, handshakes per core."""
    def x(sc, *key):
        return get(extra.get(("scale", sc, "edge")), *key)

    rows = []
    long_ = extra.get(("scale", "long", "edge"))
    idle = x("idlestreams_rss", "rss_kib")
    if long_:
        n = long_.get("requested") or 0
        held = long_.get("held") or 0
        rss = get(long_, "procs", "edge", "rss_kib")
        hold_s = long_.get("hold_for_s") or 0

        def per_stream_s(proc):
            ms = get(long_, "hold_procs", proc, "cpu_ms")
            return None if ms is None or not held or not hold_s else ms * 1000 / (held * hold_s)

        rows += [
            Row(f"long streams held through one edge (of {n:,} opened at once; a chunk a second each)", one(held), "",
                "{:.0f}", target=f"{n}", check=lambda v: v >= n),
            Row("edge RSS idle (fresh edge, after start and one call)", one(idle and idle / 1024), "MiB", "{:.1f}",
                target="≤ 16 MiB", check=lambda v: v <= 16, note="#17"),
            Row(f"edge RSS with {held:,} streams open", one(rss and rss / 1024), "MiB", "{:.1f}"),
            Row(f"per open stream at {held:,}: (RSS − RSS_idle) / streams",
                one(None if rss is None or idle is None or not held else (rss - idle) / held), "KiB", "{:.1f}",
                target="≤ 12 KiB", check=lambda v: v <= 12, note="#17"),
            Row("edge CPU per stream-second (while holding)", one(per_stream_s("edge")), "µs", "{:.1f}"),
            Row("core CPU per stream-second (while holding)", one(per_stream_s("core")), "µs", "{:.1f}"),
            Row(f"time to first chunk, p50 (all {n:,} opened at once)", one(get(long_, "first_chunk_ms", "p50")), "ms", "{:.0f}"),
            Row(f"time to first chunk, p99 (all {n:,} opened at once)", one(get(long_, "first_chunk_ms", "p99")), "ms", "{:.0f}"),
        ]
    tls = extra.get(("scale", "idletls", "edge"))
    if tls:
        still = tls.get("still_open") or 0
        before, after = tls.get("rss_before_kib"), tls.get("rss_kib")
        rows += [
            Row(f"idle TLS connections open (of {tls.get('requested', 0):,}; each made one call)", one(still), "", "{:.0f}",
                target=f"{tls.get('requested', 0)}", check=lambda v: v >= tls.get("requested", 0)),
            Row(f"edge RSS with {still:,} idle TLS connections", one(after and after / 1024), "MiB", "{:.1f}"),
            Row("per idle TLS connection: (RSS − RSS_before) / connections",
                one(None if before is None or after is None or not still else (after - before) / still), "KiB", "{:.2f}",
                target="≤ 4 KiB", check=lambda v: v <= 4, note="#17"),
        ]
    # Handshakes per core: the edge's own CPU per new connection (handshake,
    # HTTP/2 set-up, one call forwarded) from the handshake rounds; "net"
    # subtracts the edge's CPU per call on a warm connection (1 stream).
    for kind, ref, mem, what in (("hsfull", "full_ecdsa", "full", "full (ECDSA P-256 certificate)"),
                                 ("hsresumed", "resumed", "resumed", "resumed")):
        if not any(d.get((kind, "edge")) for d in rounds.values()):
            continue
        def gross(d, kind=kind):
            return cpu(d, kind, "edge", "edge")

        def net(d, gross=gross):
            v = diff(gross(d), cpu(d, "unary1", "edge", "edge"))
            return v if v and v > 0 else None  # noise can make it negative: no figure then
        rows += [
            Row(f"{what} TLS 1.3 handshakes per core-second, edge (1e6 / edge CPU µs per new connection with its call)",
                per_round(rounds, lambda d: ratio(1e6, gross(d))), "/s", "{:.0f}"),
            Row(f"  / rustls' published {what} server rate ({RUSTLS[ref]:,.0f}/s)",
                per_round(rounds, lambda d: ratio(ratio(1e6, gross(d)), RUSTLS[ref])), "×"),
            Row(f"{what}: net of the call (edge CPU per connection − per call on a warm connection) / rustls",
                per_round(rounds, lambda d: ratio(ratio(1e6, net(d)), RUSTLS[ref])), "×"),
        ]

        def alone(d, mem=mem):
            return get(d.get(("hsmem", "rustls")), mem, "per_second")
        if any(alone(d) for d in rounds.values()):
            rows += [
                Row(f"  rustls alone on this CPU, {what} (`hs_bench`: the edge's ServerConfig and chain, "
                    "in memory, server time only)",
                    per_round(rounds, alone), "/s", "{:.0f}"),
                Row(f"  edge / rustls alone on this CPU, {what} (gross)",
                    per_round(rounds, lambda d: ratio(ratio(1e6, gross(d)), alone(d))), "×"),
                Row(f"  edge net of the call / rustls alone on this CPU, {what}",
                    per_round(rounds, lambda d: ratio(ratio(1e6, net(d)), alone(d))), "×"),
            ]
    return rows


# What an idle TLS connection holds (each after one call), per connection:
# live heap of `heaptrack` on an edge built with `--features
# system-allocator` (glibc's malloc) holding 1,000 idle connections from
# `idle_conns`, minus the same edge holding 1, divided by 999 (session 9,
# at 67d4dc7 = 7ca621c + the idle-connection change). (owner, what, bytes,
# what would remove it)
IDLE_TLS_HEAP = [
    ("h2 0.4", "frame write buffer", 16384, "allocated at a fixed 16 KiB when the connection starts"),
    ("h2 0.4", "frame read buffer (tokio-util's `FramedRead`)", 8184, "allocated at a fixed 8 KiB"),
    ("h2 0.4", "HPACK decoder buffer", 4096, "allocated at a fixed 4 KiB"),
    ("h2 0.4", "stream store and queues", 3712, "slabs the one call grew, never shrunk"),
    ("h2 0.4", "HPACK tables and shared connection state", 1880, None),
    ("rustls 0.23", "record reader buffer", 4096, "resized to 4 KiB and zero-filled whenever it is empty, so resident"),
    ("rustls 0.23", "connection (in the edge's box)", 1153, None),
    ("rustls 0.23", "AES-256-GCM keys of both directions", 1120, None),
    ("rustls 0.23", "handshake reader and the rest", 1108, None),
    ("the edge", "connection's task", 3008, "the HTTP/2 connection with h2's state inline, the lifecycle's timers "
     "and signals; 8.1 KB before session 9, which held the connection twice, kept the TLS stream beside its box "
     "and reserved the handshake's state for the connection's life"),
    ("the edge", "stream set, table entry, state and service clone", 1166, "0.3 KB more before session 9: "
     "the service stack was cloned twice"),
    ("tokio", "socket registration and the rest", 439, None),
]


def idle_tls_reading(idle):
    """The reading of the idle-TLS-connection figure, from IDLE_TLS_HEAP."""
    total = sum(b for _, _, b, _ in IDLE_TLS_HEAP)
    owners = {}
    for owner, what, size, why in IDLE_TLS_HEAP:
        owners.setdefault(owner, []).append(f"{what} {size / 1000:.1f} KB" + (f" ({why})" if why else ""))
    parts = "; ".join(f"**{owner}** {sum(b for o, _, b, _ in IDLE_TLS_HEAP if o == owner) / 1000:.1f} KB: "
                      + ", ".join(items) for owner, items in owners.items())
    return (f"An idle TLS connection costs {idle:.1f} KiB of RSS, over the 4 KiB target. Its heap is {total / 1000:.1f} KB "
            "(`heaptrack` on a debug edge built with `--features system-allocator`, holding 1,000 idle connections "
            "from `idle_conns`, each after one call, minus the same edge holding 1, per connection; session 9; the "
            f"buffers are fixed capacities, the same in a release build): {parts}. The RSS is below the heap "
            "because most of h2's write and read buffers is never written: only the pages touched count. What is "
            "left is h2's and rustls': no setting of theirs changes these buffers (h2's sizes are constants, "
            "rustls refills its reader on every read) and we do not patch them. Reaching 4 KiB would take an "
            "HTTP/2 stack that allocates its buffers on use and drops them on idle connections (nginx reads every "
            "HTTP/2 connection of a worker through one shared buffer, `http2_recv_buffer_size`), and a TLS reader "
            "that frees its buffer when it is empty. " + IDLE_TLS_STAGES)


# Session 10: the same edge (release, 76558ee) holding 10,000 connections at
# each stage (`scripts/bench.d/idle_ab.sh --stage S --rounds 2
# target/release/vibectl-edge`), and what was tried on the read path and
# h2's settings (one experimental build, switched by environment, not kept).
IDLE_TLS_STAGES = (
    "By stage (session 10, release edge, 10,000 connections, `scripts/bench.d/idle_ab.sh --stage S`): accepted "
    "with no TLS byte yet 12.2 KiB (the connection's task and the pending handshake: rustls' connection with its "
    "4 KiB reader, the boxed set-up), TLS done with no HTTP/2 byte 25.2 KiB, HTTP/2 preface and SETTINGS exchanged "
    "26.2 KiB, after one call 31.7 KiB. So h2's connection and rustls' session are resident before any request: "
    "each of h2's three fixed buffers (16, 8 and 4 KiB) has its first page touched (by the allocator's free "
    "list and the first frames) and rustls' reader is one whole page, 4 pages (16 KiB) that no request needs. "
    "Tried and measured without effect (10,000 connections, each within 31.59-31.71 KiB, the spread of ten "
    "runs of the unchanged edge): offering the TLS reader at most 512 bytes per read (tokio-rustls 0.26 copies "
    "plaintext with `put_slice` and never zero-fills the read buffer h2 offers, so the untouched pages were "
    "never touched); h2's `header_table_size` 0 or 1024; `max_concurrent_streams` 1 or 64; mimalloc purging "
    "freed pages at once (`MIMALLOC_PURGE_DELAY=0`), so the figure is live memory, not fragmentation. rustls' "
    "unbuffered API would let the edge free the reader's page while idle (at most 4 KiB less); the rest needs "
    "the HTTP/2 stack above."
)
