#!/usr/bin/env python3
"""Writes docs/results/rocksdb.md (and rocksdb.png, with gnuplot) from the rocksdb.csv that
scripts/rocksdb-experiment.sh wrote: rocksdb-server's GET latency under a GET/SCAN mix with its
tasks scheduled FIFO or Shinjuku by the runtime's own queue (local) or an agent thread (on-host),
and Shinjuku in ipu-cp (offloaded).

Per policy and offered rate: the median over runs (and the best run) of the GET p50/p99 and
the SCAN p99. The measure of the goal: GET p99 under FIFO over GET p99 under Shinjuku, within a
mode, per rate, as the median of the per-run ratios and as the ratio of the best runs.
Usage: rocksdb-report.py RESULTS_DIR
"""

import csv
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

POLICIES = ["local-fifo", "local-shinjuku", "on-host-fifo", "on-host-shinjuku", "offloaded-shinjuku"]
DESCRIBE = {
    "local-fifo": "the runtime's own shared queue, FIFO: a task runs until it yields or ends",
    "local-shinjuku": "the runtime's own shared queue with a 30 µs slice: a task past its slice"
    " yields at its next preempt point and goes to the tail (Shinjuku's policy, run locally)",
    "on-host-fifo": "ipu-cp's FIFO policy in an agent thread of the server (link in memory)",
    "on-host-shinjuku": "ipu-cp's Shinjuku policy (30 µs) in an agent thread of the server",
    "offloaded-shinjuku": "Shinjuku in `ipu-cp`, a separate process (memfd link)",
}
# (FIFO setup, preemptive setup) pairs whose GET p99 ratio the goal is about.
PAIRS = [
    ("local-fifo", "local-shinjuku"),
    ("on-host-fifo", "on-host-shinjuku"),
    ("on-host-fifo", "offloaded-shinjuku"),
]


CORES_SPINNING = [
    "- On this 2-vCPU VM the load generator, the worker and an agent thread (on-host) or",
    "  `ipu-cp` (offloaded) are three busy threads on two cores. Under an agent, every task",
    "  switch waits for the agent's decision, and the agent gets a core only when the",
    "  kernel's scheduler gives it one (milliseconds): FIFO suffers that per request,",
    "  Shinjuku per 30 µs slice, so here preemption through an agent makes GETs slower, by",
    "  orders of magnitude. The policy itself is measured by the local pair (the runtime's",
    "  own queue, no agent). With the client sleeping when it has nothing to do",
    "  (`IDLE_SLEEP_US=20`, [rocksdb-sleeping-client/rocksdb.md](rocksdb-sleeping-client/rocksdb.md))",
    "  the agents get a core and their GET p99s fall from 45 ms–5 s to 2–6 ms (five runs",
    "  each, 2026-11-23).",
]
CORES_SLEEPING = [
    "- The client sleeps after a poll that found nothing (`loadgen --idle-sleep-us`), so on",
    "  this 2-vCPU VM the worker and the agent (a thread of the server, or `ipu-cp`) have",
    "  the cores most of the time. The sleep adds up to itself plus a wakeup (tens of µs)",
    "  to every latency, in every setup alike; the GET p50s show it. It also leaves the",
    "  worker undisturbed more often, which shortens FIFO's queues: the local FIFO / Shinjuku",
    "  ratio is lower than with a spinning client (`rocksdb.md`), not because Shinjuku got",
    "  worse. The agents still share two cores with the client and with each other's",
    "  spinning: an agent decides every task switch, and Shinjuku needs one per 30 µs slice.",
]


