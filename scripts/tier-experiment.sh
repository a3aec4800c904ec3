#!/usr/bin/env bash
# The memory-tiering experiment behind docs/results/memory.md: tier-bench's skewed workload over
# a 1 GiB arena, one pinned worker, in five setups run one after another within each round:
#   resident   every page resident (the baseline),
#   offloaded  the tier policy in ipu-cp, over link's memfd transport,
#   on-host    the same policy in an agent thread of the app, over link's heap transport,
#   random     no policy: random pages demoted to the share the offloaded run reached,
#   kernel     the app unmanaged, in a cgroup (v1) limited to the DRAM the offloaded run kept,
#              with zram (lz4) swap: the kernel's LRU picks what goes to the slow tier.
# Then PAIRS rounds side by side: each tiered setup runs at the same time as a resident twin,
# both workers on the same vCPU, their warm-ups and windows started at the same instant, so
# the VM's drift (10-30 % between runs a minute apart) reaches both; each compares its
# operations per second of its own worker's CPU time with its twin's.
# Then scripts/tier-report.py writes the report and the plot. Needs root (userfaultfd, cgroup,
# zram, swapon). The zram swap and the cgroup are removed on exit. About 30 minutes by default.
#   RUNS=3 PAIRS=5 ARENA_MB=1024 WARMUP=20 SECONDS_PER_RUN=20 WORKER_CPU=1 CONTROL_CPU=0
#   OUT=docs/results
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "tier-experiment: needs root (userfaultfd, zram, cgroups)" >&2; exit 1; }
bash scripts/setup.sh --plots
cargo build --release -q -p tier-bench -p ipu-cp
out=${OUT:-docs/results}
runs=${RUNS:-3}
pairs=${PAIRS:-5}
arena_mb=${ARENA_MB:-1024}
warmup=${WARMUP:-20}
seconds=${SECONDS_PER_RUN:-20}
worker_cpu=${WORKER_CPU:-1}
control_cpu=${CONTROL_CPU:-0}
zram=/sys/block/zram0
cgroup=/sys/fs/cgroup/memory/wave-tier-$$
csv="$out/memory.csv"
series="$out/memory-series.csv"
pairs_csv="$out/memory-pairs.csv"

swapon --show=NAME --noheadings | grep -q . && {
    echo "tier-experiment: swap is already on here; the kernel baseline needs it off" >&2
    exit 1
}
[[ -e $zram ]] || { echo "tier-experiment: no $zram (CONFIG_ZRAM)" >&2; exit 1; }
[[ -d /sys/fs/cgroup/memory ]] || { echo "tier-experiment: no cgroup v1 memory" >&2; exit 1; }
cleanup() {
    swapoff /dev/zram0 2>/dev/null || true
    echo 1 >"$zram/reset" 2>/dev/null || true
    rmdir "$cgroup" 2>/dev/null || true
}
trap cleanup EXIT
rm -f "$csv" "$series" "$pairs_csv"
{
    echo "kernel: $(uname -r); vCPUs: $(nproc); memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "runs: $runs; pairs: $pairs; arena: $arena_mb MiB; warm-up: $warmup s; window: $seconds s"
    echo "worker on CPU $worker_cpu; mechanism thread and policy on CPU $control_cpu"
} >"$out/memory-env.txt"

bench() { # label, extra args...
    local label=$1; shift
    ./target/release/tier-bench --arena-mb "$arena_mb" --warmup-seconds "$warmup" \
        --seconds "$seconds" --worker-cpus "$worker_cpu" --control-cpu "$control_cpu" \
        --run "$run" --label "$label" --csv "$csv" --series "$series" "$@" >/dev/null
    echo "run $run/$runs, $label: $(tail -n 1 "$csv" | cut -d, -f5,10,11)"
}
column() { # csv, label, key[, run]: the key's value in the last row with this label (and run)
    python3 - "$@" <<'EOF'
import csv, sys
path, label, key = sys.argv[1:4]
rows = [r for r in csv.DictReader(open(path))
        if r["setup"] == label and (len(sys.argv) < 5 or r["run"] == sys.argv[4])]
print(rows[-1][key])
EOF
}

