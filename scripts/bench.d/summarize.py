#!/usr/bin/env python3
"""Turns one `scripts/bench` run (results/ROUND.SCENARIO.SYSTEM.{json,h2load})
into docs/benchmarks.md: ratios and differences computed per round between
systems measured side by side, then min / median / max over the rounds, the
targets with pass/miss, absolute figures for orientation, the edge's profile,
the machine and the exact commands.

    summarize.py --results DIR --meta FILE --commands FILE --mode full --out docs/benchmarks.md
    summarize.py ... --check        # smoke: print the table, fail on a broken run
"""
import argparse
import collections
import os
import statistics
import sys

import issue17
import reading
import shapes
from results import Row, get, per_round, ratio, diff, rate, lat, cpu, load


def peer_shapes(have, peer):
    """(scenario, label) of each shape peer ran in, 1 stream first."""
    return [(sc, shapes.SHAPE_LABEL[sc]) for sc, _ in shapes.SHAPES if (sc, peer) in have]


def short_shape(label):
    return "1" if label == "1 stream" else label.replace("64 streams, ", "64, ")


def build(rounds, extra, args):
    """Every table: [(title, [Row])]."""
    have = set()
    for data in rounds.values():
        have |= {k for k, v in data.items() if v}
    tables = []

    t = []
    for sc, name, short in (("unary1", "Execute, 1 stream", "Execute, 1"), ("unary64", "Execute, 64 streams", "Execute, 64"),
                            ("unary64c", "Execute, 64 connections × 1 stream", "Execute, 64 × 1")):
        if (sc, "edge") not in have:
            continue
        t.append(Row(f"{name}: throughput edge / core direct",
                     per_round(rounds, lambda d: ratio(rate(d, sc, "edge"), rate(d, sc, "core"))), "×"))
        if (sc, "edge_noauth") in have:
            t.append(Row(f"{short}: throughput edge (no auth) / core direct",
                         per_round(rounds, lambda d: ratio(rate(d, sc, "edge_noauth"), rate(d, sc, "core"))), "×"))
        t.append(Row(f"{short}: added p50 latency (edge − core)",
                     per_round(rounds, lambda d: diff(lat(d, sc, "edge"), lat(d, sc, "core"))), "µs", "{:.0f}",
                     target="≤ 100 µs" if sc == "unary1" else None, check=(lambda v: v <= 100) if sc == "unary1" else None))
        t.append(Row(f"{short}: added p99 latency (edge − core)",
                     per_round(rounds, lambda d: diff(lat(d, sc, "edge", "p99"), lat(d, sc, "core", "p99"))), "µs", "{:.0f}"))
        t.append(Row(f"{short}: server CPU per call, edge+core / core alone",
                     per_round(rounds, lambda d: ratio(cpu(d, sc, "edge", "edge") + cpu(d, sc, "edge", "core"),
                                                      cpu(d, sc, "core", "core"))), "×"))
        t.append(Row(f"{short}: edge CPU per call / core CPU per call (same run)",
                     per_round(rounds, lambda d: ratio(cpu(d, sc, "edge", "edge"), cpu(d, sc, "edge", "core"))), "×"))
    for s in (1, 64):
        h2 = f"h2load{s}"
        if (h2, "edge") not in have:
            continue
        t.append(Row(f"h2load, {s}: throughput edge / core direct",
                     per_round(rounds, lambda d: ratio(rate(d, h2, "edge"), rate(d, h2, "core"))), "×"))
        t.append(Row(f"h2load, {s}: added p50 latency (edge − core)",
                     per_round(rounds, lambda d: diff(lat(d, h2, "edge"), lat(d, h2, "core"))), "µs", "{:.0f}"))
        t.append(Row(f"h2load, {s}: server CPU per call, edge+core / core alone",
                     per_round(rounds, lambda d: ratio(cpu(d, h2, "edge", "edge") + cpu(d, h2, "edge", "core"),
                                                      cpu(d, h2, "core", "core"))), "×"))
    tables.append(("1. Unary Execute: the edge (TLS 1.3 + JWT + limits + metrics) against the core direct (h2c)", t))

    t = [
        Row("StreamExecute, 200 chunks: added time to first chunk, p50 (edge − core)",
            per_round(rounds, lambda d: diff(lat(d, "stream200", "edge", kind="ttfc_us"), lat(d, "stream200", "core", kind="ttfc_us"))),
            "µs", "{:.0f}", target="≤ 1000 µs", check=lambda v: v <= 1000),
        Row("added time to first chunk, p99",
            per_round(rounds, lambda d: diff(lat(d, "stream200", "edge", "p99", "ttfc_us"), lat(d, "stream200", "core", "p99", "ttfc_us"))),
            "µs", "{:.0f}"),
        Row("added total stream time, p50",
            per_round(rounds, lambda d: diff(lat(d, "stream200", "edge"), lat(d, "stream200", "core"))), "µs", "{:.0f}"),
        Row("total stream time p50, edge / core",
            per_round(rounds, lambda d: ratio(lat(d, "stream200", "edge"), lat(d, "stream200", "core"))), "×"),
    ]
    tables.append(("2. StreamExecute, 200 chunks of 10 characters, one stream at a time", t))
    t = issue17.ttft_rows(rounds)
    if t:
        tables.append(("2b. Time to first token: a provider paced like a model server, direct and through the proxy "
                       "(cores and edge started for this step in every round)", t))

    t = [
        Row("edge: full TLS 1.3 handshakes/s (new connection per call, no resumption)",
            per_round(rounds, lambda d: rate(d, "hsfull", "edge")), "/s", "{:.0f}"),
        Row("edge: resumed handshakes/s (new connection per call)",
            per_round(rounds, lambda d: rate(d, "hsresumed", "edge")), "/s", "{:.0f}"),
        Row("edge: resumed / full",
            per_round(rounds, lambda d: ratio(rate(d, "hsresumed", "edge"), rate(d, "hsfull", "edge"))), "×"),
    ]
    for peer in ("nginx", "caddy"):
        if ("hsfull", peer) in have:
            t.append(Row(f"full handshakes/s, edge / {peer}",
                         per_round(rounds, lambda d: ratio(rate(d, "hsfull", "edge"), rate(d, "hsfull", peer))), "×"))
            t.append(Row(f"resumed handshakes/s, edge / {peer}",
                         per_round(rounds, lambda d: ratio(rate(d, "hsresumed", "edge"), rate(d, "hsresumed", peer))), "×"))
            for kind, what in (("hsfull", "full"), ("hsresumed", "resumed")):
                t.append(Row(f"{what}: CPU per new connection (its call included), edge / {peer}",
                             per_round(rounds, lambda d, kind=kind: ratio(cpu(d, kind, "edge", "edge"),
                                                                          cpu(d, kind, peer, peer))), "×"))
    tables.append(("3. New connections (16 at a time): TLS handshakes per second", t))

    def idle(d):
        return get(d.get(("memidle_rss", "edge")), "rss_kib")

    def per_stream(d, sc):
        held = d.get((sc, "edge"))
        return (get(held, "procs", "edge", "rss_kib") - idle(d)) / held["requested"]

    n = next((get(d.get(("hold1000", "edge")), "requested") for d in rounds.values()
              if get(d.get(("hold1000", "edge")), "requested")), 1000)
    t = [
        Row("edge RSS idle (after start and one call)", per_round(rounds, lambda d: idle(d) / 1024), "MiB", "{:.1f}",
            target="≤ 16 MiB", check=lambda v: v <= 16, note="#17"),
        Row(f"edge RSS with {n:,} streams open", per_round(rounds, lambda d: get(d.get(("hold1000", "edge")), "procs", "edge", "rss_kib") / 1024),
            "MiB", "{:.1f}"),
        Row(f"per open stream, {n:,} streams: (RSS_{n} − RSS_idle) / {n}", per_round(rounds, lambda d: per_stream(d, "hold1000")),
            "KiB", "{:.1f}", target="≤ 50 KiB", check=lambda v: v <= 50),
        Row(f"of those {n:,}, streams that got their first chunk through the edge",
            per_round(rounds, lambda d: get(d.get(("hold1000", "edge")), "held")), "", "{:.0f}",
            target=f"{n}", check=lambda v: v >= n),
        Row(f"an unrelated stream in flight through the same edge survives the {n:,} being dropped (1 = yes)",
            per_round(rounds, lambda d: None if d.get(("bystander", "edge")) is None
                      else float(get(d.get(("bystander", "edge")), "ok") == 1)), "", "{:.0f}",
            target="1", check=lambda v: v >= 1),
        Row(f"same {n:,} straight to the core: streams held", per_round(rounds, lambda d: get(d.get(("hold1000", "core")), "held")), "", "{:.0f}"),
        Row("per open stream, 200 streams (all held): (RSS_200 − RSS_idle) / 200", per_round(rounds, lambda d: per_stream(d, "hold200")),
            "KiB", "{:.1f}"),
    ]
    tables.append(("4. Memory of the edge (auth on, limits on; streams held by the fake provider)", t))

    t = []
    for peer in ("nginx", "caddy"):
        if ("unary64", peer) not in have:
            continue
        for edge, tag in (("edge", "all features on"), ("edge_noauth", "no auth, like for like")):
            for sc, what in peer_shapes(have, peer):
                one = sc == "unary1"
                # #17: against nginx ≥ 1.0× at 1 stream, ≥ 1.2× at 64; Caddy ≥ 1×.
                want = (1.0 if one else 1.2) if peer == "nginx" else (None if one else 1.0)
                t.append(Row(f"{what}: throughput edge ({tag}) / {peer}",
                             per_round(rounds, lambda d: ratio(rate(d, sc, edge), rate(d, sc, peer))), "×",
                             target=want and f"≥ {want:g}", check=want and (lambda v, w=want: v >= w),
                             note="#17" if peer == "nginx" else ""))
                t.append(Row(f"{short_shape(what)}: p99 edge ({tag}) / {peer}",
                             per_round(rounds, lambda d: ratio(lat(d, sc, edge, "p99"), lat(d, sc, peer, "p99"))), "×",
                             target=None if one else "≤ 1", check=None if one else (lambda v: v <= 1)))
        t.append(Row(f"64: server CPU per call, edge+core / {peer}+core",
                     per_round(rounds, lambda d: ratio(cpu(d, "unary64", "edge", "edge") + cpu(d, "unary64", "edge", "core"),
                                                      cpu(d, "unary64", peer, peer) + cpu(d, "unary64", peer, "core"))), "×"))
    for sc, what in peer_shapes(have, "nginx")[1:]:
        t.append(Row(f"{what}: edge CPU per call / nginx CPU per call (all features on)",
                     per_round(rounds, lambda d: ratio(cpu(d, sc, "edge", "edge"), cpu(d, sc, "nginx", "nginx"))),
                     "×", target="≤ 0.7", check=lambda v: v <= 0.7, note="#17"))
        t.append(Row(f"{what}: edge CPU per call / nginx CPU per call (no auth, like for like)",
                     per_round(rounds, lambda d: ratio(cpu(d, sc, "edge_noauth", "edge"), cpu(d, sc, "nginx", "nginx"))),
                     "×", target="≤ 0.7", check=lambda v: v <= 0.7, note="#17"))
    if ("h2load64", "nginx_token") in have:
        # The same request bytes to both: nginx cannot check the JWT, so it
        # carries it to the core; the edge checks it and strips it.
        what = shapes.SHAPE_LABEL["h2load64"]
        t.append(Row(f"{what}: throughput edge (all features on) / nginx sent the same JWT (forwarded unverified)",
                     per_round(rounds, lambda d: ratio(rate(d, "h2load64", "edge"), rate(d, "h2load64", "nginx_token"))),
                     "×"))
        t.append(Row(f"{what}: edge CPU per call (all features on) / nginx CPU per call, sent the same JWT "
                     "(forwarded unverified)",
                     per_round(rounds, lambda d: ratio(cpu(d, "h2load64", "edge", "edge"),
                                                      cpu(d, "h2load64", "nginx_token", "nginx"))), "×"))
    if any(r.values for r in t):
        tables.append(("5. Peers in the edge's place, same core, same load (nginx and Caddy do no JWT check)", t))

    t = []
    for s in (1, 64):
        for ours, py, tag in (("edge_insecure", "py_insecure", "h2c, no auth"), ("edge", "py_tls", "TLS + JWT")):
            sc = f"python{s}"
            if (sc, py) not in have:
                continue
            t.append(Row(f"{s} stream{'s' if s > 1 else ''}, {tag}: throughput edge+core / Python",
                         per_round(rounds, lambda d: ratio(rate(d, sc, ours), rate(d, sc, py))), "×", "{:.1f}",
                         target="≥ 20", check=lambda v: v >= 20))
            t.append(Row(f"{s}, {tag}: p99 edge+core / Python",
                         per_round(rounds, lambda d: ratio(lat(d, sc, ours, "p99"), lat(d, sc, py, "p99"))), "×", "{:.3f}",
                         target="≤ 0.1", check=lambda v: v <= 0.1))
    for ours, py, tag in (("edge_insecure", "py_insecure", "h2c, no auth"), ("edge", "py_tls", "TLS + JWT")):
        if ("h2python64", py) not in have:
            continue
        t.append(Row(f"h2load, 64 streams, {tag}: throughput edge+core / Python",
                     per_round(rounds, lambda d: ratio(rate(d, "h2python64", ours), rate(d, "h2python64", py))), "×", "{:.1f}",
                     target="≥ 20", check=lambda v: v >= 20))
    if t:
        tables.append(("6. Against the Python vibectl-server 0.11.6 (echo model), same transport", t))
    t = []
    shapes7 = [sc for sc, _ in shapes.SHAPES if (sc, "edge") in have]
    if ("unary64", "edge_baseline") in have:
        for sc_ in shapes7:
            t += versus(rounds, sc_, ("edge", "edge (this build)"), ("edge_baseline", "baseline edge"),
                        "this build / baseline edge")
            t.append(Row(f"{short_shape(shapes.SHAPE_LABEL[sc_])}: throughput baseline edge / core direct",
                         per_round(rounds, lambda d: ratio(rate(d, sc_, "edge_baseline"), rate(d, sc_, "core"))), "×"))
    edge_u, edge_t = shapes.over("edge", "unix", args.transport), shapes.over("edge", "tcp", args.transport)
    nginx_u, nginx_t = shapes.over("nginx", "unix", args.transport), shapes.over("nginx", "tcp", args.transport)
    if ("unary64", edge_u) in have and ("unary64", edge_t) in have:
        for sc_ in shapes7:
            t += versus(rounds, sc_, (edge_u, "edge over a Unix socket"), (edge_t, "edge over TCP"), "Unix / TCP")
            if (sc_, nginx_u) in have and (sc_, nginx_t) in have:
                t.append(Row(f"{short_shape(shapes.SHAPE_LABEL[sc_])}: throughput nginx over a Unix socket / nginx over TCP",
                             per_round(rounds, lambda d: ratio(rate(d, sc_, nginx_u), rate(d, sc_, nginx_t))), "×"))
    if t:
        title = ("7. Before/after (this edge against the baseline build, same core, same rounds) and the transport "
                 "(the same edge binary and nginx over a Unix socket and over loopback TCP)"
                 if ("unary64", "edge_baseline") in have else
                 "7. The transport: the same edge binary and nginx over a Unix socket and over loopback TCP, same rounds")
        tables.append((title, t))
    t = issue17.scale_rows(rounds, extra)
    if t:
        tables.append(("8. Scale: long streams, idle TLS connections and handshakes per core", t))
    return tables


