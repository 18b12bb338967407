#!/usr/bin/env python3
"""Latency percentiles of one h2load run from its --log-file (tab-separated:
start time in µs since the epoch, HTTP status, µs until the end of the
response), as JSON in loadgen's shape: {"latency_us": {"p50": …, "p99": …}}.
h2load itself prints only min, max, mean and sd.

    h2lat.py h2load.log > run.h2lat
"""
import json
import sys


def percentile(xs, q):
    """Nearest-rank percentile of sorted xs (q in 0..100)."""
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, -(-len(xs) * q // 100) - 1))
    return xs[int(k)]


def main():
    xs = []
    with open(sys.argv[1]) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1].strip() == "200":
                xs.append(int(parts[2]))
    xs.sort()
    json.dump({"latency_us": {q: percentile(xs, n) for q, n in (("p50", 50), ("p90", 90), ("p99", 99))},
               "logged": len(xs)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
