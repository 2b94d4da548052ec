#!/usr/bin/env python3
"""The summary of one bench/cluster.sh run (issue 18): per round and side, AMQP and REST holds/s with p50/p99,
errors and the verifier's verdict, the echo floors, the CPU per hold by process kind, and item 4's account
(hold batches per core, deferred holds, the availability read path) of the cluster with 2 cores against 1.
Text on stdout, JSON in OUT/summary.json. Exit 1 when a verification failed or a step has no report.
Standard library only.

    bench/cluster_report.py OUT_DIRECTORY
"""

import json
import os
import re
import sys

out = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import cluster_cpu  # noqa: E402

SIDES = ["single", "cluster", "cluster1"]
SIDE_LABEL = {"single": "single nodes, 1 core + 1 facade", "cluster": "cluster, 2 cores + 2 facades",
              "cluster1": "cluster, 1 core"}
# Process kinds, in the table's order, and which groups of bench/cluster_cpu.py make them.
KINDS = [
    ("core", lambda g: g.startswith("core")),
    ("facade", lambda g: g.startswith("facade")),
    ("bench", lambda g: g == "bench"),
    ("RabbitMQ (all nodes)", lambda g: g == "broker" or g.startswith("rabbit")),
    ("PostgreSQL primary: the run's backends", lambda g: g in ("pg-backends", "pgprimary-backends")),
    ("PostgreSQL primary: WAL writer + walsender", lambda g: g in ("pg-wal", "pg-repl", "pgprimary-wal",
                                                                   "pgprimary-repl")),
    ("PostgreSQL standby (all)", lambda g: g.startswith("pgstandby")),
    ("Redis (master + replica)", lambda g: g == "redis" or g.startswith("redis-")),
    ("Sentinels", lambda g: g.startswith("sentinel")),
    ("Patroni + etcd", lambda g: g.startswith("patroni") or g.startswith("etcd")),
]
# Parts of the kinds above, shown apart (not added again): each RabbitMQ node (the quorum queues' leader is
# on the node that declared them, queues.txt), the standby's WAL replay and receiver.
DETAIL_KINDS = [
    ("  of which RabbitMQ node 1", lambda g: g == "rabbit1"),
    ("  of which RabbitMQ node 2", lambda g: g == "rabbit2"),
    ("  of which RabbitMQ node 3", lambda g: g == "rabbit3"),
    ("  of which standby startup + walreceiver", lambda g: g == "pgstandby-repl"),
]
# Not counted as ours: on the shared instance, other people's backends and the instance's own work.
OTHER_KINDS = [
    ("PostgreSQL primary: aux + other databases", lambda g: g in ("pg-aux", "pg-other", "pgprimary-aux",
                                                                 "pgprimary-other")),
]


def load(path):
    try:
        with open(path) as f:
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
    return "passed" if not v["violations"] else f"{len(v['violations'])} VIOLATIONS"


def load_start(report):
    if not report:
        return None
    found = re.search(r"start: load average ([0-9.]+)", report.get("load", ""))
    return float(found.group(1)) if found else None


def fmt(value, spec=",.1f"):
    return "-" if value is None else format(value, spec)


def cpu(directory, step, rate):
    before = load(os.path.join(directory, f"{step}.cpu-before.json"))
    after = load(os.path.join(directory, f"{step}.cpu-after.json"))
    if not before or not after or not rate:
        return None
    result = cluster_cpu.diff(before, after, rate)
    seconds = {row["group"]: row["cpuSeconds"] for row in result["groups"]}
    kinds = {}
    for name, member in KINDS + DETAIL_KINDS + OTHER_KINDS:
        total = sum(s for g, s in seconds.items() if member(g))
        kinds[name] = round(total / result["holds"] * 1e6, 1) if result["holds"] else None
    ours = sum(s for g, s in seconds.items() if any(member(g) for _, member in KINDS))
    kinds["all of ours"] = round(ours / result["holds"] * 1e6, 1) if result["holds"] else None
    return {"usPerHold": kinds, "window": result}