kernel_on() { # the offloaded run's slow fraction: zram swap on, the cgroup made and limited
    # The kernel gets the DRAM the offloaded run kept resident, plus 64 MiB for the rest of
    # the process (page tables, histograms, the binary).
    limit_mb=$(python3 -c "print(int($arena_mb * (1 - float('$1'))) + 64)")
    echo 1 >"$zram/reset"
    echo lz4 >"$zram/comp_algorithm"
    echo "$((arena_mb * 2))M" >"$zram/disksize"
    mkswap /dev/zram0 >/dev/null
    swapon -p 100 /dev/zram0
    mkdir -p "$cgroup"
    echo "$((limit_mb << 20))" >"$cgroup/memory.limit_in_bytes"
}
kernel_off() {
    rmdir "$cgroup"
    swapoff /dev/zram0
    echo "   (kernel limit $limit_mb MiB)"
}
pair() { # label, lead in ms, in-cgroup (0/1), the partner's args...
    local label=$1 lead_ms=$2 in_cgroup=$3; shift 3
    local at=$(($(date +%s%3N) + lead_ms)) twin partner
    ./target/release/tier-bench --setup resident --label "twin-$label" \
        "${common[@]}" --start-unix-ms "$at" >/dev/null &
    twin=$!
    (
        ((in_cgroup)) && echo $BASHPID >"$cgroup/cgroup.procs"
        exec ./target/release/tier-bench --label "$label" "${common[@]}" \
            --start-unix-ms "$at" "$@" >/dev/null
    ) &
    partner=$!
    local rc=0
    wait "$twin" || rc=$?
    wait "$partner" || rc=$?
    ((rc == 0)) || { echo "tier-experiment: pair $run, $label failed" >&2; exit 1; }
    local ours theirs
    ours=$(column "$pairs_csv" "$label" ops_per_cpu_s "$run")
    theirs=$(column "$pairs_csv" "twin-$label" ops_per_cpu_s "$run")
    echo "pair $run/$pairs, $label: $(python3 -c "print(f'{$ours / $theirs:.3f}')") of its twin" \
        "per worker-CPU second, slow tier $(column "$pairs_csv" "$label" slow_fraction "$run")"
}

setups=(resident offloaded on-host)
for run in $(seq "$runs"); do
    # The first three in a rotating order (this VM drifts within minutes), then the two that
    # take their target from the offloaded run.
    for k in 0 1 2; do
        setup=${setups[$(((run - 1 + k) % 3))]}
        bench "$setup" --setup "$setup"
    done
    slow=$(column "$csv" offloaded slow_fraction)
    percent=$(python3 -c "print(int(float('$slow') * 100))")
    bench random --setup random --random-percent "$percent"
    kernel_on "$slow"
    (
        echo $BASHPID >"$cgroup/cgroup.procs"
        bench kernel --setup resident --zram "$zram"
    )
    kernel_off
done

# Side by side: both workers pinned to the worker vCPU, both control threads to the other.
for run in $(seq "$pairs"); do
    common=(--arena-mb "$arena_mb" --warmup-seconds "$warmup" --seconds "$seconds"
        --worker-cpus "$worker_cpu" --control-cpu "$control_cpu" --run "$run"
        --csv "$pairs_csv")
    pair offloaded 10000 0 --setup offloaded
    slow=$(column "$pairs_csv" offloaded slow_fraction "$run")
    percent=$(python3 -c "print(int(float('$slow') * 100))")
    pair on-host 10000 0 --setup on-host
    pair random 10000 0 --setup random --random-percent "$percent"
    kernel_on "$slow"
    pair kernel 20000 1 --setup resident --zram "$zram"
    kernel_off
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/memory-env.txt"
python3 scripts/tier-report.py "$out"
