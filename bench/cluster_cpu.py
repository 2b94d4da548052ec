#!/usr/bin/env python3
"""CPU time per process kind from /proc, for bench/cluster.sh (issue 18: one machine against the cluster).

    cluster_cpu.py snap OUT.json --root core=PID --root rabbit1=PID ... [--database NAME]
    cluster_cpu.py window PREFIX --err BENCH.err --bench PID --warmup W --duration D [--metrics NAME=URL ...]
                   --root ... [--database NAME]     # PREFIX.cpu-before.json / .cpu-after.json, see below
    cluster_cpu.py diff BEFORE.json AFTER.json --rate R [--json]   # CPU seconds and µs per hold per kind

Like bench/proc_cpu.py (issue 16), but the processes are named by the caller instead of by their command, so
that the single-node services and the nodes of one cluster topology are told apart from each other and from
other topologies running on the same machine (other CLUSTER_PORT_BASEs, rabbitmqctl's own Erlang VMs):

  --root NAME=PID   PID and every descendant of it belong to NAME, unless a nearer ancestor is itself a root
                    (Patroni starts its PostgreSQL: `patroni1` is Patroni, `pg1` the postmaster's tree)
  a root whose NAME starts with "pg" is a PostgreSQL postmaster; its processes are split by their title:
      NAME-backends  backends connected to --database (the run's database)
      NAME-wal       the WAL writer
      NAME-repl      walsender, walreceiver, startup (recovery: the standby's replay)
      NAME-other     backends of other databases (Patroni's own queries; on the shared instance, other tests)
      NAME-aux       the postmaster, checkpointer, background writer, autovacuum, stats, ...

`window` runs beside one inventory-bench run, started before it (so that a loaded machine's slow start of
this interpreter does not shift the window): it polls the bench's stderr for its "running: warm-up" line,
then takes the first snapshot WARMUP + 0.5 s later and the second at the end of the measured seconds minus
1 s, each with every core's /metrics (--metrics NAME=URL: their hold.request count, so that the window's
holds are counted, not estimated from the rate). A snapshot that comes later than planned is recorded as
such ("late" seconds); the window is still consistent (CPU and holds over the same interval).

A snapshot holds utime + stime per process (all threads; /proc/PID/stat fields 14 and 15, clock ticks) and
the machine's busy and total ticks (/proc/stat). Processes that start inside the window count from zero;
those that end inside it are lost (none of the named ones should). Standard library only.
"""

import argparse
import json
import os
import sys

TICK = os.sysconf("SC_CLK_TCK")


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def stat_fields(pid):
    stat = read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    rest = stat[stat.rindex(b")") + 2 :].split()  # fields after the command, from field 3 (state)
    return int(rest[1]), int(rest[11]) + int(rest[12])  # ppid (field 4), utime + stime (14, 15)


