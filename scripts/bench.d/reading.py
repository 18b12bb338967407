"""The reading of docs/benchmarks.md: a few sentences generated from the
medians of the tables. Imported by summarize.py.
"""
import statistics

import issue17
from results import get
from shapes import SHAPE_LABEL, TRANSPORT

WHY_SHORT = ("The verdicts at 64 streams rest on h2load (the issue's own tool and shape; the servers, not the "
             "client, are the bottleneck); the summary shows each shape's.")


def short(label):
    return label.replace("64 streams, ", "64, ")


def busy(rounds, sc, sys):
    """Median over the rounds of the servers' CPU busy (sum of the watched
    processes' cpu_util, loadgen excluded) in scenario sc for sys."""
    xs = []
    for d in rounds.values():
        procs = {k: p for k, p in (get(d.get((sc, sys)), "procs") or {}).items() if k != "loadgen"}
        utils = [get(p, "cpu_util") for p in procs.values()]
        if utils and all(u is not None for u in utils):
            xs.append(sum(utils))
    return statistics.median(xs) if xs else None


def reading(tables, rounds, transport):
    """A few sentences generated from the medians."""
    by = {r.label: r for _, rows in tables for r in rows}
    L64, C64, H64 = (SHAPE_LABEL[sc] for sc in ("unary64", "unary64c", "h2load64"))

    def m(label):
        r = by.get(label)
        return r.median if r else None

    out = []
    thr = m("Execute, 64 streams: throughput edge / core direct")
    cpu_ratio = m("Execute, 64: server CPU per call, edge+core / core alone")
    edge_core = m("Execute, 64: edge CPU per call / core CPU per call (same run)")
    if thr is not None:
        out.append(f"At 64 streams the edge delivers {thr:.0%} of the direct core's throughput. "
                   + (f"Per call, edge and core together burn {cpu_ratio:.2f}× the CPU the core alone does "
                      f"(the edge itself {edge_core:.2f}× the core's share): with both on one CPU, that CPU, not the "
                      f"network, sets the ceiling, so the throughput ratio follows the CPU ratio. "
                      f"That ceiling is 1 / (1 + {edge_core:.2f}) = {1 / (1 + edge_core):.2f} (the old target "
                      f"\"≥ 0.95× the bare core\" is dropped by #17 for this reason): this echo core does almost "
                      f"nothing but its own HTTP/2, while the edge speaks HTTP/2 twice plus TLS. With a real "
                      f"provider the core's CPU per call is no longer the limit. "
                      if cpu_ratio and edge_core else ""))
    p50 = m("Execute, 1: added p50 latency (edge − core)")
    ttfc = m("StreamExecute, 200 chunks: added time to first chunk, p50 (edge − core)")
    if p50 is not None:
        out.append(f"One call at a time, the edge adds {p50:.0f} µs at the median"
                   + (f" and {ttfc:.0f} µs to the first streamed chunk" if ttfc is not None else "") + ".")
    core_ttft = m(issue17.CORE_TTFT)
    whole = m("whole proxy: added time on the whole answer / direct answer time, p50")
    whole_ttft = m(issue17.WHOLE_TTFT)
    if core_ttft is not None:
        out.append(f"Against a provider paced like a model server, a core started for the measurement adds "
                   f"{core_ttft:.0f} µs to the time to the first token (the median over calls of its legs to the provider "
                   f"and back less the direct call's, timed by the provider, so its own wait drops out); a fresh edge "
                   f"and core together add "
                   f"{whole_ttft or 0:.0f} µs to it and {whole or 0:.2f} % to the whole streamed answer.")
    peers = []
    for peer, name in (("nginx", "nginx"), ("caddy", "Caddy")):
        a = m(f"{L64}: throughput edge (no auth, like for like) / {peer}")
        b = m(f"{L64}: throughput edge (all features on) / {peer}")
        if a is not None:
            peers.append(f"{a:.2f}× {name}'s throughput like for like ({b:.2f}× all features on)")
    if peers:
        out.append("Against the peers at 64 streams on one loadgen connection the edge reaches " + " and ".join(peers) + ".")
    shape_bits = []
    for sc, what in (("unary64", L64), ("unary64c", C64), ("h2load64", H64)):
        thr = m(f"{what}: throughput edge (all features on) / nginx")
        ue, un = busy(rounds, sc, "edge"), busy(rounds, sc, "nginx")
        if thr is not None:
            shape_bits.append(f"{what.split(', ', 1)[1]} {thr:.2f}×"
                              + (f" (server CPU busy {ue:.0%} with the edge, {un:.0%} with nginx)" if ue and un else ""))
    if shape_bits:
        out.append("The 64-stream throughput against nginx by the client's shape, all features on: "
                   + "; ".join(shape_bits) + ". " + WHY_SHORT)
    py = m("64 streams, TLS + JWT: throughput edge+core / Python")
    pyi = m("64 streams, h2c, no auth: throughput edge+core / Python")
    if py is not None:
        out.append(f"Against the Python vibectl-server, edge+core serve {py:.0f}× (TLS) and {pyi or 0:.0f}× (h2c) its throughput at 64 streams.")
    n = next((int(k.split()[2].replace(",", "")) for k in by if k.startswith("of those ")), 1000)
    held = m(f"of those {n:,}, streams that got their first chunk through the edge")
    core_held = m(f"same {n:,} straight to the core: streams held")
    if held is not None and held < n:
        out.append(f"Only {held:.0f} of {n:,} concurrent streams got through the edge, while the core alone held "
                   f"{core_held:.0f}: the edge multiplexes every client stream over one h2c connection to the core, "
                   f"and the core's HTTP/2 server allows 200 concurrent streams per connection (hyper's default), so "
                   f"stream 201 onwards waits in the edge until another ends. With real LLM streams lasting "
                   f"seconds to minutes, this caps a whole edge at 200 calls in flight.")
    bt = m(f"{H64}: throughput edge (this build) / baseline edge")
    bl = m(f"{L64}: throughput edge (this build) / baseline edge")
    bc = m(f"{short(H64)}: edge CPU per call, this build / baseline edge")
    b1 = m("1: p50 edge (this build) − baseline edge")
    if bt is not None:
        out.append(f"Before/after, in the same rounds: at 64 streams (h2load) this edge serves {bt:.2f}× the baseline "
                   f"build's throughput at {bc or 0:.2f}× its CPU per call ({bl or 0:.2f}× on one loadgen connection); "
                   f"one call at a time its p50 differs by {b1 or 0:+.0f} µs.")
    ux = [(what, m(f"{what}: throughput edge over a Unix socket / edge over TCP"),
           m(f"{short(what)}: throughput nginx over a Unix socket / nginx over TCP")) for what in (L64, C64, H64)]
    ux = [x for x in ux if x[1] is not None]
    if ux:
        out.append(f"The headline edge, its like-for-like edge and nginx reach the core over {TRANSPORT[transport]}"
                   + (" (as in the pod)" if transport == "unix" else "") + ". Over a Unix socket instead of loopback "
                   "TCP, at 64 streams, the same edge serves " + "; ".join(
                       f"{e:.2f}× ({what.split(', ', 1)[1]}" + (f"; nginx {n:.2f}×)" if n is not None else ")")
                       for what, e, n in ux) + ".")
    bys = m(f"an unrelated stream in flight through the same edge survives the {n:,} being dropped (1 = yes)")
    if bys is not None and bys < 1:
        out.append(f"When the {n:,} streams are dropped at once, an unrelated stream in flight through the same edge dies "
                   "with UNAVAILABLE: the edge forwards the cancellations (RST_STREAM) on its one connection to the core, "
                   "more than 20 of them hit streams the core has not accepted yet, h2's rapid-reset guard "
                   "(`max_pending_accept_reset_streams`, default 20) answers with GOAWAY, and every stream on that "
                   "connection fails (the core logs `remotely-reset pending-accept streams reached limit (20)`).")
    idle = m("per idle TLS connection: (RSS − RSS_before) / connections")
    if idle is not None and idle > 4:
        out.append(issue17.idle_tls_reading(idle))
    return out