def versus(rounds, sc, a, b, cpu_label):
    """Throughput, p50 and edge CPU per call of system a against b in
    scenario sc; a and b are (system, name) pairs."""
    (sa, na), (sb, nb) = a, b
    what = shapes.SHAPE_LABEL[sc]
    return [
        Row(f"{what}: throughput {na} / {nb}",
            per_round(rounds, lambda d: ratio(rate(d, sc, sa), rate(d, sc, sb))), "×"),
        Row(f"{short_shape(what)}: p50 {na} − {nb}", per_round(rounds, lambda d: diff(lat(d, sc, sa), lat(d, sc, sb))),
            "µs", "{:.0f}"),
        Row(f"{short_shape(what)}: edge CPU per call, {cpu_label}",
            per_round(rounds, lambda d: ratio(cpu(d, sc, sa, "edge"), cpu(d, sc, sb, "edge"))), "×"),
    ]


def absolutes(rounds):
    """Median absolute figures per scenario and system, for orientation."""
    rows = collections.defaultdict(lambda: collections.defaultdict(list))
    for data in rounds.values():
        for (sc, sys), v in data.items():
            if not v or sc.startswith(("hold", "memidle", "bystander", "ttft")):
                continue
            rows[(sc, sys)]["rate"].append(get(v, "rate_per_s"))
            rows[(sc, sys)]["p50"].append(get(v, "latency_us", "p50") or get(v, "mean_us"))
            rows[(sc, sys)]["p99"].append(get(v, "latency_us", "p99"))
            rows[(sc, sys)]["ttfc"].append(get(v, "ttfc_us", "p50"))
            cpu_sum = util_sum = None
            procs = {k: p for k, p in (get(v, "procs") or {}).items() if k != "loadgen"}
            per = [get(p, "cpu_us_per_call") for p in procs.values()]
            if per and all(x is not None for x in per):
                cpu_sum = sum(per)
            utils = [get(p, "cpu_util") for p in procs.values()]
            if utils and all(x is not None for x in utils):
                util_sum = sum(utils)
            rows[(sc, sys)]["cpu"].append(cpu_sum)
            rows[(sc, sys)]["util"].append(util_sum)
            rows[(sc, sys)]["client"].append(get(v, "procs", "loadgen", "cpu_util"))
            errs = sum((get(v, "errors") or {}).values()) if isinstance(get(v, "errors"), dict) else (get(v, "failed") or 0)
            rows[(sc, sys)]["errors"].append(errs)
    out = []
    for (sc, sys), m in sorted(rows.items()):
        def med(k):
            xs = [x for x in m[k] if x is not None]
            return statistics.median(xs) if xs else None
        out.append((sc, sys, med("rate"), med("p50"), med("p99"), med("ttfc"), med("cpu"), med("util"), med("client"),
                    sum(x or 0 for x in m["errors"])))
    return out


