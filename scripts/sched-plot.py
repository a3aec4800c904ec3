#!/usr/bin/env python3
"""Draws docs/results/sched.png from the sched.csv that `sched-bench experiment` wrote.

Each point was run several times. The p99 panels show the best (least disturbed) run: this
VM's stalls of several milliseconds set the median run's p99 (see sched.md); the p50 panel shows
the median run. Panels, against offered load: short-request p99 for (a) FIFO vs Shinjuku, (b)
on-host vs offloaded across link delays, (c) the mitigation ablation at 1 us; (d) short-request
p50 for the ablation (where capacity runs out). Needs gnuplot (scripts/setup.sh --plots).
Usage: sched-plot.py RESULTS_DIR
"""

import csv
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path


def label(row):
    delay = f"{int(row['delay_ns']) / 1000:g} us"
    if row["mitigations"] != "all":
        return f"offloaded {delay}, {row['mitigations']}"
    if row["mode"] == "offloaded":
        return f"offloaded {delay}"
    return f"{row['mode']} {row['policy']}"


def medians(rows, keep, column, aggregate=statistics.median):
    """{label: [(load, aggregate of column)]} for rows kept, labels in file order."""
    runs = defaultdict(list)
    order = []
    for row in rows:
        if not keep(row):
            continue
        name = label(row)
        if name not in order:
            order.append(name)
        runs[(name, float(row["load"]))].append(float(row[column]))
    series = {name: [] for name in order}
    for (name, load), values in sorted(runs.items(), key=lambda kv: kv[0][1]):
        series[name].append((load, aggregate(values)))
    return series


def block(series, tmp, name):
    """Writes one gnuplot data block per label; returns (file, labels)."""
    path = Path(tmp) / f"{name}.dat"
    with open(path, "w") as f:
        for label, points in series.items():
            f.write(f'"load" "{label}"\n')
            for load, p99 in points:
                f.write(f"{load} {p99}\n")
            f.write("\n\n")
    return path, list(series)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results")
    with open(out / "sched.csv", newline="") as f:
        rows = list(csv.DictReader(f))

    def shinjuku_all(r):
        return r["policy"] == "shinjuku" and r["mitigations"] == "all"

    def policies(r):
        return r["mode"] != "offloaded" and r["mitigations"] == "all"

    def delays(r):
        return shinjuku_all(r) and r["mode"] in ("on-host", "offloaded")

    def ablation(r):
        return r["mode"] == "offloaded" and r["delay_ns"] == "1000" and (
            r["mitigations"] != "all" or shinjuku_all(r))

    with tempfile.TemporaryDirectory() as tmp:
        panels = [
            ("FIFO vs Shinjuku", "short p99 (us), best run",
             block(medians(rows, policies, "short_p99_us", min), tmp, "policies")),
            ("Shinjuku: on-host vs offloaded (link delay)", "short p99 (us), best run",
             block(medians(rows, delays, "short_p99_us", min), tmp, "delays")),
            ("Ablation (offloaded Shinjuku, 1 us delay)", "short p99 (us), best run",
             block(medians(rows, ablation, "short_p99_us", min), tmp, "ablation99")),
            ("Ablation: where capacity runs out", "short p50 (us), median run",
             block(medians(rows, ablation, "short_p50_us"), tmp, "ablation50")),
        ]
        script = [
            "set terminal pngcairo size 1400,1000 font ',10'",
            f"set output '{out / 'sched.png'}'",
            "set multiplot layout 2,2",
            "set logscale y",
            "set xlabel 'offered load (fraction of one worker)'",
            "set key top left",
            "set grid",
        ]
        for title, metric, (path, labels) in panels:
            script.append(f"set title '{title}'")
            script.append(f"set ylabel '{metric}'")
            script.append(
                f"plot for [i=0:{len(labels) - 1}] '{path}' index i using 1:2 "
                "with linespoints title columnheader(2)"
            )
        script.append("unset multiplot")
        subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)
    print(f"wrote {out / 'sched.png'}")


if __name__ == "__main__":
    main()
