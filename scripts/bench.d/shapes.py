"""The summary of docs/benchmarks.md: the edge with all features on against
nginx and the bare core at one stream beside 64 streams in three shapes
(issue #17's point 5), each target judged on each shape, and the same edge
and nginx over the other edge-to-core transport beside them. Imported by
summarize.py.

The 64-stream shapes:
- loadgen, 1 connection × 64 streams: a tonic client spending 12-14 µs of
  CPU per call, which answers each burst of 64 responses with a burst of 64
  requests; the servers' CPU idles between bursts, more or less depending on
  how the proxy batches (the shape measures that rhythm as much as the proxy);
- loadgen, 64 connections × 1 stream: 64 users each making one call at a
  time, how a shared proxy is used;
- h2load, 1 connection × 64 streams: the issue's own second measurement, a C
  client at about 2 µs per call, so the servers are the bottleneck.
The verdict of a 64-stream target rests on h2load's shape; the other two are
judged and shown beside it, never dropped.
"""
from results import Row, per_round, ratio, diff, rate, lat, cpu

SHAPES = [
    ("unary1", "1 stream (loadgen)"),
    ("unary64", "64: 1 conn × 64 (loadgen)"),
    ("unary64c", "64: 64 conns × 1 (loadgen)"),
    ("h2load64", "64: 1 conn × 64 (h2load)"),
]
VERDICT_SHAPE = "h2load64"
SHAPE_LABEL = {
    "unary1": "1 stream",
    "unary64": "64 streams, 1 connection × 64 (loadgen)",
    "unary64c": "64 streams, 64 connections × 1 (loadgen)",
    "h2load64": "64 streams, 1 connection × 64 (h2load)",
}
TRANSPORT = {"tcp": "loopback TCP", "unix": "a Unix socket"}
WHY = ("The 64-stream verdicts rest on **h2load, 1 connection × 64 streams**: the issue's own second measurement "
       "used it, and at about 2 µs of client CPU per call it leaves the servers on CPU 1 as the bottleneck. "
       "loadgen (a tonic client, 12-14 µs per call) on one connection answers each burst of 64 responses with a "
       "burst of 64 requests, so the servers' CPU idles between bursts, more with a proxy that batches less "
       "(the \"server CPU busy\" column of the absolute figures); 64 connections of one call each is how a "
       "shared proxy is used. Each shape's verdict is shown; none is dropped.")


def other(transport):
    return "unix" if transport == "tcp" else "tcp"


def over(kind, t, transport):
    """The system name of `kind` (edge or nginx) reaching the core over t."""
    return kind if t == transport else f"{kind}_{t}"


def summary_rows(rounds, transport):
    """(label, {scenario: Row}) per measure."""
    def added(d, sc, sys):
        return diff(lat(d, sc, sys), lat(d, sc, "core"))

    def measure(label, fn, unit, f="{:.2f}", t1=None, c1=None, t64=None, c64=None):
        rows = {}
        for sc, _ in SHAPES:
            one = sc == "unary1"
            t, c = (t1, c1) if one else (t64, c64)
            rows[sc] = Row(f"{SHAPE_LABEL[sc]}: {label}", per_round(rounds, lambda d, sc=sc: fn(d, sc)), unit, f,
                           target=t, check=c, note="#17")
        return (label, rows)

    out = [measure("throughput, edge / core direct", lambda d, sc: ratio(rate(d, sc, "edge"), rate(d, sc, "core")), "×"),
           measure("added p50 over the bare core, edge", lambda d, sc: added(d, sc, "edge"), "µs", "{:.0f}")]
    if not any(d.get(("unary1", "nginx")) for d in rounds.values()):
        return out
    alt = other(transport)
    ea, na = over("edge", alt, transport), over("nginx", alt, transport)
    out += [
        measure("added p50 over the bare core, nginx", lambda d, sc: added(d, sc, "nginx"), "µs", "{:.0f}"),
        measure("added p50, edge − nginx", lambda d, sc: diff(added(d, sc, "edge"), added(d, sc, "nginx")),
                "µs", "{:+.0f}", t1="≤ 0 µs", c1=lambda v: v <= 0),
        measure("throughput, edge / nginx", lambda d, sc: ratio(rate(d, sc, "edge"), rate(d, sc, "nginx")), "×",
                t1="≥ 1.0", c1=lambda v: v >= 1.0, t64="≥ 1.2", c64=lambda v: v >= 1.2),
        measure("p99, edge / nginx", lambda d, sc: ratio(lat(d, sc, "edge", "p99"), lat(d, sc, "nginx", "p99")), "×",
                t64="≤ 1", c64=lambda v: v <= 1),
        measure("edge CPU per call / nginx CPU per call (JWT on)",
                lambda d, sc: ratio(cpu(d, sc, "edge", "edge"), cpu(d, sc, "nginx", "nginx")), "×",
                t64="≤ 0.7", c64=lambda v: v <= 0.7),
        measure("edge CPU per call / nginx CPU per call (no auth, like for like)",
                lambda d, sc: ratio(cpu(d, sc, "edge_noauth", "edge"), cpu(d, sc, "nginx", "nginx")), "×",
                t64="≤ 0.7", c64=lambda v: v <= 0.7),
    ]
    if any(d.get(("unary1", na)) for d in rounds.values()):
        both = f"both over {TRANSPORT[alt]}"
        out += [
            measure(f"throughput, edge / nginx, {both}", lambda d, sc: ratio(rate(d, sc, ea), rate(d, sc, na)), "×"),
            measure(f"p99, edge / nginx, {both}", lambda d, sc: ratio(lat(d, sc, ea, "p99"), lat(d, sc, na, "p99")), "×"),
            measure(f"edge CPU per call / nginx CPU per call (JWT on), {both}",
                    lambda d, sc: ratio(cpu(d, sc, ea, "edge"), cpu(d, sc, na, "nginx")), "×"),
        ]
    return out


def write_summary(w, rounds, transport):
    """The summary table, the verdicts by shape, and what they rest on.
    Returns the summary's Rows (for the targets table)."""
    pairs = summary_rows(rounds, transport)
    w(f"| edge with all features on (TLS, JWT, limits with an rpm, metrics), core over {TRANSPORT[transport]} | "
      + " | ".join(title for _, title in SHAPES) + " | target (1 / 64) |")
    w("| --- " * (len(SHAPES) + 2) + "|")
    for label, rows in pairs:
        def cell(r):
            if not r.values:
                return "–"
            return f"{r.summary()} {r.unit}".strip() + (f" **{r.verdict()}**" if r.target else "")
        targets = [rows["unary1"].target or "", rows[VERDICT_SHAPE].target or ""]
        w(f"| {label} | " + " | ".join(cell(rows[sc]) for sc, _ in SHAPES)
          + f" | {' / '.join(t or '–' for t in targets) if any(targets) else ''} |")
    w("")
    w(WHY)
    w("")
    for label, rows in pairs:
        judged = [(sc, rows[sc]) for sc, _ in SHAPES if sc != "unary1" and rows[sc].target and rows[sc].values]
        if not judged:
            continue
        main = rows[VERDICT_SHAPE]
        w(f"- 64 streams, {label} {main.target}: **{main.verdict() or 'no figure'}** on h2load "
          f"({main.cell(main.median)} {main.unit}); "
          + "; ".join(f"{SHAPE_LABEL[sc].split(', ', 1)[1]} {r.cell(r.median)} {r.unit} {r.verdict()}"
                      for sc, r in judged if sc != VERDICT_SHAPE) + ".")
    w("")
    return [r for _, rows in pairs for r in rows.values()]