def counters(path):
    """{core: {metric line without value: value}}, {function: (calls, total ms, self ms)}"""
    metrics, functions = {}, {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return metrics, functions
    for line in lines:
        if line.startswith("db function "):
            parts = line.split()
            if len(parts) == 6:
                functions[parts[2]] = (int(parts[3]), float(parts[4]), float(parts[5]))
            continue
        parts = line.split(" ")
        if len(parts) < 3 or parts[1].startswith("#"):
            continue
        try:
            metrics.setdefault(parts[0], {})[parts[1]] = float(parts[-1])
        except ValueError:
            pass
    return metrics, functions


def metric_sum(values, name, label=None):
    total = 0.0
    for key, value in values.items():
        base = key.split("{", 1)[0]
        if base == name and (label is None or label in key):
            total += value
    return total


def account(directory, step):
    """Item 4: per core, what the step did to the counters; and the database's function statistics."""
    before, fbefore = counters(os.path.join(directory, f"{step}.counters-before.txt"))
    after, fafter = counters(os.path.join(directory, f"{step}.counters-after.txt"))
    per_core = {}
    for core in sorted(after):
        a, b = after[core], before.get(core, {})

        def delta(name, label=None):
            return metric_sum(a, name, label) - metric_sum(b, name, label)

        batches = delta("inventory_hold_batches_total")
        requests = delta("inventory_hold_batch_requests_total")
        reads = delta("inventory_rpc_duration_seconds_count", 'operation="availability.request"')
        read_seconds = delta("inventory_rpc_duration_seconds_sum", 'operation="availability.request"')
        holds = delta("inventory_rpc_duration_seconds_count", 'operation="hold.request"')
        hold_seconds = delta("inventory_rpc_duration_seconds_sum", 'operation="hold.request"')
        per_core[core] = {
            "batches": int(batches),
            "batchRequests": int(requests),
            "meanBatch": round(requests / batches, 2) if batches else None,
            "deferred": int(delta("inventory_holds_deferred_total")),
            "redisFallbacks": int(delta("inventory_redis_fallbacks_total")),
            "holdRequests": int(holds),
            "holdMeanMs": round(hold_seconds / holds * 1000, 2) if holds else None,
            "availabilityReads": int(reads),
            "availabilityMeanMs": round(read_seconds / reads * 1000, 2) if reads else None,
        }
    functions = {}
    for name in ("inventory_availability_since", "inventory_hold_batch"):
        if name in fafter:
            calls = fafter[name][0] - fbefore.get(name, (0, 0.0, 0.0))[0]
            total = fafter[name][1] - fbefore.get(name, (0, 0.0, 0.0))[1]
            functions[name] = {"calls": calls, "meanMs": round(total / calls, 3) if calls else None}
    return {"cores": per_core, "functions": functions}


rounds = sorted(int(d[5:]) for d in os.listdir(out) if d.startswith("round") and d[5:].isdigit())
summary = {"rounds": []}
missing = []
failed = []
for number in rounds:
    entry = {"round": number, "sides": {}}
    for side in SIDES:
        directory = os.path.join(out, f"round{number}", side)
        if not os.path.isdir(directory):
            continue
        steps = {}
        for step in ["echo", "echo-quorum", "amqp", "http", "mix", "hot"]:
            report = load(os.path.join(directory, f"{step}.json"))
            if report is None:
                if os.path.exists(os.path.join(directory, f"{step}.err")):
                    missing.append(f"round {number} {side} {step}")
                continue
            operation = "echo" if step.startswith("echo") else "hold"
            row = op(report, operation)
            rate = row["throughputPerSecond"] if row else None
            info = {
                "rate": rate,
                "p50Ms": row["p50Ms"] if row else None,
                "p99Ms": row["p99Ms"] if row else None,
                "errors": errors(report),
                "verifier": verdict(report) if operation == "hold" else "-",
                "loadAtStart": load_start(report),
                "cpu": cpu(directory, step, rate),
                "account": account(directory, step) if side != "single" or step in ("amqp", "http") else None,
            }
            if step == "mix":
                availability = op(report, "availability")
                info["availability"] = ({"rate": availability["throughputPerSecond"], "p50Ms": availability["p50Ms"],
                                         "p99Ms": availability["p99Ms"]} if availability else None)
            if "VIOLATIONS" in info["verifier"] or info["verifier"] == "no report":
                failed.append(f"round {number} {side} {step}: {info['verifier']}")
            steps[step] = info
        entry["sides"][side] = steps
    summary["rounds"].append(entry)

lines = []
try:
    lines += [line.rstrip() for line in open(os.path.join(out, "run.txt"))]
except OSError:
    pass
lines.append("")
header = (f"{'round / side':<40} {'load':>5} {'AMQP holds/s':>12} {'p50/p99 ms':>15} {'REST holds/s':>12} "
          f"{'p50/p99 ms':>15} {'errors':>7} {'echo/s':>8} {'echo quorum/s':>13}  verifier")
lines += [header, "-" * len(header)]
for entry in summary["rounds"]:
    for side, steps in entry["sides"].items():
        a, h = steps.get("amqp", {}), steps.get("http", {})
        e, q = steps.get("echo", {}), steps.get("echo-quorum", {})
        errs = [s.get("errors") for s in (a, h) if s.get("errors") is not None]
        verdicts = sorted({s["verifier"] for s in steps.values() if s.get("verifier") not in (None, "-")})
        lines.append(
            f"{'%d %s' % (entry['round'], SIDE_LABEL[side]):<40} {fmt(a.get('loadAtStart') or e.get('loadAtStart'), '.1f'):>5} "
            f"{fmt(a.get('rate')):>12} {fmt(a.get('p50Ms'), '.0f') + '/' + fmt(a.get('p99Ms'), '.0f'):>15} "
            f"{fmt(h.get('rate')):>12} {fmt(h.get('p50Ms'), '.0f') + '/' + fmt(h.get('p99Ms'), '.0f'):>15} "
            f"{fmt(sum(errs) if errs else None, 'd'):>7} {fmt(e.get('rate')):>8} {fmt(q.get('rate')):>13}  "
            f"{', '.join(verdicts)}")

for step, title in [("amqp", "uniform AMQP hold"), ("http", "uniform REST hold"), ("echo", "echo call"),
                    ("echo-quorum", "echo call through a quorum queue")]:
    columns = [(entry["round"], side, steps[step]["cpu"]) for entry in summary["rounds"]
               for side, steps in entry["sides"].items() if step in steps and steps[step]["cpu"]]
    if not columns:
        continue
    lines.append("")
    lines.append(f"CPU µs per {title} by process kind (round/side; window s, holds in it):")
    head = f"  {'kind':<44}" + "".join(f"{'%d %s' % (r, s):>13}" for r, s, _ in columns)
    lines.append(head)
    for kind in [k for k, _ in KINDS] + ["all of ours"] + [k for k, _ in DETAIL_KINDS + OTHER_KINDS]:
        lines.append(f"  {kind:<44}" + "".join(f"{fmt(c['usPerHold'][kind], ',.0f'):>13}" for _, _, c in columns))
    lines.append(f"  {'(window s / holds / machine busy %)':<44}" + "".join(
        f"{'%.1f/%d/%d' % (c['window']['windowSeconds'], c['window']['holds'], 100 * c['window']['machineBusyCpuSeconds'] / max(c['window']['machineCpuSeconds'], 0.01)):>13}"
        for _, _, c in columns))

lines.append("")
lines.append("item 4 (showtime affinity): per core, mean hold batch (requests / batches), deferred holds, availability")
lines.append("reads and their mean service time; the database's inventory_availability_since and inventory_hold_batch")
for entry in summary["rounds"]:
    for side in ("cluster", "cluster1", "single"):
        steps = entry["sides"].get(side, {})
        for step in ("amqp", "http", "mix", "hot"):
            info = steps.get(step)
            if not info or not info.get("account"):
                continue
            acc = info["account"]
            cores = "; ".join(
                f"{core}: batch {fmt(c['meanBatch'], '.2f')} ({c['batchRequests']}/{c['batches']}), deferred {c['deferred']}"
                + (f", reads {c['availabilityReads']} at {fmt(c['availabilityMeanMs'], '.1f')} ms" if c["availabilityReads"] else "")
                for core, c in acc["cores"].items())
            fns = "; ".join(f"{name.replace('inventory_', '')} {f['calls']} calls, {fmt(f['meanMs'], '.2f')} ms"
                            for name, f in acc["functions"].items())
            extra = ""
            if step == "mix" and info.get("availability"):
                extra = f", availability {fmt(info['availability']['rate'])}/s p50 {fmt(info['availability']['p50Ms'], '.0f')} ms"
            lines.append(f"  {entry['round']} {side:<8} {step:<5} holds {fmt(info['rate'])}/s p99 {fmt(info['p99Ms'], '.0f')} ms, "
                         f"errors {fmt(info['errors'], 'd')}{extra}")
            lines.append(f"      {cores}")
            if fns:
                lines.append(f"      db: {fns}")

try:
    failures = [line for line in open(os.path.join(out, "failures.txt")).read().splitlines() if line]
except OSError:
    failures = []
lines.append("")
lines.append(f"steps without a report: {', '.join(missing) or 'none'}; failures: {'; '.join(failures) or 'none'}")
lines.append(f"verifier: {'; '.join(failed) or 'passed in every load step'}")
print("\n".join(lines))
summary["missing"], summary["failures"], summary["failed"] = missing, failures, failed
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
sys.exit(1 if missing or failed else 0)
