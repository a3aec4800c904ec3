#!/usr/bin/env bash
# The RocksDB GET/SCAN experiment behind docs/results/rocksdb.md: loadgen's open-loop GET/SCAN
# mix (SCAN latency kept apart) against rocksdb-server on a shared-memory wire, one worker,
# its tasks scheduled FIFO (no preemption) or Shinjuku (a 30 µs slice, honoured at the preempt
# points between a scan's chunks of 16 items) by the runtime's own queue (local), by an agent
# thread (on-host), and Shinjuku by ipu-cp (offloaded). The setups alternate point by point and
# run by run. No root. On the 2-vCPU VM the client, the worker and an agent share two cores:
# the report says what that does; the ratio FIFO / Shinjuku within a mode is the measure.
#   RUNS=3 RATES=1000,2000 SECONDS_PER_RATE=8 SCAN_RATIO=0.02 SCAN_COUNT=5000 IDLE_SLEEP_US=0
#   OUT=...
# IDLE_SLEEP_US > 0 makes the client sleep that long after a poll that found nothing, leaving
# its core to the server's worker and the agent (loadgen --idle-sleep-us; the sleep adds to
# every latency equally).
# (A scan of 5000 items takes about 3.5–4 ms here: long enough to stand out of this VM's ~1 ms
# p99 noise floor, which hides 1000-item scans.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p loadgen -p rocksdb-server -p ipu-cp
out=${OUT:-docs/results}
runs=${RUNS:-3}
rates=${RATES:-1000,2000}
seconds=${SECONDS_PER_RATE:-8}
scan_ratio=${SCAN_RATIO:-0.02}
scan_count=${SCAN_COUNT:-5000}
idle_sleep_us=${IDLE_SLEEP_US:-0}
source scripts/ipu-cp-work.sh
start_ipu_cp --policy shinjuku
csv="$out/rocksdb.csv"
{
    echo "kernel: $(uname -r); vCPUs: $(nproc); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "runs: $runs; rates: $rates; $seconds s per point; $scan_ratio of requests are" \
        "scans of $scan_count items; 20000 keys of 100 bytes; 128 connections; one worker;" \
        "client idle sleep $idle_sleep_us us"
} >"$out/rocksdb-env.txt"
echo "policy,run,offered_per_s,achieved_per_s,p50_us,p99_us,p999_us,late,unanswered,errors,planned,scan_p50_us,scan_p99_us" >"$csv"
IFS=, read -ra rate_list <<<"$rates"
for run in $(seq "$runs"); do
    for rate in "${rate_list[@]}"; do
        for policy in local-fifo local-shinjuku on-host-fifo on-host-shinjuku offloaded-shinjuku; do
            mode=${policy%-*}
            sched=(--server-arg=--sched "--server-arg=$mode")
            if [[ $mode == offloaded ]]; then
                sched+=(--server-arg=--ipu-cp "--server-arg=$socket")
            else
                sched+=(--server-arg=--sched-policy "--server-arg=${policy##*-}")
            fi
            ./target/release/loadgen run --server wire --wire-server rocksdb-server \
                --workers 1 --conns 128 --keys 20000 --value-bytes 100 --get-ratio 1 \
                --scan-ratio "$scan_ratio" --scan-count "$scan_count" --rates "$rate" \
                --seconds "$seconds" --idle-sleep-us "$idle_sleep_us" --label "$policy" \
                --csv "$work/point.csv" "${sched[@]}" \
                >/dev/null 2>"$work/loadgen.log" || { cat "$work/loadgen.log" >&2; exit 1; }
            tail -n +2 "$work/point.csv" | sed "s/^$policy,/$policy,$run,/" >>"$csv"
            echo "run $run/$runs, $rate req/s, $policy: $(tail -n 1 "$work/point.csv")"
        done
    done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/rocksdb-env.txt"
python3 scripts/rocksdb-report.py "$out"
