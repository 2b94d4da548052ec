#!/usr/bin/env python3
"""Adds up the requests schemathesis generated over several runs (their JSON reports) and fails when
there were fewer than asked for or when any run found a failure or an error.

    fuzz_facade_count.py MIN_CASES REPORT.json [REPORT.json ...]
"""
import json
import sys


def main() -> int:
    minimum = int(sys.argv[1])
    generated = failures = errors = 0
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
        cases = report.get("test_cases", {})
        generated += int(cases.get("generated", 0))
        failures += int(cases.get("with_failures", 0))
        errors += int(cases.get("errored", 0))
    print(f"fuzz-facade: {generated} requests generated, {failures} with failures, {errors} errored")
    if failures or errors:
        return 1
    if generated < minimum:
        print(f"fuzz-facade: fewer than the {minimum} requests asked for")
        return 1
    print(f"{generated} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