def main():
    out = Path(sys.argv[1])
    rows = list(csv.DictReader(open(out / "rocksdb.csv")))
    points = defaultdict(dict)  # (policy, rate) -> run -> row
    for row in rows:
        points[(row["policy"], float(row["offered_per_s"]))][row["run"]] = row
    policies = [p for p in POLICIES if any(k[0] == p for k in points)]
    rates = sorted({r for _, r in points})

    def col(policy, rate, key):
        return [float(r[key]) for r in points.get((policy, rate), {}).values()]

    env = out / "rocksdb-env.txt"
    found = re.search(r"client idle sleep (\d+) us", env.read_text()) if env.exists() else None
    idle_us = int(found.group(1)) if found else 0
    command = "./scripts/rocksdb-experiment.sh"
    if idle_us:
        command = f"IDLE_SLEEP_US={idle_us} OUT={out} {command}"
    lines = [
        "# RocksDB under a GET/SCAN mix: FIFO vs Shinjuku"
        + (f", the client sleeping {idle_us} µs when idle" if idle_us else ""),
        "",
        f"Produced by `{command}` (no root), which runs `loadgen` against",
        "`rocksdb-server` on a shared-memory wire and then `scripts/rocksdb-report.py`. Raw",
        "data: `rocksdb.csv`.",
        "",
        "- Load: open-loop Poisson, 128 connections, 20 000 keys of 100 bytes; a share of the",
        "  requests are `scan <key> N` (share and N in the conditions below), the rest GETs.",
        "  Latency from each request's planned send time.",
        "- Server: one worker; a scan runs in chunks of 16 items with a preempt point between",
        "  them. Policies, interleaved point by point:",
        "",
    ]
    lines += [f"  - `{p}`: {DESCRIBE.get(p, p)}" for p in policies] + [""]
    lines += [
        "| offered/s | policy | achieved/s | GET p50 µs | GET p99 µs (best run) | SCAN p99 µs |",
        "|---|---|---|---|---|---|",
    ]
    for rate in rates:
        for p in policies:
            if (p, rate) not in points:
                continue
            p99 = col(p, rate, "p99_us")
            lines.append(
                f"| {rate:.0f} | {p} | {statistics.median(col(p, rate, 'achieved_per_s')):.0f} "
                f"| {statistics.median(col(p, rate, 'p50_us')):.0f} "
                f"| {statistics.median(p99):.0f} ({min(p99):.0f}) "
                f"| {statistics.median(col(p, rate, 'scan_p99_us')):.0f} |"
            )
    lines += ["", "## FIFO / Shinjuku, GET p99 (the goal: ≥ 5×)", ""]
    for fifo_name, other in PAIRS:
        for rate in rates:
            fifo, shin = points.get((fifo_name, rate), {}), points.get((other, rate), {})
            pairs = [
                float(fifo[run]["p99_us"]) / max(float(shin[run]["p99_us"]), 1.0)
                for run in fifo
                if run in shin
            ]
            if not pairs:
                continue
            best = min(col(fifo_name, rate, "p99_us")) / max(min(col(other, rate, "p99_us")), 1.0)
            lines.append(
                f"- {fifo_name} / {other}, {rate:.0f}/s: {statistics.median(pairs):.2f}× "
                f"(median of runs), {best:.2f}× (best runs)"
            )
    lines += [
        "",
        "## Caveats",
        "",
    ]
    lines += CORES_SLEEPING if idle_us else CORES_SPINNING
    lines += [
        "- A GET behind a SCAN on the same connection waits for it whatever the policy",
        "  (replies keep their order), and preemption stretches a scan: with 32 connections",
        "  that alone put 1–2 % of GETs behind a scan, at the p99. 128 connections make it rare.",
        "- `late` (requests the client sent over 1 ms behind plan) marks the points where this",
        "  shared VM took the client's CPU away; such stalls reach the p99 of an 8 s point, so",
        "  the median of the per-run ratios and the ratio of the best runs are both given.",
        "",
    ]
    if env.exists():
        lines += ["## Conditions", "", "```", env.read_text().strip(), "```", ""]
    (out / "rocksdb.md").write_text("\n".join(lines))
    print("\n".join(lines))
    plot(out, points, policies, rates)


def plot(out, points, policies, rates):
    if not shutil.which("gnuplot"):
        print("(gnuplot missing: no plot; scripts/setup.sh --plots installs it)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for p in policies:
            path = Path(tmp) / f"{p}.dat"
            with open(path, "w") as f:
                for rate in rates:
                    runs = points.get((p, rate), {})
                    if runs:
                        p99 = statistics.median(float(r["p99_us"]) for r in runs.values())
                        f.write(f"{rate} {p99}\n")
            files.append((p, path))
        series = ", ".join(f"'{path}' using 1:2 with linespoints title '{p}'" for p, path in files)
        script = (
            f"set terminal pngcairo size 900,500; set output '{out / 'rocksdb.png'}';"
            "set title 'rocksdb-server GET p99 under a GET/SCAN mix (median of runs)';"
            "set xlabel 'offered load, requests/s'; set ylabel 'GET p99, µs'; set logscale y;"
            f"set grid; plot {series}"
        )
        subprocess.run(["gnuplot", "-e", script], check=True)
    print(f"wrote {out / 'rocksdb.png'}")


if __name__ == "__main__":
    main()
