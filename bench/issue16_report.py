#!/usr/bin/env python3
"""The summary of one bench/issue16.sh run: issue 16's table, every ratio, every target (met or missed),
memory at 1,000 in flight, CPU per hold by process group, the verifier's verdict per step.
Text on stdout, JSON in OUT/summary.json. Exit 1 when a step's verification failed or a step is missing
its report. Standard library only.

    bench/issue16_report.py OUT_DIRECTORY
"""

import json
import os
import subprocess
import sys

out = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))


def load(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def op(report, name):
    if not report:
        return None
    return next((r for r in report["operations"] if r["operation"] == name), None)


def errors(report):
    if not report:
        return None
    return (sum(r["error"] + r["timeout"] for r in report["operations"])
            + report.get("unanswered", 0) + report.get("transportErrors", 0))


def verdict(report):
    if report is None:
        return "no report"
    v = report.get("verification")
    if v is None:
        return "not verified"
    return "OK" if not v["violations"] else f"{len(v['violations'])} VIOLATIONS"


def fmt(value, spec=",.1f"):
    return "-" if value is None else format(value, spec)


steps = {name: load(name) for name in [
    "echo", "core-uniform", "core-hot", "core-availability", "http-uniform", "http-availability", "http-hot",
    "profile-uniform"]}
pg_hold, pg_min = load("pgbench-hold"), load("pgbench-minimal")
sweep = load("sweep")

rows = []  # (measure, rate, p50, p99, note)
if pg_hold:
    rows.append(("pgbench, the core's hold.sql, 8 clients", pg_hold["opsPerSecond"], None, None,
                 f"mean {pg_hold['meanMs']} ms"))
if pg_min:
    rows.append(("pgbench, minimal durable hold, 8 clients", pg_min["opsPerSecond"], None, None,
                 f"mean {pg_min['meanMs']} ms"))
labels = {
    "echo": ("null AMQP RPC echo, 64 in flight", "echo"),
    "core-uniform": ("core, uniform holds, 64 in flight", "hold"),
    "http-uniform": ("REST, uniform holds, 64 in flight", "hold"),
    "core-hot": ("hot rush, 1,000 in flight on 10 seats", "hold"),
    "core-availability": ("availability of 2,000 seats, 8 in flight, AMQP", "availability"),
    "http-availability": ("availability of 2,000 seats, 8 in flight, REST", "availability"),
    "http-hot": ("REST hot rush, 1,000 in flight on 10 seats", "hold"),
    "profile-uniform": ("(profiled) core, uniform holds, 64 in flight", "hold"),
}
for name, (label, operation) in labels.items():
    report = steps[name]
    row = op(report, operation)
    if row is None:
        continue
    note = f"errors {errors(report)}"
    if name != "echo":
        note += f"; won {row['won']} conflict {row['conflict']}; verify {verdict(report)}"
    rows.append((label, row["throughputPerSecond"], row["p50Ms"], row["p99Ms"], note))
def seconds(value):
    return "not within the wait" if value is None else f"{value:.1f} s"


if sweep:
    rows.append((f"sweep of {sweep['holds']:,} expiring holds", None, None, None,
                 f"all swept: {seconds(sweep.get('expiryToAllSweptSeconds'))}, all events: "
                 f"{seconds(sweep.get('expiryToAllEventsSeconds'))} after expiresAt; sweep work (first to last "
                 f"marked) {seconds(sweep.get('sweepDurationSeconds'))}; {sweep.get('expiredEventsReceived')} "
                 f"hold.expired received"))


def rate(name, operation):
    row = op(steps[name], operation)
    return row["throughputPerSecond"] if row else None


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


amqp_rate, rest_rate = rate("core-uniform", "hold"), rate("http-uniform", "hold")
rush_rate, echo_rate = rate("core-hot", "hold"), rate("echo", "echo")
minimal = pg_min["opsPerSecond"] if pg_min else None
holdsql = pg_hold["opsPerSecond"] if pg_hold else None
ratios = {
    "AMQP hold / minimal pgbench (target >= 1.0)": ratio(amqp_rate, minimal),
    "REST hold / AMQP hold (target >= 0.8)": ratio(rest_rate, amqp_rate),
    "rush hold / echo (target >= 0.4)": ratio(rush_rate, echo_rate),
    "AMQP hold / pgbench hold.sql": ratio(amqp_rate, holdsql),
    "REST hold / minimal pgbench": ratio(rest_rate, minimal),
    "pgbench hold.sql / minimal pgbench": ratio(holdsql, minimal),
}


def mem(name, suffix="mem"):
    try:
        with open(os.path.join(out, f"{name}.{suffix}")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


core_mem, facade_mem, core_mem_rest = mem("core-hot"), mem("http-hot"), mem("http-hot", "core-mem")


def mb(kb):
    return None if kb is None else round(kb / 1024, 1)


core_peak = mb(core_mem and max(core_mem["vmHWMKB"], core_mem["vmRSSPeakSampledKB"]))
facade_peak = mb(facade_mem and max(facade_mem["vmHWMKB"], facade_mem["vmRSSPeakSampledKB"]))


def met(ok):
    return "-" if ok is None else ("met" if ok else "MISSED")


def p(name, operation, key):
    row = op(steps[name], operation)
    return row[key] if row else None


amqp_p99 = p("core-uniform", "hold", "p99Ms")
rush_p99 = p("core-hot", "hold", "p99Ms")
avail_amqp, avail_rest = p("core-availability", "availability", "p50Ms"), p("http-availability", "availability", "p50Ms")
r = ratios
targets = [
    ("AMQP holds >= 1.0x minimal pgbench", fmt(r["AMQP hold / minimal pgbench (target >= 1.0)"], ".2f") + "x",
     met(None if r["AMQP hold / minimal pgbench (target >= 1.0)"] is None
         else r["AMQP hold / minimal pgbench (target >= 1.0)"] >= 1.0)),
    ("AMQP holds p99 < 25 ms", fmt(amqp_p99) + " ms", met(None if amqp_p99 is None else amqp_p99 < 25)),
    ("REST holds >= 0.8x AMQP", fmt(r["REST hold / AMQP hold (target >= 0.8)"], ".2f") + "x",
     met(None if r["REST hold / AMQP hold (target >= 0.8)"] is None
         else r["REST hold / AMQP hold (target >= 0.8)"] >= 0.8)),
    ("hot rush >= 0.4x echo", fmt(r["rush hold / echo (target >= 0.4)"], ".2f") + "x",
     met(None if r["rush hold / echo (target >= 0.4)"] is None else r["rush hold / echo (target >= 0.4)"] >= 0.4)),
    ("hot rush p99 < 150 ms", fmt(rush_p99) + " ms", met(None if rush_p99 is None else rush_p99 < 150)),
    ("hot rush no errors", fmt(errors(steps["core-hot"]), "d"),
     met(None if steps["core-hot"] is None else errors(steps["core-hot"]) == 0)),
    ("availability p50 < 2 ms (AMQP)", fmt(avail_amqp, ".2f") + " ms", met(None if avail_amqp is None else avail_amqp < 2)),
    ("availability p50 < 3 ms (REST)", fmt(avail_rest, ".2f") + " ms", met(None if avail_rest is None else avail_rest < 3)),
    ("core memory < 100 MB at 1,000 in flight", fmt(core_peak) + " MB", met(None if core_peak is None else core_peak < 100)),
    ("facade memory < 64 MB at 1,000 in flight", fmt(facade_peak) + " MB",
     met(None if facade_peak is None else facade_peak < 64)),
]
if sweep:
    swept, events = sweep.get("expiryToAllSweptSeconds"), sweep.get("expiryToAllEventsSeconds")
    if swept is not None and events is not None:
        targets.append(("100,000 expiring: all free and all events within 5 s", fmt(max(swept, events), ".1f") + " s",
                        met(max(swept, events) <= 5)))
    else:  # not all swept or not all events within the bench's wait (150 s)
        targets.append(("100,000 expiring: all free and all events within 5 s", "> wait", met(False)))

lines = []
with open(os.path.join(out, "run.txt")) as f:
    lines += [line.rstrip() for line in f]
lines.append("")
header = f"{'measure':<50} {'rate/s':>9} {'p50 ms':>8} {'p99 ms':>8}  note"
lines += [header, "-" * len(header)]
for label, value, p50, p99, note in rows:
    lines.append(f"{label:<50} {fmt(value):>9} {fmt(p50, '.2f'):>8} {fmt(p99, '.2f'):>8}  {note}")
lines.append("")
for key, value in ratios.items():
    lines.append(f"ratio {key}: {fmt(value, '.3f')}")
lines.append("")
lines.append("memory at 1,000 in flight (VmHWM reset before the step; VmRSS sampled every 0.2 s):")
for label, m in [("core, AMQP hot rush", core_mem), ("facade, REST hot rush", facade_mem)]:
    if m:
        lines.append(f"  {label}: VmHWM {mb(m['vmHWMKB'])} MB, VmRSS peak sampled {mb(m['vmRSSPeakSampledKB'])} MB, "
                     f"VmRSS after {mb(m['vmRSSAfterKB'])} MB")
if core_mem_rest:
    lines.append(f"  core, REST hot rush: VmHWM {mb(core_mem_rest['vmHWMKB'])} MB")
lines.append("")
lines.append("targets:")
for label, value, verdict_text in targets:
    lines.append(f"  {label:<52} {value:>12}  {verdict_text}")
cpu = {}
for name in ["core-uniform", "http-uniform", "profile-uniform"]:
    before, after = os.path.join(out, f"{name}.cpu-before.json"), os.path.join(out, f"{name}.cpu-after.json")
    row = op(steps[name], "hold")
    if row and os.path.exists(before) and os.path.exists(after):
        # The counters' window starts after the warm-up and lasts about the measured seconds (a little
        # longer: snapshots, perf's start): holds in it = the measured rate x its own length.
        result = subprocess.run([sys.executable, os.path.join(here, "proc_cpu.py"), "diff", before, after,
                                 "--rate", str(row["throughputPerSecond"]), "--json"], capture_output=True, text=True)
        if result.returncode == 0:
            cpu[name] = json.loads(result.stdout)
for name, c in cpu.items():
    lines.append("")
    lines.append(f"CPU per hold, {name} ({c['ratePerSecond']} holds/s x {c['windowSeconds']} s window; load {' '.join(c['loadBefore'])}"
                 f" -> {' '.join(c['loadAfter'])}):")
    for g in c["groups"]:
        lines.append(f"  {g['group']:<20} {g['cpuSeconds']:>7.2f} CPU s {fmt(g['usPerHold']):>9} µs/hold")
    lines.append(f"  {'ours':<20} {c['oursCpuSeconds']:>7.2f} CPU s {fmt(c['oursUsPerHold']):>9} µs/hold "
                 f"(machine busy {c['machineBusyCpuSeconds']} of {c['machineCpuSeconds']} CPU s; "
                 f"{c['othersCpuSeconds']} s others')")
profile = os.path.join(out, "profile")


def function_stats(path):
    stats = {}
    try:
        for line in open(path):
            name, calls, total, self_time = line.rstrip("\n").split("\t")
            stats[name] = (int(calls), float(total), float(self_time))
    except (OSError, ValueError):
        pass
    return stats


functions = []
if os.path.isdir(profile) and "profile-uniform" in cpu:
    before = function_stats(os.path.join(profile, "functions-before.tsv"))
    after = function_stats(os.path.join(profile, "functions-after.tsv"))
    # Per hold = per call of inventory_hold (one per hold request): backends flush their function
    # statistics only now and then (at most once a second, when between transactions), so the snapshots
    # hold a fraction of the window's calls; their ratios and times per call are what counts.
    entry = after.get("inventory_hold", (0, 0.0, 0.0))[0] - before.get("inventory_hold", (0, 0.0, 0.0))[0]
    holds = entry
    for name, (calls, total, self_time) in after.items():
        c0, t0, s0 = before.get(name, (0, 0.0, 0.0))
        if calls - c0 > 0 and holds:
            functions.append({"function": name, "callsPerHold": round((calls - c0) / holds, 2),
                              "selfUsPerHold": round((self_time - s0) * 1000 / holds, 1),
                              "totalUsPerHold": round((total - t0) * 1000 / holds, 1)})
    functions.sort(key=lambda f: -f["selfUsPerHold"])
if functions:
    lines.append("")
    lines.append(f"PostgreSQL functions during the profiled run (pg_stat_user_functions, per call of inventory_hold, "
                 f"{holds} calls flushed in the window; wall time inside each, lock waits included, the commit not):")
    lines.append(f"  {'function':<40} {'calls/hold':>10} {'self µs/hold':>13} {'total µs/hold':>14}")
    for f in functions[:15]:
        lines.append(f"  {f['function']:<40} {f['callsPerHold']:>10.2f} {f['selfUsPerHold']:>13,.1f} "
                     f"{f['totalUsPerHold']:>14,.1f}")
if os.path.isdir(profile):
    lines.append("")
    lines.append(f"profile: {profile}/ (by-process.txt, core-dso.txt, core-symbols.txt, core-inclusive.txt, "
                 "postgres-symbols.txt, postgres-inclusive.txt, perf.data)")
verdicts = {name: verdict(report) for name, report in steps.items() if name != "echo" and report is not None}
lines.append("")
lines.append("verifier: " + ", ".join(f"{k} {v}" for k, v in verdicts.items()))
failures = []
try:
    failures = [line.strip() for line in open(os.path.join(out, "failures.txt")) if line.strip()]
except OSError:
    pass
if failures:
    lines.append("failed steps: " + "; ".join(failures))
print("\n".join(lines))
json.dump({"rows": [dict(zip(["measure", "ratePerSecond", "p50Ms", "p99Ms", "note"], row)) for row in rows],
           "ratios": ratios, "targets": [dict(zip(["target", "measured", "verdict"], t)) for t in targets],
           "memory": {"coreAMQPRush": core_mem, "facadeRESTRush": facade_mem, "coreRESTRush": core_mem_rest},
           "cpuPerHold": cpu, "databaseFunctions": functions, "verifier": verdicts, "failures": failures},
          open(os.path.join(out, "summary.json"), "w"), indent=2)
bad = [k for k, v in verdicts.items() if v not in ("OK",)]
sys.exit(1 if bad else 0)
