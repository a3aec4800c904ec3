#!/usr/bin/env python3
"""Writes docs/results/memory.md (and memory.png, with gnuplot) from the memory.csv,
memory-series.csv and memory-pairs.csv that scripts/tier-experiment.sh wrote.

Per setup, the median over runs (and the range) of each measure of the window; throughput
is compared with the all-resident run of the same round (a ratio per round, then the median),
both per second of wall time and per second of the worker's CPU time (the fair measure on
this shared VM). The side-by-side rounds compare each tiered setup with the resident twin
that ran beside it on the same vCPU, per second of each worker's CPU time. The warm-up
(the policy learning the arena) is reported from the per-second series.
Usage: tier-report.py RESULTS_DIR
"""

import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from report_common import median_range

SETUPS = ["resident", "offloaded", "on-host", "random", "kernel"]
DESCRIBE = {
    "resident": "every page resident (baseline)",
    "offloaded": "tier policy in `ipu-cp` (separate process, memfd link)",
    "on-host": "tier policy in an agent thread of the app (heap link)",
    "random": "random pages demoted to the offloaded run's share (lower bound)",
    "kernel": "kernel LRU: cgroup v1 limit at the offloaded run's resident DRAM, zram lz4 swap",
}


def na(setup, text):
    """The kernel's swap-ins and the random bound's probes are not ours to count."""
    return "n/a" if setup in ("kernel", "resident") else text