# ------------------------------------------------------------------ report

SCENARIO_NAMES = {
    "unary1": "Execute, 1 stream (loadgen)", "unary64": "Execute, 64 streams, 1 connection × 64 (loadgen)",
    "unary64c": "Execute, 64 connections × 1 stream (loadgen)",
    "h2load1": "Execute, 1 stream (h2load)", "h2load64": "Execute, 64 streams, 1 connection × 64 (h2load)",
    "stream200": "StreamExecute, 200 chunks", "hsfull": "full handshake per call",
    "hsresumed": "resumed handshake per call", "python1": "Execute, 1 stream", "python64": "Execute, 64 streams",
    "h2python64": "Execute, 64 streams (h2load, Python pairs)",
}


def system_names(transport):
    """Table names of the systems; the headline ones reach the core over transport."""
    head = {"tcp": "core (TCP)", "unix": "core (Unix socket)"}[transport]
    return {
        "core": "core direct (h2c)", "edge": f"edge, all features on (TLS+JWT+limits+metrics) → {head}",
        "edge_noauth": f"edge TLS, no auth → {head}", "edge_insecure": f"edge h2c, no auth → {head}",
        "nginx": f"nginx TLS → {head}", "caddy": "Caddy TLS → core (TCP)",
        "nginx_token": f"nginx TLS, sent the JWT (forwarded unverified) → {head}",
        "py_insecure": "Python serve-insecure", "py_tls": "Python serve-custom TLS+JWT",
        "edge_baseline": f"baseline edge build TLS+JWT → {head}",
        "edge_unix": "edge TLS+JWT → core (Unix socket)", "nginx_unix": "nginx TLS → core (Unix socket)",
        "edge_tcp": "edge TLS+JWT → core (TCP)", "nginx_tcp": "nginx TLS → core (TCP)",
    }


