#!/usr/bin/env bash
# The rpc-server vs memcached experiment behind docs/results/rpc.md: the same open-loop client
# (loadgen over kernel sockets) against rpc-server (Wave's stack on AF_PACKET, one worker) and
# Debian's memcached (one thread), each behind its own veth, one server core each, interleaved
# rate by rate and run by run; then the report and the plot. Needs root (namespaces, veth,
# AF_PACKET). The namespaces are removed on exit. About 3 minutes with the defaults.
#   RUNS=3 RATES=2000,5000,... SECONDS_PER_RATE=2 SERVER_CPU=1 CLIENT_CPU=0 SERVER_TX=ring|send
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --plots
cargo build --release -q -p rpc-server -p loadgen
out=${OUT:-docs/results}
runs=${RUNS:-3}
rates=${RATES:-2000,5000,10000,20000,40000,60000,90000,120000,150000,220000}
seconds=${SECONDS_PER_RATE:-2}
server_cpu=${SERVER_CPU:-1}
client_cpu=${CLIENT_CPU:-0}
server_tx=${SERVER_TX:-ring}   # rpc-server --tx: the transmit ring, or a Send per frame
a="wave-rpcx-a-$$"   # the client, rpc-server's interface (va, no IP) and vb, vc
b="wave-rpcx-b-$$"   # memcached's end (vd)
work=$(mktemp -d)
cleanup() {
    pkill -f "rpc-server --iface va --ip 198.18.0.2/24 --workers 1 --seconds 100000" || true
    if [[ -n "${mc_pid:-}" ]]; then kill "$mc_pid" 2>/dev/null || true; fi
    ip netns del "$a" 2>/dev/null || true
    ip netns del "$b" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip -n "$a" link set lo up
ip -n "$b" link set lo up
ip -n "$a" link add va type veth peer name vb
ip -n "$a" link add vc type veth peer name vd netns "$b"
for l in va vb vc; do ip -n "$a" link set "$l" up; done
ip -n "$b" link set vd up
ip -n "$a" addr add 198.18.0.1/24 dev vb
ip -n "$a" addr add 198.18.1.1/24 dev vc
ip -n "$b" addr add 198.18.1.2/24 dev vd
# Our stack reads raw frames: the kernel's end must send them fully checksummed.
ip netns exec "$a" ethtool -K vb tx off >/dev/null
ip netns exec "$a" taskset -c "$server_cpu" ./target/release/rpc-server --iface va \
    --ip 198.18.0.2/24 --workers 1 --seconds 100000 --tx "$server_tx" 2>"$work/rpc-server.log" &
ip netns exec "$b" taskset -c "$server_cpu" memcached -u nobody -t 1 -U 0 -c 4096 \
    -l 198.18.1.2 -p 11211 &
mc_pid=$!
sleep 1
csv="$out/rpc.csv"
echo "server,run,control,offered_per_s,achieved_per_s,p50_us,p99_us,p999_us,late,unanswered,errors,planned,scan_p50_us,scan_p99_us" >"$csv"
IFS=, read -ra rate_list <<<"$rates"
for run in $(seq "$runs"); do
    for rate in "${rate_list[@]}"; do
        for server in rpc-server:198.18.0.2 memcached:198.18.1.2; do
            name=${server%%:*}
            addr=${server#*:}
            ip netns exec "$a" taskset -c "$client_cpu" ./target/release/loadgen run \
                --server "$addr:11211" --rates "$rate" --seconds "$seconds" --conns 8 \
                --label "$name" --csv "$work/point.csv" >/dev/null 2>&1
            tail -n +2 "$work/point.csv" | sed "s/^/$name,$run,/" >>"$csv"
            echo "run $run/$runs, $rate req/s, $name: $(tail -n 1 "$work/point.csv")"
        done
    done
done
python3 scripts/rpc-report.py "$out"
