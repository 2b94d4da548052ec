#!/usr/bin/env python3
"""Several bench/issue16.sh runs side by side as a Markdown table (BENCHMARKS.md, "Issue 16: before and
after"): one column per run, the issue's rows, ratios, targets, memory, CPU per hold, verifier. Standard
library only.

    bench/issue16_table.py .build-release/issue16/20261207T1340Z ... [--label "before 1" ...]
"""

import argparse
import json
import os


def load(directory):
    with open(os.path.join(directory, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(directory, "run.txt")) as f:
        run = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in f if ":" in line}
    return summary, run


def num(value, spec=",.0f"):
    return "–" if value is None else format(value, spec)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--label", action="append", default=[])
    args = parser.parse_args()
    runs = [load(d) for d in args.runs]
    labels = args.label + [f"run {i + 1}" for i in range(len(args.label), len(runs))]

    def cell(summary, measure, kind):
        row = next((r for r in summary["rows"] if r["measure"] == measure), None)
        if row is None:
            return "–"
        rate, p50, p99 = row["ratePerSecond"], row["p50Ms"], row["p99Ms"]
        errors = row["note"].split(";")[0].replace("errors ", "") if row["note"].startswith("errors") else None
        if kind == "rate":
            return num(rate)
        if kind == "rate-p50-p99":
            return f"{num(rate)} ({num(p50, '.1f')} / {num(p99, '.1f')})"
        if kind == "rate-p99-errors":
            return f"{num(rate)} (p99 {num(p99, '.0f')}, {errors} err)"
        if kind == "p50":
            return f"{num(p50, '.2f')} ms"
        if kind == "mean":
            return num(rate)
        return "?"

    header = "| measure | " + " | ".join(labels) + " |"
    lines = [header, "|---|" + "---:|" * len(runs)]
    start = [run.get("uptime", "").split("load average:")[-1].strip() for _, run in runs]
    times = [run.get("start", "")[11:16] for _, run in runs]
    lines.append("| start (UTC), load average 1/5/15 min | "
                 + " | ".join(f"{t}, {s}" for t, s in zip(times, start)) + " |")
    spec = [
        ("pgbench, the core's `hold.sql`, 8 clients (tx/s)", "pgbench, the core's hold.sql, 8 clients", "rate"),
        ("pgbench, minimal durable hold, 8 clients (tx/s)", "pgbench, minimal durable hold, 8 clients", "rate"),
        ("null AMQP RPC echo, 64 in flight (/s, p50 / p99 ms)", "null AMQP RPC echo, 64 in flight", "rate-p50-p99"),
        ("core, uniform holds, 64 in flight (/s, p50 / p99 ms)", "core, uniform holds, 64 in flight", "rate-p50-p99"),
        ("REST, uniform holds, 64 in flight (/s, p50 / p99 ms)", "REST, uniform holds, 64 in flight", "rate-p50-p99"),
        ("hot rush, 1,000 in flight on 10 seats (holds/s, p99 ms, errors)", "hot rush, 1,000 in flight on 10 seats",
         "rate-p99-errors"),
        ("availability of 2,000 seats, 8 in flight, AMQP (p50)", "availability of 2,000 seats, 8 in flight, AMQP", "p50"),
        ("availability of 2,000 seats, 8 in flight, REST (p50)", "availability of 2,000 seats, 8 in flight, REST", "p50"),
        ("REST hot rush, 1,000 in flight (holds/s, p99 ms, errors)", "REST hot rush, 1,000 in flight on 10 seats",
         "rate-p99-errors"),
    ]
    for label, measure, kind in spec:
        lines.append(f"| {label} | " + " | ".join(cell(s, measure, kind) for s, _ in runs) + " |")
    for key in runs[0][0]["ratios"]:
        lines.append(f"| ratio {key} | " + " | ".join(num(s["ratios"].get(key), ".2f") for s, _ in runs) + " |")

    def memory(summary, key):
        m = summary["memory"].get(key)
        if not m:
            return "–"
        return f"{max(m.get('vmHWMKB', 0), m.get('vmRSSPeakSampledKB', 0)) / 1024:.0f} MB"

    lines.append("| core memory at 1,000 in flight (VmHWM) | " + " | ".join(memory(s, "coreAMQPRush") for s, _ in runs) + " |")
    lines.append("| facade memory at 1,000 in flight (VmHWM) | "
                 + " | ".join(memory(s, "facadeRESTRush") for s, _ in runs) + " |")
    groups = ["core", "broker", "pg-core", "pg-wal", "redis", "bench"]
    for group in groups:
        values = []
        for s, _ in runs:
            c = s["cpuPerHold"].get("core-uniform")
            g = next((g for g in c["groups"] if g["group"] == group), None) if c else None
            values.append(num(g["usPerHold"] if g else None, ",.0f"))
        lines.append(f"| CPU µs per uniform AMQP hold: {group} | " + " | ".join(values) + " |")
    lines.append("| CPU µs per uniform AMQP hold: all of ours | "
                 + " | ".join(num(s["cpuPerHold"].get("core-uniform", {}).get("oursUsPerHold"), ",.0f") for s, _ in runs)
                 + " |")
    lines.append("| targets met | " + " | ".join(
        f"{sum(t['verdict'] == 'met' for t in s['targets'])} of {len(s['targets'])}" for s, _ in runs) + " |")
    def verifier(summary):
        verdicts = summary["verifier"]
        text = f"passed ({len(verdicts)} steps)" if verdicts and all(v == "OK" for v in verdicts.values()) else "FAILED"
        if summary["failures"]:
            text += f"; {len(summary['failures'])} steps did not finish"
        return text

    lines.append("| verifier | " + " | ".join(verifier(s) for s, _ in runs) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
