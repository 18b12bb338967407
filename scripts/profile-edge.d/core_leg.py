#!/usr/bin/env python3
"""HTTP/2 frames per call on the core leg, with their flags, from a full
strace (`strace -f -xx -s 65536`) of the edge or of the core
(scripts/profile-edge coreleg): per direction, reads/writes per call,
frames per call by type (DATA split into with/without END_STREAM and
empty; HEADERS into opening and END_STREAM ones), and frames per write.

    core_leg.py STRACE_FILE CALLS SIDE   (SIDE: edge or core, whose strace)
"""
import collections
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench.d"))
from strace_percall import CALL, READS, WRITES, H2_TYPES, data_of, merged_lines  # noqa: E402

END_STREAM, ACK = 0x1, 0x1


def frames(chunks):
    """(kind, chunk index, stream id) of each frame in the concatenated chunks."""
    stream = b"".join(chunks)
    starts, at = [], 0
    for n, c in enumerate(chunks):
        starts.append((at, n))
        at += len(c)
    out, i, k = [], 24 if stream.startswith(b"PRI * HTTP/2.0") else 0, 0
    while i + 9 <= len(stream):
        length, kind, flags = int.from_bytes(stream[i:i + 3], "big"), stream[i + 3], stream[i + 4]
        name = H2_TYPES.get(kind, str(kind))
        if kind == 0:
            name = ("DATA empty" if length == 0 else "DATA") + ("+ES" if flags & END_STREAM else "")
        elif kind == 1:
            name = "HEADERS+ES" if flags & END_STREAM else "HEADERS"
        elif kind in (4, 6) and flags & ACK:
            name += " ACK"
        while k + 1 < len(starts) and starts[k + 1][0] <= i:
            k += 1
        out.append((name, k, int.from_bytes(stream[i + 5:i + 9], "big") & 0x7FFFFFFF))
        i += 9 + length
    return out


def main():
    path, calls, side = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    per_fd = collections.defaultdict(lambda: {"r": 0, "again": 0, "in": [], "out": []})
    for text in merged_lines(path):
        m = CALL.match(text)
        if not m or (m.group(1) not in READS and m.group(1) not in WRITES):
            continue
        name, args, ret = m.group(1), m.group(2), m.group(3)
        rec = per_fd[args.split(",", 1)[0]]
        if ret.startswith("-") or ret == "?":
            rec["again"] += name in READS
            continue
        data = data_of(args)[: int(ret)]
        rec["in" if name in READS else "out"].append(data)
    # The core leg: the h2c socket with the most traffic (not TLS).
    legs = [(fd, r) for fd, r in per_fd.items()
            if (r["in"] or r["out"]) and (r["in"] or r["out"])[0][:1] not in (b"\x16", b"\x17")]
    if not legs:
        sys.exit("no h2c socket in the trace")
    fd, rec = max(legs, key=lambda kv: len(kv[1]["in"]) + len(kv[1]["out"]))
    to_core = "out" if side == "edge" else "in"
    print(f"  core leg (fd {fd} of the {side}); {rec['again'] / calls:.2f} failed (EAGAIN) reads per call")
    for direction in (to_core, "in" if to_core == "out" else "out"):
        label = "edge -> core" if direction == to_core else "core -> edge"
        verb = "writes" if direction == "out" else "reads"
        chunks = [c for c in rec[direction] if c]
        fs = frames(chunks)
        counts = collections.Counter(name for name, _, _ in fs)
        opened, late = {}, 0
        for name, k, sid in fs:
            if name.startswith("HEADERS") and sid not in opened:
                opened[sid] = k
            if name.endswith("+ES") and sid in opened:
                late += k != opened.pop(sid)
        print(f"    {label}: {verb} {len(chunks) / calls:.2f}, frames {len(fs) / calls:.2f} per call "
              f"({len(fs) / max(len(chunks), 1):.1f} per {verb[:-1]}), bytes {sum(map(len, chunks)) / calls:.0f}")
        if verb == "writes":
            print(f"      streams whose END_STREAM went in a later write than their HEADERS: {late / calls:.2f} per call")
        print("      " + ", ".join(f"{k} {v / calls:.2f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
