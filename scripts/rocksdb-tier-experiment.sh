#!/usr/bin/env bash
# RocksDB with its block cache tiered vs not, behind docs/results/rocksdb-tier.md: loadgen's
# open-loop GETs, skewed (99 % of them on 10 % of the keys), against rocksdb-server on a
# shared-memory wire, its block cache
#   heap       in the heap (RocksDB's own allocator: the baseline),
#   on-host    in a memmgr arena tiered by the tier policy in an agent thread of the server,
#   offloaded  in a memmgr arena tiered by the same policy in ipu-cp (over memfd),
# the setups alternating within each run. Each point is a warm-up then a measured window at the
# same rate; the server's resident memory (VmRSS) and its arena's state are read as it stops.
# Then scripts/rocksdb-tier-report.py writes the report and the plot. Needs root (userfaultfd).
#   RUNS=3 RATE=10000 SECONDS_PER_POINT=30 KEYS=150000 VALUE_BYTES=400 CACHE_MB=128
#   HOT_SHARE=0.99 OUT=...
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "rocksdb-tier-experiment: needs root (userfaultfd)" >&2; exit 1; }
bash scripts/setup.sh --plots
cargo build --release -q -p loadgen -p rocksdb-server -p ipu-cp
out=${OUT:-docs/results}
runs=${RUNS:-3}
rate=${RATE:-10000}
seconds=${SECONDS_PER_POINT:-30}
keys=${KEYS:-150000}
value_bytes=${VALUE_BYTES:-400}
cache_mb=${CACHE_MB:-128}
hot_share=${HOT_SHARE:-0.99}
epoch_ms=250
source scripts/ipu-cp-work.sh
start_ipu_cp --tier-epoch-ms "$epoch_ms"
csv="$out/rocksdb-tier.csv"
echo "setup,run,offered_per_s,achieved_per_s,p50_us,p99_us,p999_us,late,unanswered,errors,\
rss_kib,cache_kib,arena_in_use_kib,compressed_pages,saved_kib,promotions,demotions,faults" >"$csv"
{
    echo "kernel: $(uname -r); vCPUs: $(nproc); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "runs: $runs; rate: $rate/s; warm-up and window: $seconds s each; keys: $keys of" \
        "$value_bytes bytes (text), $hot_share of GETs on the first 10 %; block cache:" \
        "$cache_mb MiB; memtable 4 MiB; data blocks 3.5 KiB; tier epoch: $epoch_ms ms"
} >"$out/rocksdb-tier-env.txt"
for run in $(seq "$runs"); do
    for setup in heap on-host offloaded; do
        # Small memtables: the data reaches SST files and GETs go through the block cache.
        # Blocks of 3.5 KiB plus one entry fit a page (the arena's allocator gives larger
        # blocks whole pages); the heap run uses the same tables.
        args=(--server-arg=--block-cache-mb "--server-arg=$cache_mb"
            --server-arg=--write-buffer-kb --server-arg=4096
            --server-arg=--block-bytes --server-arg=3584)
        if [[ $setup != heap ]]; then
            args+=(--server-arg=--tier-arena-mb "--server-arg=$((cache_mb * 3 / 2))"
                --server-arg=--tier-policy "--server-arg=$setup"
                --server-arg=--tier-epoch-ms "--server-arg=$epoch_ms")
        fi
        if [[ $setup == offloaded ]]; then
            args+=(--server-arg=--ipu-cp "--server-arg=$socket")
        fi
        ./target/release/loadgen run --server wire --wire-server rocksdb-server --workers 1 \
            --conns 16 --keys "$keys" --value-bytes "$value_bytes" --text-values \
            --get-ratio 1 --hot-keys 0.1 --hot-share "$hot_share" --rates "$rate,$rate" \
            --seconds "$seconds" --label "$setup" --csv "$work/point.csv" "${args[@]}" \
            >/dev/null 2>"$work/loadgen.log" || { cat "$work/loadgen.log" >&2; exit 1; }
        final=$(grep "rocksdb-server: final:" "$work/loadgen.log" || true)
        [[ -n $final ]] || { cat "$work/loadgen.log" >&2; exit 1; }
        field() { grep -o "$1=[0-9]*" <<<"$final" | cut -d= -f2 || echo 0; }
        window=$(tail -n 1 "$work/point.csv" | cut -d, -f2-9)
        echo "$setup,$run,$window,$(field rss_kib),$(field cache_kib),$(field arena_in_use_kib)," \
            "$(field compressed_pages),$(field saved_kib),$(field promotions),$(field demotions)," \
            "$(field faults)" |
            tr -d ' ' >>"$csv"
        echo "run $run/$runs, $setup: $(tail -n 1 "$csv")"
    done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/rocksdb-tier-env.txt"
python3 scripts/rocksdb-tier-report.py "$out"
