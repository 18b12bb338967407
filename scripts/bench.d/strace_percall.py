#!/usr/bin/env python3
"""Per-call figures from a full strace (`strace -f -xx -s 65536`) of a
proxy serving CALLS calls (scripts/profile-edge percall):

- syscalls per call, by name (failed ones, e.g. EAGAIN reads, counted apart);
- per leg, reads and writes per call: the client leg is the socket whose
  bytes are TLS records, the core leg the one whose bytes parse as HTTP/2
  frames (h2c to the core);
- TLS records per call each way on the client leg (by content type);
- HTTP/2 frames per call each way on the core leg, by frame type.

    strace_percall.py STRACE_FILE CALLS
"""
import collections
import re
import sys

READS = {"read", "recvfrom", "readv", "recvmsg"}
WRITES = {"write", "sendto", "writev", "sendmsg"}
H2_TYPES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
            5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}
TLS_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}

LINE = re.compile(r"^(\d+)\s+(.*)$")
CALL = re.compile(r"^([a-z_0-9]+)\((.*)\)\s+=\s+(-?\d+|\?)(.*)$")
HEX = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


def merged_lines(path):
    """strace -f lines with `<unfinished ...>` / `<... resumed>` joined."""
    pending = {}
    with open(path, errors="replace") as f:
        for raw in f:
            raw = raw.rstrip("\n")
            m = LINE.match(raw)
            pid, text = (m.group(1), m.group(2)) if m else ("0", raw)
            if text.endswith("<unfinished ...>"):
                pending[pid] = text[: -len("<unfinished ...>")].rstrip()
                continue
            r = re.match(r"^<\.\.\. [a-z_0-9]+ resumed>\s?(.*)$", text)
            if r:
                text = pending.pop(pid, "") + r.group(1)
            yield text


def data_of(args):
    """The bytes in a call's arguments (all quoted buffers, joined)."""
    return b"".join(bytes.fromhex(h.replace("\\x", "")) for h in HEX.findall(args))


def tls_records(stream):
    counts, i = collections.Counter(), 0
    while i + 5 <= len(stream):
        kind, length = stream[i], int.from_bytes(stream[i + 3 : i + 5], "big")
        counts[TLS_TYPES.get(kind, str(kind))] += 1
        i += 5 + length
    return counts


def h2_frames(stream):
    counts, i = collections.Counter(), 0
    if stream.startswith(b"PRI * HTTP/2.0"):
        i = 24
    while i + 9 <= len(stream):
        length = int.from_bytes(stream[i : i + 3], "big")
        counts[H2_TYPES.get(stream[i + 3], str(stream[i + 3]))] += 1
        i += 9 + length
    return counts


def main():
    path, calls = sys.argv[1], int(sys.argv[2])
    names, failed = collections.Counter(), collections.Counter()
    per_fd = collections.defaultdict(lambda: {"r": 0, "r_again": 0, "w": 0, "in": bytearray(), "out": bytearray()})
    for text in merged_lines(path):
        m = CALL.match(text)
        if not m:
            continue
        name, args, ret = m.group(1), m.group(2), m.group(3)
        names[name] += 1
        if ret.startswith("-"):
            failed[f"{name} {m.group(4).split()[0] if m.group(4).split() else ''}"] += 1
        if name not in READS and name not in WRITES:
            continue
        fd = args.split(",", 1)[0]
        rec = per_fd[fd]
        if name in READS:
            if ret.startswith("-"):
                rec["r_again"] += 1
                continue
            rec["r"] += 1
            rec["in"] += data_of(args)[: int(ret)]
        else:
            if ret.startswith("-"):
                continue
            rec["w"] += 1
            rec["out"] += data_of(args)[: int(ret)]
    print(f"  syscalls per call (all threads): {sum(names.values()) / calls:.2f}")
    for name, n in names.most_common():
        print(f"    {name:16} {n / calls:7.2f}")
    for name, n in failed.most_common():
        print(f"    failed: {name:24} {n / calls:7.2f}")
    for fd, rec in sorted(per_fd.items(), key=lambda kv: -(kv[1]["r"] + kv[1]["w"])):
        data = bytes(rec["in"] or rec["out"])
        if data[:1] in (b"\x16", b"\x17", b"\x15", b"\x14") and data[1:2] == b"\x03":
            leg, count = "client (TLS)", tls_records
        elif len(data) >= 9 or data.startswith(b"PRI"):
            leg, count = "core (h2c)", h2_frames
        else:
            leg, count = "other", None
        if rec["r"] + rec["w"] + rec["r_again"] < calls / 10:
            continue
        print(f"  fd {fd} {leg}: reads {rec['r'] / calls:.2f} (+ {rec['r_again'] / calls:.2f} EAGAIN), "
              f"writes {rec['w'] / calls:.2f}, bytes in {len(rec['in']) / calls:.0f}, out {len(rec['out']) / calls:.0f} per call")
        if count:
            for direction in ("in", "out"):
                c = count(bytes(rec[direction]))
                items = ", ".join(f"{k} {v / calls:.2f}" for k, v in c.most_common())
                unit = "TLS records" if count is tls_records else "HTTP/2 frames"
                print(f"    {unit} {direction:3} per call: {sum(c.values()) / calls:.2f} ({items})")


if __name__ == "__main__":
    main()
