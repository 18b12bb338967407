"""Instructions per call by feature, from the callgrind runs of scripts/bench
(scripts/profile-edge callgrind): the edge with every feature on, with auth
but no metrics, with neither, and nginx without and with the token.

    python callgrind_features.py DIR > profile.callgrind.txt

DIR holds LOAD.CONFIG.txt (profile-edge's "instructions per call: N (T over
C calls ...)" line) and LOAD.CONFIG.out (the callgrind profile). Prints a
markdown section; its first line is a one-sentence reading for the report's
Reading list, then a blank line."""
import os
import re
import subprocess
import sys

LOADS = [("h2load1", "h2load, 1 stream"), ("h2load64", "h2load, 1 connection × 64 streams"),
         ("grpcio1", "grpcio (the vibectl client's gRPC stack), 1 stream")]
CONFIGS = [("all", "edge, all features on"), ("auth", "edge, auth on, metrics off"),
           ("none", "edge, no auth, no metrics"), ("nginx", "nginx"),
           ("nginx_token", "nginx sent the same token (forwarded unverified)")]
TOP = 6
# Program and thread entry frames: callgrind charges them the whole run.
ENTRY = re.compile(r"^(main|\(below main\)|__libc_start_main.*|0x[0-9a-f]+|start_thread|clone|"
                   r".*__rust_begin_short_backtrace|.*thread_start.*|.*call_once\{\{vtable\.shim\}\})$")


def per_call(d, load, cfg):
    """(instructions per call, calls) from profile-edge's line, or None."""
    try:
        text = open(os.path.join(d, f"{load}.{cfg}.txt")).read()
    except OSError:
        return None
    m = re.search(r"instructions per call: (\d+) \((\d+) over (\d+) calls", text)
    return (int(m.group(1)), int(m.group(3))) if m else None


def by_function(path, calls):
    """{function: self instructions per call}, summed over the files that
    inline it (callgrind_annotate, no source annotation)."""
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=no", "--threshold=100", path],
                         capture_output=True, text=True, check=False).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"^\s*([\d,]+) \([\s\d.%]+\)\s+(\S.*)$", line)
        if not m or "=>" in line or "PROGRAM TOTALS" in line:
            continue
        name = m.group(2)
        name = re.sub(r" \[[^\]]*\]$", "", name)          # [object file]
        name = name.split(":", 1)[1] if ":" in name else name  # source file
        costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", "")) / calls
    return costs


def short(fn):
    fn = re.sub(r"<[^<>]*>", "", re.sub(r"<[^<>]*>", "", fn))  # generic arguments, two levels
    return fn.replace("{{closure}}", "{closure}")[:90]


def diff_lines(d, load, a, b, calls):
    fa = by_function(os.path.join(d, f"{load}.{a}.out"), calls[a])
    fb = by_function(os.path.join(d, f"{load}.{b}.out"), calls[b])
    deltas = sorted(((fa.get(k, 0) - fb.get(k, 0), k) for k in set(fa) | set(fb) if not ENTRY.match(k)),
                    reverse=True)
    return [(v, short(k)) for v, k in deltas[:TOP] if v >= 50]


def main():
    d = sys.argv[1]
    have = {(ld, c): per_call(d, ld, c) for ld, _ in LOADS for c, _ in CONFIGS}
    loads = [(ld, name) for ld, name in LOADS if any(have[(ld, c)] for c, _ in CONFIGS)]
    if not loads:
        return
    n = lambda ld, c: have[(ld, c)][0] if have[(ld, c)] else None  # noqa: E731
    cell = lambda v: f"{v:,}" if v is not None else "–"  # noqa: E731
    ratio = lambda a, b: f"{a / b:.2f} ×" if a and b else "–"  # noqa: E731
    delta = lambda a, b: f"{a - b:+,}" if a and b else "–"  # noqa: E731
    lines = []
    w = lines.append
    h = n("h2load64", "all"), n("h2load64", "none"), n("h2load64", "nginx"), n("h2load64", "nginx_token")
    if all(h):
        w(f"By instructions (callgrind, user space only), at 64 streams under h2load: the edge with every feature "
          f"on {h[0]:,} per call, {h[1]:,} without auth and metrics ({h[0] - h[1]:+,}); nginx {h[2]:,}, and "
          f"{h[3]:,} ({h[3] - h[2]:+,}) when sent the same token, which it forwards to the core unverified "
          f"(section \"Instructions per call by feature\").")
    else:
        w("")
    w("")
    w("`scripts/profile-edge callgrind` for each system and load (scripts/bench runs it after the rounds): "
      "the process under valgrind's callgrind, counters zeroed after 300 warm-up calls, then the calls "
      "below, counted. Instructions are deterministic (the same binary under the same load gives the same "
      "count within a fraction of a percent), so they attribute per-call costs that CPU time on this shared "
      "machine cannot; they count user space only: the kernel's share (syscalls, TCP, wake-ups), where the "
      "edge and nginx differ most, is in the CPU rows above, not here. nginx is the benchmark's "
      "(one worker, `master_process off` under valgrind); each system reaches a fresh core the same way.")
    w("")
    w("| load | " + " | ".join(name for _, name in CONFIGS) + " |")
    w("| --- |" + " --- |" * len(CONFIGS))
    for ld, name in loads:
        w(f"| {name} | " + " | ".join(cell(n(ld, c)) for c, _ in CONFIGS) + " |")
    w("")
    w("| load | auth (token checked and stripped) | metrics | edge all features / nginx | "
      "edge like for like / nginx | edge all features / nginx sent the token |")
    w("| --- | --- | --- | --- | --- | --- |")
    for ld, name in loads:
        w(f"| {name} | {delta(n(ld, 'auth'), n(ld, 'none'))} | {delta(n(ld, 'all'), n(ld, 'auth'))} "
          f"| {ratio(n(ld, 'all'), n(ld, 'nginx'))} | {ratio(n(ld, 'none'), n(ld, 'nginx'))} "
          f"| {ratio(n(ld, 'all'), n(ld, 'nginx_token'))} |")
    w("")
    for ld, name in loads:
        calls = {c: have[(ld, c)][1] for c, _ in CONFIGS if have[(ld, c)]}
        for a, b, what in (("auth", "none", "what auth adds to the edge"),
                           ("nginx_token", "nginx", "what the token adds to nginx")):
            if a in calls and b in calls and os.path.exists(os.path.join(d, f"{ld}.{a}.out")):
                w(f"{name}, {what}, by function (self instructions per call, the {TOP} largest):")
                w("")
                w("```")
                for v, fn in diff_lines(d, ld, a, b, calls):
                    w(f"{v:+8,.0f}  {fn}")
                w("```")
                w("")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