def pg_part(pid, database):
    title = (read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ").decode(errors="replace").strip()
    if not title.startswith("postgres:"):
        return "aux"  # the postmaster itself (its command line is the binary's path)
    if "walwriter" in title:
        return "wal"
    if "walsender" in title or "walreceiver" in title or "startup" in title:
        return "repl"
    words = title.split()
    # "postgres: CLUSTER: USER DATABASE HOST(PORT) STATE" (the cluster name may be absent: one word less)
    if "(" in title or " [local]" in title:
        names = [w for w in words[1:] if not w.endswith(":")]
        if len(names) >= 2:
            return "backends" if database and names[1] == database else "other"
    return "aux"


def snapshot(roots, database):
    by_pid = {}
    for name, pid in roots:
        by_pid[int(pid)] = name
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(entry)
            if fields is not None:
                table[int(entry)] = fields
    processes = {}
    for pid, (ppid, ticks) in table.items():
        owner, walk, seen = None, pid, 0
        while walk and seen < 64:
            if walk in by_pid:
                owner = by_pid[walk]
                break
            walk = table.get(walk, (0, 0))[0]
            seen += 1
        if owner is None:
            continue
        group = owner
        if owner.startswith("pg") and (read(f"/proc/{pid}/comm") or b"").strip() == b"postgres":
            group = f"{owner}-{pg_part(pid, database)}"
        processes[str(pid)] = {"group": group, "ticks": ticks}
    values = [int(v) for v in read("/proc/stat").split(b"\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return {
        "processes": processes,
        "machineTicks": sum(values[:8]),
        "machineBusyTicks": sum(values[:8]) - idle,
        "cpus": os.cpu_count(),
        "load": open("/proc/loadavg").read().split()[:3],
    }


def hold_requests(url):
    """Hold requests a core has answered (inventory_rpc_requests_total{operation="hold.request"}, all outcomes)."""
    import urllib.request
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("inventory_rpc_requests_total{") and 'operation="hold.request"' in line)


def window(args, roots):
    import time
    deadline = time.time() + 900
    seen = None
    while time.time() < deadline:
        try:
            with open(args.err) as f:
                if any(line.startswith("running: warm-up") for line in f):
                    seen = time.time()
                    break
        except OSError:
            pass
        if not os.path.exists(f"/proc/{args.bench}"):
            return 0  # the bench ended (failed) before measuring
        time.sleep(0.05)
    if seen is None:
        return 0
    planned = [seen + args.warmup + 0.5, seen + args.warmup + max(args.duration - 1.0, 1.0)]
    metrics = [tuple(item.split("=", 1)) for item in args.metrics]
    for label, at in zip(("before", "after"), planned):
        time.sleep(max(0.0, at - time.time()))
        taken = time.time()
        snap = snapshot(roots + [("bench", str(args.bench))], args.database)
        snap["holdRequests"] = {name: hold_requests(url) for name, url in metrics} if metrics else None
        snap["time"] = taken
        snap["late"] = round(taken - at, 3)
        snap["measuredFrom"] = seen + args.warmup
        snap["measuredUntil"] = seen + args.warmup + args.duration
        with open(f"{args.prefix}.cpu-{label}.json", "w") as f:
            json.dump(snap, f)
    return 0


def diff(before, after, rate):
    seconds = {}
    for pid, p in after["processes"].items():
        start = before["processes"][pid]["ticks"] if pid in before["processes"] else 0
        seconds[p["group"]] = seconds.get(p["group"], 0.0) + (p["ticks"] - start) / TICK
    wall_cpu = (after["machineTicks"] - before["machineTicks"]) / TICK
    window = wall_cpu / (after["cpus"] or 1)
    holds = rate * window
    counted = None
    if before.get("holdRequests") and after.get("holdRequests"):
        values = [(after["holdRequests"].get(k), v) for k, v in before["holdRequests"].items()]
        if all(a is not None and b is not None for a, b in values):
            counted = sum(a - b for a, b in values)
            holds = counted
    busy = (after["machineBusyTicks"] - before["machineBusyTicks"]) / TICK
    rows = [{"group": g, "cpuSeconds": round(s, 3), "usPerHold": round(s / holds * 1e6, 1) if holds else None}
            for g, s in sorted(seconds.items())]
    return {
        "holds": round(holds),
        "holdsCounted": counted is not None,
        "ratePerSecond": rate,
        "late": [before.get("late"), after.get("late")],
        "insideMeasured": (before["time"] >= before["measuredFrom"] and after["time"] <= after["measuredUntil"])
        if "time" in before else None,
        "windowSeconds": round(window, 2),
        "groups": rows,
        "machineBusyCpuSeconds": round(busy, 2),
        "machineCpuSeconds": round(wall_cpu, 2),
        "loadBefore": before["load"],
        "loadAfter": after["load"],
    }


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snap")
    snap.add_argument("out")
    snap.add_argument("--root", action="append", default=[], help="NAME=PID")
    snap.add_argument("--database")
    w = sub.add_parser("window")
    w.add_argument("prefix")
    w.add_argument("--err", required=True)
    w.add_argument("--bench", required=True, type=int)
    w.add_argument("--warmup", required=True, type=float)
    w.add_argument("--duration", required=True, type=float)
    w.add_argument("--metrics", action="append", default=[], help="NAME=URL of a core's /metrics")
    w.add_argument("--root", action="append", default=[], help="NAME=PID")
    w.add_argument("--database")
    d = sub.add_parser("diff")
    d.add_argument("before")
    d.add_argument("after")
    d.add_argument("--rate", type=float, required=True, help="holds (or calls) per second in the window")
    d.add_argument("--json", action="store_true")
    args = parser.parse_args()
    roots = []
    for item in getattr(args, "root", []):
        name, _, pid = item.partition("=")
        if pid.isdigit():
            roots.append((name, pid))
    if args.command == "window":
        return window(args, roots)
    if args.command == "snap":
        with open(args.out, "w") as f:
            json.dump(snapshot(roots, args.database), f)
        return 0
    with open(args.before) as f:
        before = json.load(f)
    with open(args.after) as f:
        after = json.load(f)
    result = diff(before, after, args.rate)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'process group':<24} {'CPU s':>8} {'µs/hold':>9}")
    for row in result["groups"]:
        print(f"{row['group']:<24} {row['cpuSeconds']:>8.2f} {row['usPerHold'] or 0:>9.1f}")
    print(f"machine: {result['machineBusyCpuSeconds']} of {result['machineCpuSeconds']} CPU s busy; "
          f"{result['holds']} in {result['windowSeconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
