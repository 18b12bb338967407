"""Loading one `scripts/bench` run (results/ROUND.SCENARIO.SYSTEM.{json,h2load})
and the per-round arithmetic every table uses: a Row is one measure, a value
per round, summarised as min / median / max.
"""
import collections
import json
import os
import re
import statistics


# ------------------------------------------------------------------ loading

def load(results_dir):
    """{round: {(scenario, system): data}} for numbered rounds, plus extras."""
    rounds = collections.defaultdict(dict)
    extra = {}
    for name in sorted(os.listdir(results_dir)):
        path = os.path.join(results_dir, name)
        parts = name.split(".")
        if name.startswith("profile.") and name.endswith(".txt"):
            extra[name] = open(path).read()
            continue
        if len(parts) < 4:
            continue
        rnd, scenario, system, ext = parts[0], parts[1], ".".join(parts[2:-1]), parts[-1]
        if ext == "json":
            try:
                data = json.load(open(path))
            except (ValueError, OSError):
                data = None
        elif ext == "h2load":
            data = parse_h2load(open(path).read())
            cpu_path = path[: -len("h2load")] + "h2cpu"
            if os.path.exists(cpu_path):
                add_h2_cpu(data, open(cpu_path).read())
            lat_path = path[: -len("h2load")] + "h2lat"
            if os.path.exists(lat_path):
                try:
                    data.update(json.load(open(lat_path)))
                except ValueError:
                    pass
        else:
            continue
        if rnd.isdigit():
            rounds[int(rnd)][(scenario, system)] = data
        else:
            extra[(rnd, scenario, system)] = data
    return dict(sorted(rounds.items())), extra


def parse_h2load(text):
    out = {}
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    if m:
        out["rate_per_s"] = float(m.group(3))
        out["elapsed_s"] = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    if m:
        out["ok"] = int(m.group(2))
        out["failed"] = int(m.group(3)) + int(m.group(4))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if m:
        out["mean_us"] = to_us(m.group(3))
    return out


CLK_TCK = 100.0


def add_h2_cpu(data, text):
    """Turns `NAME TICKS` lines (CPU spent during the h2load run) into the
    same `procs` shape loadgen reports."""
    procs = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        cpu_s = int(parts[1]) / CLK_TCK
        ok, secs = data.get("ok"), data.get("elapsed_s")
        procs[parts[0]] = {
            "cpu_ms": cpu_s * 1000,
            "cpu_us_per_call": cpu_s * 1e6 / ok if ok else None,
            "cpu_util": cpu_s / secs if secs else None,
        }
    data["procs"] = procs


def to_us(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d or d[p] is None:
            return None
        d = d[p]
    return d


# ------------------------------------------------------------------ metrics

class Row:
    """One line of a table: a value per round, summarised."""

    def __init__(self, label, values, unit="", fmt="{:.2f}", target=None, check=None, note=""):
        self.label, self.unit, self.fmt, self.note = label, unit, fmt, note
        self.values = [v for v in values if v is not None]
        self.target, self.check = target, check

    @property
    def median(self):
        return statistics.median(self.values) if self.values else None

    def cell(self, v):
        return "–" if v is None else self.fmt.format(v)

    def summary(self):
        if not self.values:
            return "–"
        lo, mid, hi = min(self.values), self.median, max(self.values)
        return f"{self.cell(lo)} / **{self.cell(mid)}** / {self.cell(hi)}"

    def verdict(self):
        if self.check is None or self.median is None:
            return ""
        return "PASS" if self.check(self.median) else "MISS"


def per_round(rounds, fn):
    out = []
    for r, data in rounds.items():
        try:
            out.append(fn(data))
        except (TypeError, ZeroDivisionError, KeyError):
            out.append(None)
    return out


def ratio(a, b):
    return None if a is None or not b else a / b


def diff(a, b):
    return None if a is None or b is None else a - b


def rate(d, sc, sys):
    return get(d.get((sc, sys)), "rate_per_s")


def lat(d, sc, sys, q="p50", kind="latency_us"):
    return get(d.get((sc, sys)), kind, q)


def cpu(d, sc, sys, proc):
    return get(d.get((sc, sys)), "procs", proc, "cpu_us_per_call")