def main():
    out = Path(sys.argv[1])
    rows = list(csv.DictReader(open(out / "memory.csv")))
    series = list(csv.DictReader(open(out / "memory-series.csv")))
    by = defaultdict(dict)
    for row in rows:
        by[row["setup"]][row["run"]] = row
    setups = [s for s in SETUPS if s in by] + sorted(set(by) - set(SETUPS))
    base = by.get("resident", {})

    def values(setup, key):
        return [float(r[key]) for r in by[setup].values()]

    def ratios(setup, key):
        return [
            float(r[key]) / float(base[run][key])
            for run, r in by[setup].items()
            if run in base and float(base[run][key]) > 0
        ]

    warm = defaultdict(dict)  # setup -> run -> mean ops/s before the window
    warmup_s = 0.0
    env = (out / "memory-env.txt").read_text() if (out / "memory-env.txt").exists() else ""
    for line in env.splitlines():
        if line.startswith("runs:"):
            warmup_s = float(line.split("warm-up:")[1].split("s")[0])
    points = defaultdict(list)
    for s in series:
        if float(s["t_s"]) <= warmup_s:
            points[(s["setup"], s["run"])].append(float(s["ops_per_s"]))
    for (setup, run), ops in points.items():
        warm[setup][run] = statistics.mean(ops)

    pairs = read_pairs(out)
    rounds = len({row["run"] for row in rows})
    command = "./scripts/tier-experiment.sh"
    n_pairs = len({run for runs in pairs.values() for run in runs})
    if n_pairs != 5:
        command = f"PAIRS={n_pairs} {command}"
    if rounds != 3:
        command = f"RUNS={rounds} {command}"
    lines = [
        "# Memory tiering: results",
        "",
        f"Produced by `{command}` (root; about 4 minutes a round, 3.5 a side-by-side",
        "round), which runs `tier-bench` in each setup per round, then each tiered setup beside",
        "a resident twin, then `scripts/tier-report.py`. Raw data: `memory.csv` (one row per",
        "run), `memory-series.csv` (per second), `memory-pairs.csv` (side by side),",
        "`memory-env.txt`.",
        "",
        "## Setup",
        "",
        "- Workload (`examples/tier-bench/src/workload.rs`): one worker thread doing single-word",
        "  operations (an 8-byte read, or an atomic add with 10 % probability) at a random 64-byte",
        "  line of a random page of a 1 GiB `memmgr` arena (262 144 pages). 25 % of the pages,",
        "  scattered by a hash, take all but 1 in a million operations; the rest take the others.",
        "  Data compresses about 2.75:1 with LZ4 (two random words per 64-byte line).",
        "- Each run: the arena is filled, then 20 s of warm-up (the policy learns the arena) and a",
        "  20 s window in which everything below is measured. One operation in 256 is timed (a",
        "  clock read costs about a microsecond on this VM: timing one in 16 cost 40 %).",
        "- Tiering: faults resolved in the faulting thread (SIGBUS), 250 ms epochs, the policy's",
        "  cold-age threshold starting at 4 epochs, parking at most 1/32 of the arena per epoch,",
        "  pages found hot left alone for 60 s (then doubling), promotion target 2 % of the hot",
        "  set per minute. Worker pinned to one vCPU, mechanism thread and policy to the other.",
        "",
    ]
    lines += ["Setups:", ""] + [f"- `{s}`: {DESCRIBE.get(s, s)}" for s in setups] + [""]
    lines += [
        "## Window (median of runs, range in brackets)",
        "",
        "| setup | ops/s vs resident | ops per app-CPU-s vs resident | p50 / p99 / p99.9 ns "
        "| slow tier (time-weighted) | DRAM saved, MiB | promotions, % of hot set/min "
        "| probes/s | fault time, % of app CPU | mechanism CPU, % of a core "
        "| policy CPU, % of a core |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in setups:
        lat = "/".join(
            f"{statistics.median(values(s, k)):.0f}" for k in ("p50_ns", "p99_ns", "p999_ns")
        )
        lines.append(
            f"| {s} | {median_range(ratios(s, 'ops_per_s'), '{:.3f}')} "
            f"| {median_range(ratios(s, 'ops_per_cpu_s'), '{:.3f}')} | {lat} "
            f"| {median_range([v * 100 for v in values(s, 'slow_fraction')], '{:.1f} %')} "
            f"| {median_range(values(s, 'saved_mib'), '{:.0f}')} "
            f"| {na(s, median_range(values(s, 'promotions_per_min_pct'), '{:.2f}'))} "
            f"| {na(s, median_range(values(s, 'probes_per_s'), '{:.0f}'))} "
            f"| {median_range(values(s, 'fault_cpu_pct'), '{:.2f}')} "
            f"| {median_range(values(s, 'mechanism_cpu_pct'), '{:.2f}')} "
            f"| {median_range(values(s, 'policy_cpu_pct'), '{:.2f}')} |"
        )
    absolute = ", ".join(
        f"{s} {statistics.median(values(s, 'ops_per_s')) / 1e6:.2f} M" for s in setups
    )
    lines += ["", f"Absolute ops/s (medians): {absolute}.", ""]
    if base:
        lines += ["## Warm-up (the policy learning a fresh arena)", ""]
        for s in setups:
            r = [warm[s][run] / warm["resident"][run] for run in warm[s] if run in warm["resident"]]
            lines.append(f"- `{s}`: {median_range(r, '{:.3f}')} of the resident run's ops/s")
        lines.append("")
    lines += side_by_side(pairs)
    off = by.get("offloaded", {})
    if off and base:
        slow = statistics.median(values("offloaded", "slow_fraction"))
        ratio = statistics.median(ratios("offloaded", "ops_per_s"))
        per_cpu = statistics.median(ratios("offloaded", "ops_per_cpu_s"))
        promo = statistics.median(values("offloaded", "promotions_per_min_pct"))
        target = float(next(iter(off.values()))["target_pct"])
        paired = pair_ratios(pairs, "offloaded")
        judged = statistics.median(paired) if paired else min(ratio, per_cpu)
        met = slow >= 0.30 and judged >= 0.95 and promo <= target
        lines += [
            "## Goals (offloaded)",
            "",
            f"- Slow tier {slow * 100:.1f} % of the arena (goal ≥ 30 %), promotions {promo:.2f} %"
            f" of the hot set per minute (target {target:.2f} %), throughput (goal ≥ 0.95 of"
            f" all-resident): {ratio:.3f} per wall second and {per_cpu:.3f} per app-CPU second"
            " in the rounds one after another"
            + (
                f", {statistics.median(paired):.3f} per worker-CPU second side by side"
                f" ({len(paired)} pairs, {min(paired):.3f}–{max(paired):.3f})"
                if paired
                else ""
            )
            + f": **{'met' if met else 'not met'}**"
            + (" (judged side by side: the rounds one after another scatter by more than the"
               " goal's 5 %)." if paired else "."),
            f"- Policy CPU entirely off the host: the policy is the `ipu-cp` process "
            f"({statistics.median(values('offloaded', 'policy_cpu_pct')):.2f} % of a core: its "
            "decisions and its idle polling, now sleeping up to 1 ms between polls while only"
            " the tier service has apps), next to the mechanism thread's "
            f"{statistics.median(values('offloaded', 'mechanism_cpu_pct')):.2f} % and the fault "
            f"path's {statistics.median(values('offloaded', 'fault_cpu_pct')):.2f} % of app CPU "
            "on the host.",
            "",
        ]
    if off and "tracking_cpu_pct" in next(iter(off.values())):
        lines += [
            f"- Write tracking (offloaded): the scan took "
            f"{statistics.median(values('offloaded', 'tracking_cpu_pct')):.3f} % of a core; "
            f"{statistics.median(values('offloaded', 'copies_reused_per_s')):.1f} demotions/s "
            "reused a kept copy instead of compressing.",
            "",
        ]
    lines += caveats(by, base, ratios, values, pairs)
    if env:
        lines += ["## Environment", "", "```", env.strip(), "```", ""]
    (out / "memory.md").write_text("\n".join(lines))
    print("\n".join(lines))
    plot(out, series, setups)


def read_pairs(out):
    """setup -> run -> (the tiered row, its resident twin's row) from memory-pairs.csv."""
    path = out / "memory-pairs.csv"
    rows = list(csv.DictReader(open(path))) if path.exists() else []
    twins = {
        (r["setup"][len("twin-"):], r["run"]): r for r in rows if r["setup"].startswith("twin-")
    }
    pairs = defaultdict(dict)
    for r in rows:
        if (r["setup"], r["run"]) in twins:
            pairs[r["setup"]][r["run"]] = (r, twins[(r["setup"], r["run"])])
    return pairs


def pair_ratios(pairs, setup, key="ops_per_cpu_s"):
    return [float(p[key]) / float(t[key]) for p, t in pairs.get(setup, {}).values()
            if float(t[key]) > 0]


def side_by_side(pairs):
    if not pairs:
        return []
    lines = [
        "## Side by side (median of pairs, range in brackets)",
        "",
        "Each tiered setup ran at the same time as a resident twin: both workers pinned to the",
        "same vCPU (the scheduler shares it between them), both control threads and `ipu-cp` on",
        "the other, warm-ups and windows started at the same instant (`--start-unix-ms`). The",
        "VM's drift then reaches both runs of a pair alike. The ratio is operations per second",
        "of each worker's own CPU time (its thread clock); each worker had about half the vCPU.",
        "",
        "| setup | ops per worker-CPU-s vs twin | ops/s vs twin | worker CPU, % (twin) "
        "| slow tier | DRAM saved, MiB | promotions, % of hot set/min | policy CPU, % of a core |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in [s for s in SETUPS if s in pairs]:
        rows = list(pairs[s].values())

        def col(key, fmt, rows=rows):
            return median_range([float(p[key]) for p, _ in rows], fmt)

        cpu = statistics.median(float(p["app_cpu_pct"]) for p, _ in rows)
        twin_cpu = statistics.median(float(t["app_cpu_pct"]) for _, t in rows)
        lines.append(
            f"| {s} | {median_range(pair_ratios(pairs, s), '{:.3f}')} "
            f"| {median_range(pair_ratios(pairs, s, 'ops_per_s'), '{:.3f}')} "
            f"| {cpu:.1f} ({twin_cpu:.1f}) "
            f"| {median_range([float(p['slow_fraction']) * 100 for p, _ in rows], '{:.1f} %')} "
            f"| {col('saved_mib', '{:.0f}')} "
            f"| {na(s, col('promotions_per_min_pct', '{:.2f}'))} "
            f"| {col('policy_cpu_pct', '{:.2f}')} |"
        )
    return lines + [""]


def caveats(by, base, ratios, values, pairs):
    lines = [
        "## Caveats",
        "",
        "- The workload is skewed by design: the cold 75 % of the arena takes one operation in",
        "  a million, so what the policy must do is find it and leave the hot quarter alone;",
        "  promotions stay low by construction. A workload whose cold pages are touched more",
        "  often trades slow-tier share against promotions through the threshold.",
        "- The window is the steady state after a 20 s warm-up. The warm-up, in which the policy",
        "  probes every page once and compresses the cold ones, costs throughput (above).",
        "- Rounds one after another: the all-resident run itself scatters by 10–30 % from run",
        "  to run on this shared VM (per-second rates within one run span 7–17 M ops/s), more",
        "  than the 5 % the goal asks about; each ratio is taken within a round and the median",
        "  over rounds reported, but that cannot resolve 5 %. The side-by-side pairs can: both",
        "  runs of a pair see the same drift at the same moment. What a pair does not charge to",
        "  its tiered run: the memory bandwidth and cache that the mechanism thread and the",
        "  policy use on the other vCPU slow the twin as well (one after another, they slow only",
        "  the tiered run); their CPU is reported in the tables. Each worker gets about half a",
        "  vCPU in a pair, so the policy sees accesses at half the rate: for this workload the",
        "  hot pages are still touched far more often than the cold-age threshold.",
        "- How far rounds one after another drift: an earlier run of this script on 2026-11-23",
        "  (the policy's idle sleeps still 50 µs) measured offloaded 0.797, on-host 0.866,",
        "  random 0.775 and kernel 0.908 of all-resident one after another (three rounds), and",
        "  side by side offloaded 1.001 (0.997–1.003), on-host 0.999, random 0.989",
        "  (0.988–0.995) and kernel 1.145 (five pairs). The pairs repeat to within 1 %; the",
        "  rounds do not.",
        "- The policy's CPU in `ipu-cp` is its idle polling (spin, yield, then sleeps: 1 ms",
        "  while only tier apps are attached, 1/64 of an epoch; 50 µs sleeps, the scheduling",
        "  agent's, took 16 % of a core) and its decisions, well under 1 % of a core for",
        "  262 144 pages at four epochs a second (the policy called inline measured 0.5 %).",
        "- Write tracking (`WP_ASYNC` + `PAGEMAP_SCAN`) runs once per epoch in the mechanism",
        "  thread (its CPU is in the mechanism's column; the scan alone is the `Write tracking`",
        "  line above). Its use here is the kept copy of a promoted page that is only read; with",
        "  this workload's few promotions it rarely matters (reuses per second above).",
        "- Faults are resolved in the faulting thread (SIGBUS); the kernel's own accesses to",
        "  a page not in memory would get EFAULT, which this workload never makes.",
        "- The policy reads page states from the app's page-state table (link ABI 7): a 4 MiB",
        "  snapshot per epoch for this arena, where ABI 6 had the host send a record per changed",
        "  page. Here both sides share the L3 cache, which an IPU reading the table by DMA would",
        "  not. An A/B of the two designs (the offloaded setup, binaries of both commits",
        "  alternated, 2 × 3 rounds of a 15 s window, one after another) gave ABI 7 / ABI 6 =",
        "  0.755–1.114, median 0.976: no difference such rounds resolve.",
    ]
    if "kernel" in by and base:
        k = statistics.median(ratios("kernel", "ops_per_s"))
        paired = pair_ratios(pairs, "kernel")
        side = f", and {statistics.median(paired):.2f} side by side" if paired else ""
        lines.append(
            f"- The kernel baseline ran at {k:.2f} of the all-resident throughput one after"
            f" another{side}: faster than all-resident, and not by drift (the pairs agree)."
            " Swapping in re-allocates the hot pages into fresh guest frames, so a likely cause"
            " is their placement under the VM's two-level paging (the hot quarter packed into"
            " fewer host pages) rather than anything about tiering; we have not verified it."
            " Our tiering leaves hot pages where they are. Its swap-ins are not counted by our"
            " promotion counter."
        )
    return lines + [""]


def plot(out, series, setups):
    if not shutil.which("gnuplot"):
        print("(gnuplot missing: no plot; scripts/setup.sh --plots installs it)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for s in setups:
            path = Path(tmp) / f"{s}.dat"
            with open(path, "w") as f:
                for p in series:
                    if p["setup"] == s and p["run"] == "1":
                        f.write(f"{p['t_s']} {float(p['ops_per_s']) / 1e6} "
                                f"{float(p['slow_fraction']) * 100}\n")
            files.append((s, path))
        ops = ", ".join(f"'{p}' using 1:2 with lines title '{s}'" for s, p in files)
        slow = ", ".join(f"'{p}' using 1:3 with lines title '{s}'" for s, p in files)
        script = (
            f"set terminal pngcairo size 1000,700; set output '{out / 'memory.png'}';"
            "set multiplot layout 2,1 title 'tier-bench, run 1 (1 GiB arena)';"
            "set ylabel 'M ops/s'; set key outside right; set grid;"
            f"plot {ops};"
            "set xlabel 'seconds'; set ylabel 'slow tier, % of arena'; set yrange [0:100];"
            f"plot {slow};"
            "unset multiplot"
        )
        subprocess.run(["gnuplot", "-e", script], check=True)
    print(f"wrote {out / 'memory.png'}")


if __name__ == "__main__":
    main()