def fmt(v, f="{:.0f}"):
    return "–" if v is None else f.format(v)


def write_markdown(args, tables, rounds, extra, meta, commands):
    lines = []
    w = lines.append
    w("# Benchmarks: what the edge costs")
    w("")
    w("Generated by `scripts/bench` (do not edit by hand: rerun it). Every figure below is a ratio or a "
      "difference between systems measured **side by side in the same round**, behind the same core process "
      "(one per edge-to-core transport) and under the same load; the order of the systems rotates each round. Cells are **min / median / max over "
      f"{len(rounds)} rounds**; pass/miss is judged on the median. Absolute numbers depend on this small, "
      "shared machine: compare ratios, not raw rates.")
    w("")
    w("## Machine and load")
    w("")
    w("```")
    w(meta.strip())
    w("```")
    w("")
    w("This machine is shared (other work may have run beside the benchmark); the load average above (start and end, the benchmark itself included) "
      "says how busy it was. Interleaving the systems in every round spreads that noise over all of them.")
    w("")
    w("## Summary: one stream beside 64 streams")
    w("")
    w("The default edge row has every feature on: TLS 1.3, JWT verification, `[limits.global]` with a configured "
      "rpm and concurrency, and `/metrics`. nginx runs tuned (one worker on the same CPU, `keepalive_requests` "
      "raised, `grpc_pass`), with no JWT check; the like-for-like rows (edge without auth) are in section 5. "
      f"The headline edge, its like-for-like edge and nginx reach the core over {shapes.TRANSPORT[args.transport]}; "
      f"the last rows are the same edge and nginx over {shapes.TRANSPORT[shapes.other(args.transport)]}. "
      "One stream is loadgen's one call at a time; 64 streams run in three shapes, each against nginx in the same "
      "round.")
    w("")
    summary = shapes.write_summary(w, rounds, args.transport)
    w("## Reading")
    w("")
    # The callgrind section's first paragraph is its one-line reading.
    cg_reading, _, cg_section = (extra.get("profile.callgrind.txt") or "").partition("\n\n")
    readings = reading.reading(tables, rounds, args.transport)
    if cg_reading.strip():
        readings.append(cg_reading.strip())
    for s in readings:
        w(f"- {s}")
    w("")
    w("## Results")
    w("")
    for title, rows in tables:
        w(f"### {title}")
        w("")
        w("| measure | min / **median** / max | unit | target | verdict |")
        w("| --- | --- | --- | --- | --- |")
        for r in rows:
            w(f"| {r.label} | {r.summary()} | {r.unit} | {r.target or ''} | {r.verdict()} |")
        w("")
    w("## Targets")
    w("")
    w("Issue #17's targets first (the summary's and sections 2b, 5 and 8), then the earlier ones still in the tables. "
      "The scale section runs once, so its \"median\" is that one run.")
    w("")
    w("| target | median | verdict |")
    w("| --- | --- | --- |")
    seen = set()
    every = summary + [r for _, rows in tables for r in rows]
    for rows in ([r for r in every if r.note == "#17"], every):
        for r in rows:
            # A measure in the summary and again in its section: listed once.
            key = (r.unit, tuple(r.values)) if r.values else r.label
            if r.check is not None and key not in seen:
                seen.add(key)
                w(f"| {r.label} {r.target} | {r.cell(r.median)} {r.unit} | {r.verdict()} |")
    w("")
    w("## Absolute figures (medians over the rounds, for orientation only)")
    w("")
    w("Server CPU is the user + system time of the processes under test (`/proc/PID/stat`) during the measured "
      "window, divided by the calls (for proxies: proxy + core together); \"busy\" is that time over the "
      "window's length (100% = one CPU). The processes under test share CPU 1, so server CPU busy near 100% "
      "means the servers were the bottleneck; loadgen CPU busy near 100% means the client was (h2load is "
      "far lighter). h2load's p50 and p99 come from its per-request log (`--log-file`, requests answered 200).")
    w("")
    w("| scenario | system | calls/s | p50 µs | p99 µs | first chunk p50 µs | server CPU µs/call | server CPU busy | loadgen CPU busy | errors |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    names = system_names(args.transport)
    for sc, sys, rate, p50, p99, ttfc, cpu_, util, client, errs in absolutes(rounds):
        w(f"| {SCENARIO_NAMES.get(sc, sc)} | {names.get(sys, sys)} | {fmt(rate)} | {fmt(p50)} | {fmt(p99)} "
          f"| {fmt(ttfc)} | {fmt(cpu_, '{:.1f}')} | {fmt(util and util * 100, '{:.0f}%')} "
          f"| {fmt(client and client * 100, '{:.0f}%')} | {errs} |")
    w("")
    for streams in (1, 64):
        prof = extra.get(f"profile.edge{streams}.txt")
        if not prof:
            continue
        w(f"## Profile of the edge: unary Execute under h2load, {streams} stream{'s' if streams > 1 else ''}, 3 s of perf")
        w("")
        w("`perf record -F 999 -g --call-graph dwarf` on the edge process, summarised by "
          "`scripts/bench.d/perf_summary.py`: the share of samples per component (self = the leaf-most "
          "frame of that component; inclusive = anywhere on the stack), the hottest leaf symbols, who calls the "
          "allocator and memcpy, and our own functions by source file.")
        w("")
        w("```")
        w(prof.strip())
        w("```")
        w("")
    if cg_section.strip():
        w("## Instructions per call by feature (callgrind)")
        w("")
        w(cg_section.strip())
        w("")
    w("## Setup")
    w("")
    w("- Core: one `vibectl-core` process on loopback TCP (measured direct, and behind Caddy and whatever runs over "
      "TCP) and one with the same configuration on a Unix socket in the benchmark's 0700 work directory (behind "
      "whatever runs over the socket, as the pod's edge reaches its core); `--transport unix|tcp` chooses which pair is the "
      "headline (unix by default); `echo` model (answers the prompt back), and `echo200` "
      "(the echo provider with `chunks = 200`, `answer_chars = 2000`) for streaming; `held` points `[providers.openai]` "
      "at `fake_provider` (tests/src/bin/fake_provider.rs), which sends one chunk and holds each stream.")
    w("- Edge: `vibectl-edge serve-custom` with the certificate made by `generate-certs`; `[limits.global]` set "
      "(100,000,000 rpm, 100,000 concurrent) so the limit code runs but never refuses. A second edge runs with "
      "`edge.require_auth = false` for the like-for-like comparison with nginx and Caddy, which check no JWT.")
    w("- Time to first token: in every round a core started for the step (TCP, the core path), another behind a "
      "fresh edge with all features on (the headline transport, the whole-proxy path) and, with `--compare`, the "
      "baseline's core, each with the benchmark's configuration and an empty state directory, stopped after the "
      "round's calls: the core that has served every unary round answers the first token later than a fresh one "
      "(session 12: 1,043 µs added against 840 µs on a fresh baseline core; two fresh cores, 710 and 715 µs), "
      "which would bias a before/after and the target.")
    w("- nginx 1.22 (`nginx-light`): one worker, `listen … ssl http2`, `ssl_protocols TLSv1.2 TLSv1.3`, "
      "`grpc_pass grpc://core` (the core's TCP address, or `unix:` its socket, with `user root;` when run as root "
      "so that the worker may open the 0660 socket) with an upstream keepalive pool (nginx uses one upstream "
      "connection per in-flight stream), access log off. In the 64-stream h2load runs the same nginx is also sent the "
      "benchmark's JWT (`nginx_token`): it forwards the token to the core unverified, so that both proxies get the "
      "same request bytes. Caddy 2.6: `reverse_proxy h2c://core`, `tls cert key`. Same certificate for all.")
    w("- Python: `vibectl-server serve-insecure` and `serve-custom --require-auth` (same certificate, same JWT "
      "secret, so the same token works), `--model echo` from `llm-echo`, default 10 worker threads, limits raised.")
    w("- Load: `loadgen` (tests/src/bin/loadgen: tonic client, about 12-14 µs of its own CPU per call; C HTTP/2 "
      "connections × N concurrent calls each, HDR histograms, warm-up excluded) and `h2load` (nghttp2, about 2 µs "
      "per call) with a length-prefixed `ExecuteRequest` body, checked once with `nghttp` to return "
      "`grpc-status: 0`. 64 streams: loadgen 1 connection × 64 (`--connections 1 --concurrency 64`), loadgen 64 "
      "connections × 1 (`--connections 64 --concurrency 1`), h2load 1 connection × 64 (`-c 1 -m 64`).")
    w("")
    w("## Exact commands (round 1)")
    w("")
    w("<details><summary>every process started and every load run</summary>")
    w("")
    w("```")
    w(commands.strip())
    w("```")
    w("")
    w("</details>")
    w("")
    w("Reproduce: `scripts/bench` (full, ~20 min), `scripts/bench --quick` (short rounds), "
      "`scripts/bench --smoke` (ours only, prints a table), `scripts/bench --compare REV` (REV's edge and core "
      "beside this build's in every round). Options: `--rounds N`, `--transport unix|tcp` (how the headline edge and "
      "nginx reach the core; default unix, as in the pod), `--out FILE`, `--scale N`, "
      "`--skip-peers`, `--skip-python`, `--no-profile`, `--keep` (keep the work directory with every JSON result).")
    w("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--commands", required=True)
    ap.add_argument("--mode", default="full")
    ap.add_argument("--out")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--transport", choices=("tcp", "unix"), default="unix")
    args = ap.parse_args()
    rounds, extra = load(args.results)
    if not rounds:
        sys.exit("summarize: no results")
    tables = build(rounds, extra, args)
    meta = open(args.meta).read()
    commands = open(args.commands).read() if os.path.exists(args.commands) else ""
    commands = commands.replace(os.path.dirname(os.path.abspath(args.results)), "$WORK")
    commands = commands.replace(os.getcwd() + "/", "")
    if args.out:
        with open(args.out, "w") as f:
            f.write(write_markdown(args, tables, rounds, extra, meta, commands))
    # Smoke / check: print the table, fail if any run did nothing.
    for title, rows in tables:
        print(title)
        for r in rows:
            print(f"  {r.label}: {r.summary()} {r.unit} {r.verdict()}")
    broken = []
    for rnd, data in rounds.items():
        for (sc, sysname), v in data.items():
            if v is None:
                broken.append(f"{rnd}.{sc}.{sysname}: no result")
            elif "held" in v or sc in ("bystander", "ttft"):
                continue
            elif (get(v, "ok") or 0) == 0 and "rss_kib" not in v:
                broken.append(f"{rnd}.{sc}.{sysname}: no successful call")
    if broken:
        print("broken runs:\n  " + "\n  ".join(broken), file=sys.stderr)
        if args.check:
            sys.exit(1)


if __name__ == "__main__":
    main()
