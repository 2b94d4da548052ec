#!/usr/bin/env python3
"""CPU time per process group from /proc, for bench/issue16.sh (issue 16 item 7: where each hold's CPU goes).

    proc_cpu.py snap OUT.json --group core=PID --group facade=PID --group bench=PID --database NAME
    proc_cpu.py diff BEFORE.json AFTER.json --rate R         # a table: CPU seconds and µs per hold per group
                                                             # (R: holds/s of the bench's measured window)

A snapshot holds, per process, utime + stime (all threads; /proc/PID/stat fields 14 and 15, in clock ticks)
and its group:
  core, facade, bench   the pids given with --group NAME=PID
  broker                RabbitMQ's Erlang VM (beam.smp) and its helpers (erl_child_setup, inet_gethost)
  redis                 redis-server
  pg-core               PostgreSQL backends connected to --database (the core's database: the process title
                        names it)
  pg-wal                the WAL writer (every commit's fsync is requested there or by the backend itself)
  pg-other-aux          checkpointer, background writer, autovacuum, stats, logical replication launcher
  pg-other-backends     backends of other databases (other engineers' tests on this shared machine)
and the machine's busy and total time from /proc/stat (all CPUs), to show what share was ours.
Only the standard library; no third-party package.
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


def process_ticks(pid):
    stat = read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command may contain spaces and parentheses: fields after the last ')'.
    rest = stat[stat.rindex(b")") + 2 :].split()
    return int(rest[11]) + int(rest[12])  # utime, stime (fields 14, 15)


def classify(pid, database):
    comm = (read(f"/proc/{pid}/comm") or b"").decode(errors="replace").strip()
    cmdline = (read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ").decode(errors="replace").strip()
    if comm in ("beam.smp", "erl_child_setup", "inet_gethost", "epmd") or "rabbitmq" in cmdline and comm != "bash":
        return "broker"
    if comm == "redis-server":
        return "redis"
    if comm == "postgres" or cmdline.startswith("postgres:") or cmdline.startswith("/usr/lib/postgresql"):
        if "walwriter" in cmdline:
            return "pg-wal"
        words = cmdline.split()
        # "postgres: 15/main: USER DATABASE HOST(PORT) STATE"
        if len(words) >= 4 and words[1].endswith(":") and "(" in cmdline:
            return "pg-core" if database and words[3] == database else "pg-other-backends"
        return "pg-other-aux"
    return None


def snapshot(groups, database):
    fixed = {int(pid): name for name, pid in groups}
    processes = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        group = fixed.get(pid) or classify(pid, database)
        if group is None:
            continue
        ticks = process_ticks(pid)
        if ticks is not None:
            processes[str(pid)] = {"group": group, "ticks": ticks}
    cpu = read("/proc/stat").split(b"\n")[0].split()[1:]
    values = [int(v) for v in cpu]
    idle = values[3] + values[4]  # idle + iowait
    return {
        "processes": processes,
        "machineTicks": sum(values[:8]),
        "machineBusyTicks": sum(values[:8]) - idle,
        "cpus": os.cpu_count(),
        "tick": TICK,
        "load": open("/proc/loadavg").read().split()[:3],
    }


def diff(before, after, rate):
    """rate: holds per second in the bench's measured window; the snapshots' window is about as long (its
    exact length is the machine's ticks over the CPU count), so holds in it = rate x its seconds."""
    seconds = {}
    for pid, p in after["processes"].items():
        start = before["processes"].get(pid, {"ticks": 0})["ticks"] if pid in before["processes"] else 0
        # A process that started inside the window counts from zero; one that ended inside it is lost.
        seconds[p["group"]] = seconds.get(p["group"], 0.0) + (p["ticks"] - start) / TICK
    wall_cpu = (after["machineTicks"] - before["machineTicks"]) / TICK
    window = wall_cpu / (after["cpus"] or 1)
    holds = rate * window
    busy = (after["machineBusyTicks"] - before["machineBusyTicks"]) / TICK
    ours_groups = ["core", "facade", "bench", "broker", "redis", "pg-core", "pg-wal"]
    ours = sum(seconds.get(g, 0.0) for g in ours_groups)
    rows = []
    for group in ours_groups + ["pg-other-aux", "pg-other-backends"]:
        if group in seconds:
            s = seconds[group]
            rows.append({"group": group, "cpuSeconds": round(s, 2),
                         "usPerHold": round(s / holds * 1e6, 1) if holds else None})
    return {
        "holds": round(holds),
        "ratePerSecond": rate,
        "windowSeconds": round(window, 2),
        "groups": rows,
        "oursCpuSeconds": round(ours, 2),
        "oursUsPerHold": round(ours / holds * 1e6, 1) if holds else None,
        "machineBusyCpuSeconds": round(busy, 2),
        "machineCpuSeconds": round(wall_cpu, 2),
        "othersCpuSeconds": round(max(0.0, busy - ours), 2),
        "loadBefore": before["load"],
        "loadAfter": after["load"],
    }


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snap")
    snap.add_argument("out")
    snap.add_argument("--group", action="append", default=[], help="NAME=PID")
    snap.add_argument("--database")
    d = sub.add_parser("diff")
    d.add_argument("before")
    d.add_argument("after")
    d.add_argument("--rate", type=float, required=True, help="holds per second in the measured window")
    d.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.command == "snap":
        groups = [tuple(g.split("=", 1)) for g in args.group if g.split("=", 1)[1]]
        json.dump(snapshot(groups, args.database), open(args.out, "w"))
        return
    result = diff(json.load(open(args.before)), json.load(open(args.after)), args.rate)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'process group':<20} {'CPU s':>8} {'µs/hold':>9}")
    for row in result["groups"]:
        print(f"{row['group']:<20} {row['cpuSeconds']:>8.2f} {row['usPerHold'] or 0:>9.1f}")
    print(f"{'ours (first 7)':<20} {result['oursCpuSeconds']:>8.2f} {result['oursUsPerHold'] or 0:>9.1f}")
    print(f"machine: {result['machineBusyCpuSeconds']} of {result['machineCpuSeconds']} CPU s busy, "
          f"{result['othersCpuSeconds']} s not ours; {result['holds']} holds in {result['windowSeconds']} s")


if __name__ == "__main__":
    sys.exit(main())
