#!/usr/bin/env python3
"""Medians and ratios of scripts/profile-edge ab's results.jsonl.

    ab_summary.py RESULTS_JSONL
"""
import json, sys, statistics as st
rows, text, dec, i = [], open(sys.argv[1]).read(), json.JSONDecoder(), 0
while True:
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text):
        break
    row, i = dec.raw_decode(text, i)
    rows.append(row)
def get(r, sys_, streams, tool):
    for x in rows:
        if x["round"] == r and x["sys"] == sys_ and x["streams"] == streams and x["tool"] == tool:
            return x
rounds = sorted({x["round"] for x in rows})
def med(xs): return st.median(xs) if xs else float("nan")
for streams in (1, 64):
    print(f"== {streams} stream(s), medians over {len(rounds)} rounds (per-round ratios)")
    for sysn in ("A", "B", "nginx"):
        lg_tp, h2_tp, p50_add, p99, cpu = [], [], [], [], []
        for r in rounds:
            l, c, n = get(r, sysn, streams, "loadgen"), get(r, "core", streams, "loadgen"), get(r, "nginx", streams, "loadgen")
            h, hn = get(r, sysn, streams, "h2load"), get(r, "nginx", streams, "h2load")
            lg_tp.append(l["r"]["rate_per_s"] / n["r"]["rate_per_s"])
            h2_tp.append(h["rps"] / hn["rps"])
            p50_add.append(l["r"]["latency_us"]["p50"] - c["r"]["latency_us"]["p50"])
            p99.append(l["r"]["latency_us"]["p99"] / n["r"]["latency_us"]["p99"])
            cpu.append((h["ticks"] / h["ok"]) / (hn["ticks"] / hn["ok"]))
        print(f"  {sysn:6} loadgen tput/nginx {med(lg_tp):.2f}  h2load tput/nginx {med(h2_tp):.2f}  "
              f"added p50 {med(p50_add):.0f} us  p99/nginx {med(p99):.2f}  proxy CPU/call vs nginx {med(cpu):.2f}")
    ab = [get(r, "B", streams, "h2load")["rps"] / get(r, "A", streams, "h2load")["rps"] for r in rounds]
    abl = [get(r, "B", streams, "loadgen")["r"]["rate_per_s"] / get(r, "A", streams, "loadgen")["r"]["rate_per_s"] for r in rounds]
    abp = [get(r, "B", streams, "loadgen")["r"]["latency_us"]["p50"] - get(r, "A", streams, "loadgen")["r"]["latency_us"]["p50"] for r in rounds]
    print(f"  B/A: h2load tput {med(ab):.2f} (per round {', '.join(f'{x:.2f}' for x in ab)}); "
          f"loadgen tput {med(abl):.2f}; p50 B-A {med(abp):.0f} us")
