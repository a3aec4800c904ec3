#!/usr/bin/env bash
# The scheduling experiment behind docs/results/sched.md: FIFO vs Shinjuku, on-host vs
# offloaded across emulated link delays, and the mitigation ablation, then the plot.
# Pins the agent (thread or ipu-cp process) to CPU 0 and one worker to CPU 1; on a bigger
# machine pass e.g. --worker-cpus 2,3,4,5 --agent-cpu 1. Extra arguments go to
# `sched-bench experiment` (see --help). About 9 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --plots
cargo build --release -p ipu-cp -p sched-bench
out=${OUT:-docs/results}
./target/release/sched-bench experiment --out "$out" "$@"
python3 scripts/sched-plot.py "$out"
