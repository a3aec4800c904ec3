#!/usr/bin/env bash
# A/B of two builds of the packet_io bench, alternated process by process: on this VM a
# backend's ratio to its baseline is set mostly per process (about ±7 % for DPDK), so one
# process per build says little. Prints each build's per-process ratios and their median.
#
#   scripts/packet-io-ab.sh BENCH_A BENCH_B [PROCESSES] -- BENCH_ARGS...
#   e.g. scripts/packet-io-ab.sh /tmp/pio-old /tmp/pio-new 8 -- --only dpdk --len 64
#
# Each bench binary is `target/release/deps/packet_io-*` built at the commit to compare
# (`cargo bench -p host-dp --features dpdk --bench packet_io --no-run` prints its path).
# Uses the first row each process prints. Needs root for the AF_PACKET paths.
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 BENCH_A BENCH_B [PROCESSES] -- BENCH_ARGS..." >&2
    exit 2
fi
a=$1 b=$2
shift 2
processes=8
if [[ $# -gt 0 && $1 != "--" ]]; then
    processes=$1
    shift
fi
[[ $# -gt 0 && $1 == "--" ]] && shift
for bench in "$a" "$b"; do
    [[ -x $bench ]] || { echo "not an executable: $bench" >&2; exit 2; }
done
ratio() { # the first table row's median ratio
    "$1" "${@:2}" 2>/dev/null | awk -F'|' '/^\| [^p-]/ { split($6, r, " "); print r[1]; exit }'
}
declare -a ra rb
for ((i = 0; i < processes; i++)); do
    ra+=("$(ratio "$a" "$@")")
    rb+=("$(ratio "$b" "$@")")
done
median() {
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 }
        END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo "A $a: ${ra[*]} (median $(median "${ra[@]}"))"
echo "B $b: ${rb[*]} (median $(median "${rb[@]}"))"
