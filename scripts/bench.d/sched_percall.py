#!/usr/bin/env python3
"""Per call, from `perf script` of sched_switch, sched_wakeup and
raw_syscalls:sys_enter recorded on every CPU (scripts/profile-edge sched):
where CPU 1's wall time goes (the system under test, the core, idle, other
processes), how often each thread of the SUT and the core is switched in,
woken and by whom, how it left the CPU (slept or preempted), and its
syscalls by name. Usage: sched_percall.py PERF_SCRIPT_TXT CALLS SUT_PID CORE_PID [CPU]
"""
import collections
import re
import sys

NAMES = {0: "read", 1: "write", 7: "poll", 19: "readv", 20: "writev", 23: "select",
         44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 202: "futex",
         232: "epoll_wait", 233: "epoll_ctl", 281: "epoll_pwait", 441: "epoll_pwait2",
         228: "clock_gettime", 24: "sched_yield", 318: "getrandom", 9: "mmap", 11: "munmap",
         10: "mprotect", 28: "madvise", 16: "ioctl", 72: "fcntl", 54: "setsockopt",
         288: "accept4", 3: "close", 230: "clock_nanosleep", 35: "nanosleep"}
LINE = re.compile(r"^\s*(.+?)\s+(-?\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)$")
FIELD = re.compile(r"(\w+)=(\S+)")


def main():
    path, calls, sut, core = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    cpu_watch = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    tid_pid, tid_comm = {0: 0}, {0: "idle"}
    events = []
    for line in open(path, errors="replace"):
        m = LINE.match(line)
        if not m:
            continue
        comm, pid, tid, cpu, ts, ev, rest = m.groups()
        pid, tid, cpu, ts = int(pid), int(tid), int(cpu), float(ts)
        if pid >= 0:
            tid_pid[tid] = pid
        tid_comm.setdefault(tid, comm)
        events.append((ts, cpu, tid, ev, rest))

    def group(tid):
        p = tid_pid.get(tid)
        if tid == 0:
            return "idle"
        if p == sut:
            return "sut"
        if p == core:
            return "core"
        return "other"

    def label(tid):
        return f"{group(tid)}:{tid_comm.get(tid, '?')}/{tid}"

    sut_sys = [e for e in events if e[3] == "raw_syscalls:sys_enter" and group(e[2]) == "sut"]
    if not sut_sys:
        sys.exit("no syscalls of the system under test recorded")
    t0, t1 = sut_sys[0][0], sut_sys[-1][0]
    span = t1 - t0
    on_cpu = collections.Counter()      # group -> seconds on cpu_watch
    other_on = collections.Counter()    # comm of "other" -> seconds
    switch_in = collections.Counter()   # label -> times switched in (cpu_watch)
    left = collections.Counter()        # (label, prev_state) -> count
    wakes = collections.Counter()       # (woken label, waker group) -> count
    sysc = collections.Counter()        # (group, name) -> count
    running, since = None, None
    for ts, cpu, tid, ev, rest in events:
        if not t0 <= ts <= t1:
            continue
        if ev == "sched:sched_switch" and cpu == cpu_watch:
            f = dict(FIELD.findall(rest.replace(" ==> ", " ")))
            prev = int(f.get("prev_pid", -1))
            nxt = int(rest.split("next_pid=")[1].split()[0])
            if since is not None:
                on_cpu[group(prev)] += ts - since
                if group(prev) == "other":
                    other_on[tid_comm.get(prev, "?")] += ts - since
            left[(label(prev), f.get("prev_state", "?"))] += 1
            switch_in[label(nxt)] += 1
            running, since = nxt, ts
        elif ev == "sched:sched_wakeup":
            woken = int(rest.split(" pid=")[1].split()[0])
            if group(woken) in ("sut", "core"):
                wakes[(label(woken), group(tid))] += 1
        elif ev == "raw_syscalls:sys_enter":
            g = group(tid)
            if g in ("sut", "core"):
                nr = int(rest.split()[1])
                sysc[(g, NAMES.get(nr, f"nr{nr}"))] += 1
    per = lambda x: x / calls
    print(f"  span {span * 1e3:.1f} ms over {calls} calls: {span / calls * 1e6:.1f} us wall per call")
    print(f"  CPU {cpu_watch} time per call (us):", ", ".join(
        f"{g} {on_cpu[g] / calls * 1e6:.1f}" for g in ("sut", "core", "idle", "other")))
    if other_on:
        top = ", ".join(f"{c} {t / calls * 1e6:.1f}" for c, t in other_on.most_common(4))
        print(f"    other processes on CPU {cpu_watch} (us per call): {top}")
    print("  switched in per call (CPU %d):" % cpu_watch)
    for lab, n in sorted(switch_in.items(), key=lambda x: -x[1]):
        if lab.startswith(("sut", "core", "idle")) and per(n) >= 0.01:
            states = ", ".join(f"{s} {per(c):.2f}" for (l, s), c in left.items() if l == lab)
            print(f"    {lab:40} {per(n):6.2f}   left the CPU: {states}")
    print("  woken per call (by the waker's group):")
    for (lab, by), n in sorted(wakes.items(), key=lambda x: -x[1]):
        if per(n) >= 0.01:
            print(f"    {lab:40} by {by:6} {per(n):6.2f}")
    print("  syscalls per call:")
    for g in ("sut", "core"):
        items = sorted(((n, c) for (gg, n), c in sysc.items() if gg == g), key=lambda x: -x[1])
        total = sum(c for _, c in items)
        print(f"    {g:5} {per(total):6.2f}: " + ", ".join(f"{n} {per(c):.2f}" for n, c in items if per(c) >= 0.01))


if __name__ == "__main__":
    main()
