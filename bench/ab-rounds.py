#!/usr/bin/env python3
"""bench/ab-rounds.py: two builds of mp-bench side by side, for a before/after on a noisy host.

Usage: python3 bench/ab-rounds.py ROUNDS OLD_MP_BENCH NEW_MP_BENCH CASE...

Every round runs each CASE with both builds, one right after the other, the order swapped
every round, so that a slow patch of the machine falls on both. Prints a markdown table per
reported case: each build's median, and the median of the per-round ratios new / old."""
import re
import statistics
import subprocess
import sys

rounds = int(sys.argv[1])
a, b = sys.argv[2], sys.argv[3]
cases = sys.argv[4:]
vals = {}
units = {}
for r in range(rounds):
    order = (a, b) if r % 2 == 0 else (b, a)
    for c in cases:
        for build in order:
            out = subprocess.run([build, c], capture_output=True, text=True, timeout=600).stdout
            for name, v, unit in re.findall(r"case=(\S+).* value=(\S+) unit=(\S+)", out):
                units[name] = unit
                vals.setdefault(name, {a: [], b: []})[build].append(float(v))
    print(f"round {r + 1} done", file=sys.stderr, flush=True)

print("| case | unit | old (median) | new (median) | new / old (median of rounds) |")
print("| --- | --- | ---: | ---: | ---: |")
for c in vals:
    va, vb = vals[c][a], vals[c][b]
    ratio = statistics.median(y / x for x, y in zip(va, vb))
    print(f"| {c} | {units[c]} | {statistics.median(va):.4g} | {statistics.median(vb):.4g} | {ratio:.3f} |")
