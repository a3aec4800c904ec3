#!/usr/bin/env bash
# The hyper experiment behind docs/results/hyper.md: the same hyper service (examples/
# hyper-server) on Wave (our runtime and stack on AF_PACKET, one worker) and on tokio (kernel
# TCP, one worker thread), each server pinned to the same core and alone on it while measured,
# each behind its own veth; wrk (HTTP/1.1) and h2load (HTTP/2, closed loop and at fixed rates)
# pinned to the other core; servers and points interleaved, run by run. Then the report.
# Needs root (namespaces, veth, AF_PACKET). The namespaces are removed on exit.
#   RUNS=3 SECONDS_PER_POINT=4 CONNS=1,8,32 RATES=5000,10000,20000 SERVER_CPU=1 CLIENT_CPU=0
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -q -p hyper-server
out=${OUT:-docs/results}
runs=${RUNS:-3}
seconds=${SECONDS_PER_POINT:-4}
conns=${CONNS:-1,8,32}
rates=${RATES:-5000,10000,20000}
server_cpu=${SERVER_CPU:-1}
client_cpu=${CLIENT_CPU:-0}
bin=./target/release/hyper-server
a="wave-hypx-a-$$"   # the clients, Wave's interface (va, no IP) and vb, vc
b="wave-hypx-b-$$"   # tokio's end (vd)
work=$(mktemp -d)
server_pid=""
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
cleanup() {
    stop_server
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

# Starts one server alone on the server core; sets `url`.
start_server() {
    case $1 in
    wave)
        ip netns exec "$a" taskset -c "$server_cpu" "$bin" --runtime wave --iface va \
            --ip 198.18.0.2/24 --workers 1 --port 8080 2>>"$work/server.log" &
        url=http://198.18.0.2:8080/ ;;
    tokio)
        ip netns exec "$b" taskset -c "$server_cpu" "$bin" --runtime tokio \
            --listen 198.18.1.2 --port 8080 2>>"$work/server.log" &
        url=http://198.18.1.2:8080/ ;;
    esac
    server_pid=$!
    for _ in $(seq 100); do
        if ip netns exec "$a" curl -s --max-time 1 "$url" >/dev/null 2>&1; then return; fi
        sleep 0.1
    done
    echo "hyper-experiment: $1 did not answer" >&2
    exit 1
}

client() { ip netns exec "$a" taskset -c "$client_cpu" "$@"; }

csv="$out/hyper.csv"
echo "server,run,tool,conns,offered_per_s,requests_per_s,p50_us,p90_us,p99_us,errors" >"$csv"
IFS=, read -ra conn_list <<<"$conns"
IFS=, read -ra rate_list <<<"$rates"
for run in $(seq "$runs"); do
    for server in wave tokio; do
        start_server "$server"
        for c in "${conn_list[@]}"; do
            client wrk -t1 -c"$c" -d"${seconds}s" --timeout 5s --latency "$url" >"$work/wrk.txt"
            echo "$server,$run,wrk,$c,0,$(python3 scripts/hyper-report.py --wrk "$work/wrk.txt")" >>"$csv"
            rm -f "$work/h2.log"   # h2load appends to its log file
            client h2load -c"$c" -m4 -D"$seconds" --warm-up-time=1 --log-file="$work/h2.log" \
                "$url" >"$work/h2.txt"
            echo "$server,$run,h2load,$c,0,$(python3 scripts/hyper-report.py --h2load "$work/h2.txt" "$work/h2.log")" >>"$csv"
            echo "run $run/$runs, $server, $c connections: $(tail -n 2 "$csv" | cut -d, -f6- | tr '\n' ' ')"
        done
        for rate in "${rate_list[@]}"; do
            # h2load's --rps is per client: 8 clients share the offered rate.
            rm -f "$work/h2.log"
            client h2load -c8 -m4 --rps=$((rate / 8)) -D"$seconds" --warm-up-time=1 \
                --log-file="$work/h2.log" "$url" >"$work/h2.txt"
            echo "$server,$run,h2load-rate,8,$rate,$(python3 scripts/hyper-report.py --h2load "$work/h2.txt" "$work/h2.log")" >>"$csv"
            echo "run $run/$runs, $server, $rate/s offered: $(tail -n 1 "$csv" | cut -d, -f6-)"
        done
        stop_server
    done
done
python3 scripts/hyper-report.py --report "$out"
