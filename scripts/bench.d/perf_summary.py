#!/usr/bin/env python3
"""Summarises `perf script -F comm,ip,sym,dso` output (call graphs) of one
process: the share of CPU samples spent under each component (inclusive:
a sample counts for every component that appears in its stack), the hottest
leaf symbols (self time), and the hottest functions of our own crates with
the source file their module path maps to.

    perf script -i perf.data -F comm,ip,sym,dso | perf_summary.py --crate vibectl_edge
"""
import argparse
import collections
import re
import sys

# (label, regex over one frame "symbol (dso)"); first match names the
# component for "self" attribution, every match counts inclusively.
COMPONENTS = [
    ("TLS (rustls, ring AEAD)", r"^(rustls::|tokio_rustls::|ring::|ring_core_|aes_|gcm_|chacha|poly1305|x25519)"),
    ("JWT verify (jsonwebtoken, HMAC, base64, serde_json)", r"^(jsonwebtoken::|vibectl_edge::jwt::|vibectl_edge::http::auth::|hmac::|sha2::|base64::|serde_json::|serde::)"),
    ("HPACK (h2::hpack)", r"^h2::hpack::"),
    ("HTTP/2 (h2, all)", r"^h2::"),
    ("hyper (server + client)", r"^(hyper::|hyper_util::)"),
    ("tower_http layers (trace, request id, sensitive headers)", r"^tower_http::"),
    ("tracing (spans, subscriber)", r"^(tracing::|tracing_core::|tracing_subscriber::)"),
    ("request id (uuid, rand)", r"^(uuid::|rand::|rand_core::|getrandom)"),
    ("rate limits (governor, edge limits layer)", r"^(governor::|vibectl_edge::limits::|vibectl_edge::http::limits::)"),
    ("rest of the edge's own code (vibectl_edge::)", r"^vibectl_edge::"),
    ("tower (oneshot, boxed services)", r"^tower::"),
    ("http types (HeaderMap, extensions)", r"^http::"),
    ("drop glue", r"^core::ptr::drop_in_place"),
    ("allocator (malloc/free)", r"malloc|_int_free|__libc_free|cfree|realloc|memalign|unlink_chunk|sysmalloc|tcache"),
    ("memcpy/memmove", r"memmove|memcpy"),
    ("kernel (syscalls, TCP, scheduling)", r"\[kernel\.kallsyms\]"),
    ("tokio (runtime, io, timers)", r"^tokio::"),
]


def strip_generics(s):
    """Removes every balanced `<…>` group."""
    out, depth = [], 0
    for c in s:
        if c == "<":
            depth += 1
        elif c == ">" and depth:
            depth -= 1
        elif depth == 0:
            out.append(c)
    return "".join(out)


def head(sym):
    """The path of the function itself, without generic arguments:
    `<a::B<C> as d::E>::f` -> `a::B::f`; `poll<x::Y>` -> `poll`."""
    if sym.startswith("<"):
        depth = 0
        for i, c in enumerate(sym):
            depth += c == "<"
            depth -= c == ">"
            if depth == 0:
                inner, rest = sym[1:i], sym[i + 1:]
                break
        else:
            return strip_generics(sym)
        return strip_generics(inner.split(" as ")[0]) + strip_generics(rest)
    return strip_generics(sym)


def parse(stream):
    """Yields each sample as a list of (symbol, dso), leaf first."""
    frames = []
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        if not line.startswith((" ", "\t")):
            if frames:
                yield frames
            frames = []
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            frames.append((m.group(1), m.group(2)))
    if frames:
        yield frames


def module_file(sym, crate, crate_dir):
    """`vibectl_edge::http::auth::Foo::bar` -> `edge/src/http/auth.rs:Foo::bar`."""
    m = re.search(re.escape(crate) + r"::((?:[a-z_][a-z0-9_]*::)*)(.*)", sym)
    if not m:
        return None
    mods = [p for p in m.group(1).split("::") if p]
    rest = m.group(2)
    # Drop a trailing `{closure…}`/generic noise from the function part.
    path = "/".join(mods) if mods else "lib"
    return f"{crate_dir}/src/{path}.rs: {rest}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crate", action="append", default=[], help="our crate prefix, e.g. vibectl_edge")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    crate_dirs = {"vibectl_edge": "edge", "vibectl_core": "core", "vibectl_config": "config"}

    total = 0
    inclusive = collections.Counter()
    exclusive = collections.Counter()
    callers = collections.Counter()
    leaf = collections.Counter()
    ours = collections.Counter()
    for frames in parse(sys.stdin):
        total += 1
        texts = [f"{head(s)} ({d})" for s, d in frames]
        sym0, dso0 = frames[0]
        leaf[f"{sym0}  [{dso0.rsplit('/', 1)[-1]}]"] += 1
        for label, rx in COMPONENTS:
            if any(re.search(rx, t) for t in texts):
                inclusive[label] += 1
        # Exclusive: the leaf-most frame that belongs to a component.
        owner = "other"
        for t in texts:
            hit = next((label for label, rx in COMPONENTS if re.search(rx, t)), None)
            if hit:
                owner = hit
                break
        exclusive[owner] += 1
        if owner in ("allocator (malloc/free)", "memcpy/memmove"):
            caller = next((t for t in texts if "::" in t and not t.startswith(("alloc::", "core::", "<alloc", "bytes::bytes_mut"))), "?")
            callers[f"{owner.split(' ')[0]} <- {caller.split(' (')[0]}"] += 1
        seen = set()
        for s, _ in frames:
            s = head(s)
            for crate in args.crate:
                if s.startswith(crate + "::"):
                    key = module_file(s, crate, crate_dirs.get(crate, crate))
                    if key and key not in seen:
                        seen.add(key)
                        ours[key] += 1
    if total == 0:
        print("no samples")
        return
    print(f"samples: {total}")
    print("\ncomponent: self (leaf-most frame of the component) / inclusive (anywhere on the stack)")
    for label, _ in COMPONENTS + [("other", None)]:
        print(f"  {100.0 * exclusive[label] / total:5.1f}% / {100.0 * inclusive[label] / total:5.1f}%  {label}")
    print(f"\nhottest leaf symbols (self):")
    for sym, n in leaf.most_common(args.top):
        print(f"  {100.0 * n / total:5.1f}%  {sym[:150]}")
    if callers:
        print("\nwho calls the allocator and memcpy (first frame outside alloc/core):")
        for key, n in callers.most_common(args.top):
            print(f"  {100.0 * n / total:5.1f}%  {key[:150]}")
    if ours:
        print(f"\nour code on the stack (inclusive), by module file: function:")
        for key, n in ours.most_common(args.top):
            print(f"  {100.0 * n / total:5.1f}%  {key[:150]}")


if __name__ == "__main__":
    main()
